"""Your own data: a folder per identity (cameras optional), trained and scored; the no_cameras
protocol against a reference ranking; cameraless data refused under the Market protocol."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from helpers import tiny_config

from reid_tf import config as C
from reid_tf import datasets, eval_lib, evaluate, metrics, train_lib
from reid_tf.datasets import identity_folders
from reid_tf.resume import TrainingError


def _folders(market_dir: str, out: str, cameras: bool) -> str:
    """The tiny synthetic set's training and test identities as DATA_DIR/<pid>/[c<cam>/]<image>."""
    records = [r for s in datasets.market.load_market1501(market_dir).values() for r in s if r.pid > 0]
    for r in records:
        folder = os.path.join(out, f"{r.pid:04d}", *([f"c{r.camid}"] if cameras else []))
        os.makedirs(folder, exist_ok=True)
        shutil.copy(r.path, folder)
    return out


@pytest.fixture(scope="module")
def own_dirs(market_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    return {c: _folders(market_dir, str(root / ("cameras" if c else "plain")), c) for c in (True, False)}


def test_the_layout_reads_identities_and_cameras_as_named(own_dirs):
    with_cams = identity_folders.read_identity_folders(own_dirs[True])[0]
    plain = identity_folders.read_identity_folders(own_dirs[False])[0]
    assert sorted(r.pid for r in with_cams) == sorted(r.pid for r in plain)  # 0007 -> pid 7, both ways
    assert {r.camid for r in plain} == {-1} and {r.camid for r in with_cams} == {0, 1, 2}  # c1, c2, c3 in order
    assert all(f"c{r.camid + 1}" == os.path.basename(os.path.dirname(r.path)) for r in with_cams)
    query, gallery = identity_folders.query_gallery(with_cams)
    assert len(query) == len({(r.pid, r.camid) for r in with_cams})  # the first image per identity and camera
    assert not {r.path for r in query} & {r.path for r in gallery}


def test_bad_folders_get_one_line_naming_them(tmp_path, own_dirs, caplog):
    root = tmp_path / "d"
    shutil.copytree(own_dirs[False], root)
    (root / "notes.txt").write_text("x")
    with pytest.raises(datasets.DatasetError, match=r"notes.txt is a file where a folder per identity"):
        identity_folders.read_identity_folders(str(root))
    os.remove(root / "notes.txt")
    (root / "0001" / "readme.md").write_text("x")
    with pytest.raises(datasets.DatasetError, match=r"0001/readme.md is a stray file"):
        identity_folders.read_identity_folders(str(root))
    os.remove(root / "0001" / "readme.md")
    os.makedirs(root / "empty")
    with pytest.raises(datasets.DatasetError, match=r"empty has no images"):
        identity_folders.read_identity_folders(str(root))
    os.rmdir(root / "empty")
    os.makedirs(root / "0002" / "c9")
    with pytest.raises(datasets.DatasetError, match="use one layout for every identity"):
        identity_folders.read_identity_folders(str(root))
    shutil.rmtree(root / "0002" / "c9")
    os.makedirs(root / "solo")
    shutil.copy(next(iter(sorted((root / "0001").iterdir()))), root / "solo" / "a.JPG")  # any case
    records = identity_folders.read_identity_folders(str(root))[0]
    query, gallery = identity_folders.query_gallery(records)
    solo = max(r.pid for r in records)  # non-numeric names: numbered in sorted order, after the digits
    assert solo not in {r.pid for r in query} and solo in {r.pid for r in gallery}
    assert "1 identity with one image kept for the gallery only" in caplog.text


def _reference_no_cameras_map(d, q_pids, g_pids, same_file):
    """Per query: AP over the gallery with only its own file removed (a stable sort per row)."""
    aps = []
    for i in range(len(d)):
        keep = ~same_file[i]
        order = np.argsort(d[i][keep], kind="stable")
        hits = (g_pids[keep][order] == q_pids[i]).astype(float)
        if hits.sum():
            aps.append((np.cumsum(hits)[hits > 0] / (np.flatnonzero(hits) + 1)).mean())
    return float(np.mean(aps))


def test_no_cameras_leaves_out_only_the_query_itself():
    rng = np.random.default_rng(0)
    feats, pids = rng.normal(size=(40, 8)).astype(np.float32), rng.integers(0, 8, 40)
    files = [f"img{i}.jpg" for i in range(40)]
    cams = np.full(40, -1)
    scoring = C.ScoringConfig(protocol="no_cameras")
    got = evaluate.score(feats[:15], feats, pids[:15], pids, cams[:15], cams, scoring,
                         query_files=files[:15], gallery_files=files)  # every query is in the gallery too
    d = metrics.euclidean_distances(feats[:15], feats)
    same_file = np.array(files[:15])[:, None] == np.array(files)[None]
    assert got["mAP"] == pytest.approx(_reference_no_cameras_map(d, pids[:15], pids, same_file), abs=1e-6)
    with pytest.raises(metrics.MetricsError, match="pass --protocol=no_cameras"):
        evaluate.score(feats[:15], feats, pids[:15], pids, cams[:15], cams, C.ScoringConfig(protocol="official"))
    # Power: removing every same-pid item of one pseudo camera (one camera for all) finds nothing.
    with pytest.raises(metrics.MetricsError, match="no query has a valid match"):
        evaluate.score(feats[:15], feats, pids[:15], pids, np.zeros(15), np.zeros(40))


def _config(data_dir: str, protocol: str, max_steps: int = 1) -> C.RunConfig:
    config = tiny_config(data_dir, max_steps=max_steps, eval_every=max_steps, checkpoint_every=max_steps)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, dataset="folders"),
                               scoring=C.ScoringConfig(protocol=protocol))


def test_cameraless_folders_train_under_no_cameras_and_are_refused_under_market(own_dirs, tmp_path):
    with pytest.raises(TrainingError, match=r"--dataset=folders .* have no camera id.*--protocol=no_cameras"):
        train_lib.run(_config(own_dirs[False], "market1501"), str(tmp_path / "refused"))
    assert not os.path.exists(tmp_path / "refused" / "checkpoints")
    out = str(tmp_path / "run")
    train_lib.run(_config(own_dirs[False], "no_cameras", max_steps=2), out)
    row = json.loads(open(os.path.join(out, "validation.jsonl")).read().splitlines()[-1])
    assert 0.0 < row["mAP"] <= 1.0 and 0.0 < row["train_mAP"] <= 1.0


def test_eval_scores_a_folder_tree_and_query_and_gallery_folders_given_apart(own_dirs, saved_model, tmp_path):
    out = str(tmp_path / "scores.json")
    with_cams = eval_lib.run(saved_model, None, C.ScoringConfig(), eval_lib.Outputs(json_path=out),
                             dataset="folders", data_dir=own_dirs[True])
    assert json.load(open(out))["protocol"] == "market1501" and 0 < with_cams["mAP"] <= 1
    with pytest.raises(eval_lib.EvalError, match="pass --protocol=no_cameras"):
        eval_lib.run(saved_model, None, C.ScoringConfig(), dataset="folders", data_dir=own_dirs[False])
    plain = eval_lib.run(saved_model, None, C.ScoringConfig(protocol="no_cameras"), dataset="folders",
                         data_dir=own_dirs[False])
    assert 0 < plain["mAP"] <= 1
    # The same images as one folder for queries and one for the gallery: every identity name matches.
    query_dir, gallery_dir = tmp_path / "q", tmp_path / "g"
    records = identity_folders.read_identity_folders(own_dirs[False])[0]
    query, _ = identity_folders.query_gallery(records)
    for r in records:
        target = (query_dir if r in query else gallery_dir) / os.path.basename(os.path.dirname(r.path))
        os.makedirs(target, exist_ok=True)
        shutil.copy(r.path, target)
    apart = eval_lib.run(saved_model, None, C.ScoringConfig(protocol="no_cameras"), query_dir=str(query_dir),
                         gallery_dir=str(gallery_dir))
    assert apart["mAP"] == pytest.approx(plain["mAP"], abs=1e-6)
