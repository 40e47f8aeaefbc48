"""Adaptation to a target's cameras (reid_tf.adapt): the memory's loss and update against numpy, the
target's labels never read for training (scrambled, the run is the same), a run killed during a
re-clustering resumes with the clusters of its checkpoint, and bad targets stop with one line."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import replaced, tiny_config, with_train

from reid_tf import adapt, clusters, datasets, synthetic, train_lib
from reid_tf.resume import TrainingError


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory):
    """A night-domain target: 12 training identities, 3 cameras, 3 images each, at 64x32."""
    root = str(tmp_path_factory.mktemp("night"))
    synthetic.make_synthetic_market(root, num_ids=24, num_cameras=3, images_per_camera=3, height=64, width=32,
                                    seed=5, domain="night")
    return root


def _adapting(market_dir, target_dir, **kw):
    config = tiny_config(market_dir, max_steps=4, checkpoint_every=2, eval_every=4)
    settings = {"cluster_every": 2, "cluster_eps": 0.4, "cluster_min_samples": 2, "cluster_k1": 10, **kw}
    return replaced(config, "adapt", adapt_to="market1501", adapt_data_dir=target_dir, **settings)


def _rows(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_the_contrastive_loss_and_the_memory_update_match_numpy():
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(12, 8)).astype(np.float32), np.repeat(np.arange(4), 3) - (np.arange(12) == 0)
    memory = adapt.ClusterMemory(12, 8)
    memory.reset(features, labels)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    kept = labels >= 0
    means = np.stack([unit[labels == c].sum(0) for c in range(4)])
    np.testing.assert_allclose(memory.centroids.numpy()[:4], means / np.linalg.norm(means, axis=1, keepdims=True),
                               atol=1e-6)
    assert int(memory.count.numpy()) == 4 and not memory.centroids.numpy()[4:].any()
    batch, ids = rng.normal(size=(6, 8)).astype(np.float32), np.array([2, 2, 0, 0, 3, 3], np.int32)
    loss, stats = memory.loss_fn(0.05)(batch, tf.constant(ids), tf.identity)
    b = batch / np.linalg.norm(batch, axis=1, keepdims=True)
    logits = b @ memory.centroids.numpy()[:4].T / 0.05
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(6), ids])
    assert abs(float(loss) - expected) < 1e-4 * max(1.0, abs(expected))
    before = memory.centroids.numpy().copy()
    memory.updater(0.1)(stats)
    after = memory.centroids.numpy()
    for c in (0, 2, 3):
        moved = 0.1 * before[c] + 0.9 * b[ids == c].mean(0)
        np.testing.assert_allclose(after[c], moved / np.linalg.norm(moved), atol=1e-6)
    np.testing.assert_array_equal(after[1], before[1])  # not in the batch: left alone
    assert kept.sum() == 11


def test_the_targets_labels_are_never_read_for_training(market_dir, target_dir, tmp_path, monkeypatch, capsys):
    config = with_train(_adapting(market_dir, target_dir), eval_before_training=True)
    train_lib.main(config, str(tmp_path / "plain"), "", "", "tf_config", 0, "", 60.0)  # as the command ends
    assert "validation mAP before training" in capsys.readouterr().out  # not the clustering's row of step 0
    load = datasets.load_dataset

    def scrambled(name, folder, cfg):  # the target's training labels replaced by random ones
        splits = load(name, folder, cfg)
        if folder == target_dir:
            rng = np.random.default_rng(1)
            splits = {**splits, "train": [r._replace(pid=int(rng.integers(0, 3))) for r in splits["train"]]}
        return splits

    monkeypatch.setattr(datasets, "load_dataset", scrambled)
    train_lib.run(config, str(tmp_path / "scrambled"))
    plain, other = (_rows(str(tmp_path / n), "train_log.jsonl") for n in ("plain", "scrambled"))
    assert [r["loss"] for r in plain] == [r["loss"] for r in other]
    runs = [[r for r in _rows(str(tmp_path / n), "validation.jsonl") if "clusters" in r]
            for n in ("plain", "scrambled")]
    assert [(r["step"], r["clusters"], r["outliers"]) for r in runs[0]] == [
        (r["step"], r["clusters"], r["outliers"]) for r in runs[1]]
    assert [r["step"] for r in runs[0]] == [0, 2]
    assert runs[0][0]["purity"] != runs[1][0]["purity"]  # the report did read the scrambled labels
    assert all(0 <= r["purity"] <= 1 and 0 <= r["nmi"] <= 1 and "target_mAP" in r for r in runs[0])


def test_a_run_killed_during_a_reclustering_resumes_with_its_checkpoints_clusters(
        market_dir, target_dir, tmp_path, monkeypatch):
    config = _adapting(market_dir, target_dir, adapt_after=1)
    folder = str(tmp_path / "run")
    real, calls = clusters.pseudo_labels, []

    def dies_the_second_time(features, settings, cameras):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed inside the re-clustering of step 3
        return real(features, settings, cameras)

    monkeypatch.setattr(clusters, "pseudo_labels", dies_the_second_time)
    with pytest.raises(KeyboardInterrupt):
        train_lib.run(config, folder)
    latest = tf.train.latest_checkpoint(os.path.join(folder, "checkpoints"))
    assert latest.endswith("-2")
    saved = tf.train.load_variable(latest, "cluster_count/.ATTRIBUTES/VARIABLE_VALUE")
    first = [r for r in _rows(folder, "validation.jsonl") if "clusters" in r]
    assert [r["step"] for r in first] == [1] and saved == first[0]["clusters"]
    assert train_lib.run(config, folder)["export"]
    rows = [r for r in _rows(folder, "validation.jsonl") if "clusters" in r]
    assert [r["step"] for r in rows] == [1, 3]  # resumed at 2 with step 1's clusters: no clustering at 2
    assert len(calls) == 3


def test_bad_targets_stop_with_one_line(market_dir, target_dir, tmp_path):
    few = tmp_path / "few"  # a site's unlabeled footage: two images
    few.mkdir()
    for name in sorted(os.listdir(os.path.join(target_dir, "bounding_box_train")))[:2]:
        os.link(os.path.join(target_dir, "bounding_box_train", name), few / name)
    config = replaced(_adapting(market_dir, str(few), cluster_min_samples=4), "adapt", adapt_to="unlabeled")
    with pytest.raises(TrainingError, match="adapt_data_dir=.*few has 2 readable training images; a cluster needs"):
        train_lib.run(config, str(tmp_path / "a"))
    with pytest.raises(datasets.DatasetError, match=r"--dataset=unlabeled .* has no identity labels to train on"):
        train_lib.run(replaced(tiny_config(str(few)), "data", dataset="unlabeled"), str(tmp_path / "c"))
    with pytest.raises(TrainingError, match=r"fewer than P=4 .* \(a collapse into one\): change --cluster_eps"):
        train_lib.run(_adapting(market_dir, target_dir, cluster_eps=1.0, cluster_k1=30), str(tmp_path / "b"))
    assert os.path.exists(tmp_path / "b" / "config.json")  # the run folder stays, resumable


def test_a_clustering_that_finds_none_keeps_the_previous_pseudo_labels(target_dir, caplog, monkeypatch):
    memory = adapt.ClusterMemory(4, 2)
    memory.reset(np.eye(4, 2, dtype=np.float32), np.array([0, 0, 1, 1]))
    config = _adapting(target_dir, target_dir)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, return_id_num=2))
    target = adapt.Target([datasets.Record(f"{i}.jpg", -1, 0) for i in range(5)][:4], None, [], [])
    hook = adapt.AdaptHook(config, target, memory, None, "step", lambda records, start: records, "", False)
    monkeypatch.setattr(adapt.evaluate, "embed_records", lambda *a, **k: (np.eye(4, 8, dtype=np.float32), None, None))
    monkeypatch.setattr(clusters, "pseudo_labels", lambda features, settings, cameras: np.full(len(features), -1))

    class Loop:
        current, max_steps = 5, 10

    hook.recluster(Loop)
    assert memory.labels.numpy().tolist() == [0, 0, 1, 1] and int(memory.count.numpy()) == 2
    assert Loop.train_step == "step" and [r.pid for r in Loop.iterator] == [0, 0, 1, 1]
    assert "found no cluster" in caplog.text
