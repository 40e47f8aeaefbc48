"""What a model looks at, through tools/eval.py and the trainer: TensorBoard projector files,
activation maps, ranked strips in the order scored, the CMC curve's title."""

import json
import os
import sys

import numpy as np
import pytest
import warm_python
from helpers import REPO, make_msmt17, tiny_config
from PIL import Image

from reid_tf import config as C
from reid_tf import datasets, export_lib, exported, projector, train_lib
from reid_tf import model as model_lib
from reid_tf.model import backbone_of


def run_tool(*args):
    return warm_python.run([sys.executable, "tools/eval.py", *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def run(market_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pictures") / "run")
    train_lib.run(tiny_config(market_dir, max_steps=2, eval_every=2, projector=True), out)
    return out


def projector_rows(folder):
    from google.protobuf import text_format
    from tensorboard.plugins import projector as tb_projector

    config = text_format.Parse(open(os.path.join(folder, "projector_config.pbtxt")).read(),
                               tb_projector.ProjectorConfig())
    (embedding,) = config.embeddings
    tensor = np.loadtxt(os.path.join(folder, embedding.tensor_path), delimiter="\t", ndmin=2)
    lines = open(os.path.join(folder, embedding.metadata_path)).read().splitlines()
    sprite = Image.open(os.path.join(folder, embedding.sprite.image_path))
    return embedding, tensor, lines, sprite


def test_projector_files_from_the_eval_tool(run, market_dir, tmp_path):
    folder = tmp_path / "projector"
    proc = run_tool(f"--model={run}", f"--projector_dir={folder}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    embedding, tensor, lines, sprite = projector_rows(folder)
    query, gallery = datasets.load_test_split(C.DataConfig(dataset="market1501", data_dir=market_dir))
    assert tensor.shape == (len(query) + len(gallery), 128)
    assert lines[0] == "pid\tcamera\tset\tfile" and len(lines) == len(tensor) + 1  # header + one row each
    first = lines[1].split("\t")
    assert first == [str(query[0].pid), str(query[0].camid), "query", os.path.basename(query[0].path)]
    assert lines[-1].split("\t")[2] == "gallery"
    width, height = embedding.sprite.single_image_dim
    side = int(np.ceil(np.sqrt(len(tensor))))
    assert sprite.size == (side * width, side * height) and max(sprite.size) <= projector.SPRITE_LIMIT
    assert f"projector: {len(tensor)} images" in proc.stdout


def test_a_sprite_over_tensorboards_limit_is_sampled(monkeypatch, tmp_path, market_dir):
    query, gallery = datasets.load_test_split(C.DataConfig(dataset="market1501", data_dir=market_dir))
    monkeypatch.setattr(projector, "SPRITE_LIMIT", 64)  # room for (64 / 16)^2 = 16 crops of 16x8
    said = projector.write_projector(str(tmp_path), np.ones((len(query), 4)), query,
                                     np.zeros((len(gallery), 4)), gallery)
    embedding, tensor, lines, sprite = projector_rows(tmp_path)
    assert len(tensor) == 16 == len(lines) - 1 and sprite.size == (32, 64)
    assert f"16 of {len(query) + len(gallery)} images (every query, the gallery evenly sampled)" in said


def test_the_trainer_writes_the_validation_projector(run):
    embedding, tensor, lines, _ = projector_rows(os.path.join(run, "tensorboard", "projector"))
    assert len(tensor) == len(lines) - 1 > 0


def test_activation_maps_one_picture_per_query(run, tmp_path):
    proc = run_tool(f"--model={run}", f"--actmap_dir={tmp_path / 'maps'}", "--actmap_queries=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pictures = sorted(os.listdir(tmp_path / "maps"))
    assert len(pictures) == 3 and all(p.startswith("actmap_") and p.endswith(".png") for p in pictures)
    image = Image.open(tmp_path / "maps" / pictures[0])
    # The image, its map and the overlay side by side, at 3x the 64x32 input, under a caption.
    assert image.size == (3 * 96 + 2 * 10, 192 + 22)


def test_activation_maps_are_torchreids(run):
    model = exported.keras_model(run)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 32, 3)).astype(np.float32)
    maps = model_lib.activation_maps(model, images)
    features = backbone_of(model)(model.get_layer("preprocessing")(images), training=False).numpy()
    expected = (features ** 2).sum(-1)
    expected /= np.linalg.norm(expected.reshape(2, -1), axis=1)[:, None, None]
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)


def test_activation_maps_refuse_an_export_without_the_keras_model(run, tmp_path):
    folder = export_lib.export_run(run, str(tmp_path / "tflite"), fmt="tflite")
    proc = run_tool(f"--model={folder}/model.tflite", f"--actmap_dir={tmp_path / 'maps'}")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert last.startswith("error: ") and "does not carry the Keras model" in last
    assert not os.path.exists(tmp_path / "maps")


def test_ranked_strips_follow_the_scored_order_and_say_which(run, tmp_path):
    proc = run_tool(f"--model={run}", f"--plot_dir={tmp_path / 'plain'}", "--plot_queries=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_tool(f"--model={run}", f"--plot_dir={tmp_path / 'reranked'}", "--plot_queries=2", "--rerank",
                    "--k1=3", "--k2=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("plain", "reranked"):
        lists = sorted(n for n in os.listdir(tmp_path / name / "ranked") if n.endswith(".json"))
        assert len(lists) == 2 and os.path.getsize(tmp_path / name / "cmc.png") > 1000
        for listed in lists:
            ranked = json.load(open(tmp_path / name / "ranked" / listed))
            query = ranked["query"].rsplit("/", 1)[-1]
            pid, cam = int(query[:4]), int(query[6])
            distances = [r["distance"] for r in ranked["results"]]
            expected = "re-ranked (zhong, k1=3, k2=2, λ=0.3)" if name == "reranked" else "Euclidean distance"
            assert ranked["order"] == expected
            assert distances == sorted(distances) and len(distances) == 10  # the scored order, nearest first
            assert not any((r["pid"] == pid and r["camid"] == cam) or r["pid"] == -1 for r in ranked["results"])


def test_strips_label_each_tile(tmp_path, market_dir):
    from reid_tf import plots

    query, gallery = datasets.load_test_split(C.DataConfig(dataset="market1501", data_dir=market_dir))
    distmat = np.random.default_rng(0).random((len(query), len(gallery))).astype(np.float32)
    (path,) = plots.ranked_retrieval(distmat, query, gallery, str(tmp_path), num_queries=1, top_k=3,
                                     order="re-ranked")
    listed = json.load(open(path[:-4] + ".json"))
    valid = [g for g in np.argsort(distmat[0], kind="stable") if gallery[g].pid != -1
             and not (gallery[g].pid == query[0].pid and gallery[g].camid == query[0].camid)][:3]
    assert [r["path"] for r in listed["results"]] == [gallery[g].path for g in valid]
    strip = np.asarray(Image.open(path).convert("L"), np.float32)
    assert strip.shape[0] == 22 + 128 + 8 + 2 * 18  # header, crop, frame, a caption above and below
    # Caption rows hold dark text pixels above and below each crop.
    assert (strip[22:40] < 100).any() and (strip[-18:] < 100).any()


def test_cross_domain_scoring_of_another_datasets_test_split(run, tmp_path):
    """A model trained on one layout (Market-1501) scored on MSMT17's query/gallery lists."""

    msmt = make_msmt17(tmp_path / "msmt17")
    proc = run_tool(f"--model={run}", "--dataset=msmt17", f"--data_dir={msmt}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 queries, 3 gallery images" in proc.stdout and "scoring on the test split" not in proc.stdout
    proc = run_tool(f"--model={run}", "--dataset=cuhk03_np", f"--data_dir={msmt}")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("error: ") and f"--data_dir={msmt}" in last
