"""Where re-ID models are used: the tracker export's contract (boxmot's ReID backends, without boxmot),
the gallery tool (index a folder with bad files in it, search it exactly), and the search SavedModel."""

import json
import os
import shutil
import sys

import cv2
import numpy as np
import onnx
import pytest
import tensorflow as tf
import warm_python
from helpers import REPO

from reid_tf import evaluate, export_lib, exported, gallery, images, tracker_export
from reid_tf.datasets.market import load_market1501


@pytest.fixture(scope="module")
def tracker(trained_run, tmp_path_factory):
    return export_lib.export_run(trained_run, str(tmp_path_factory.mktemp("tracker")), fmt="tracker")


def boxmot_crops(frame_bgr: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """boxmot's crop pipeline (reid/core/crops.py, preprocessing.py): boxes rounded and clipped, the crop
    resized by cv2 (INTER_LINEAR) to W x H, BGR to RGB, / 255, ImageNet mean and std, NCHW."""
    out = []
    for x1, y1, x2, y2 in np.asarray(boxes).round().astype(int):
        crop = frame_bgr[max(0, y1):min(frame_bgr.shape[0], y2), max(0, x1):min(frame_bgr.shape[1], x2)]
        rgb = cv2.cvtColor(cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        out.append(((rgb / 255.0 - tracker_export.IMAGENET_MEAN) / tracker_export.IMAGENET_STD).transpose(2, 0, 1))
    return np.array(out, np.float32)


def test_the_tracker_export_is_boxmots_contract(tracker, trained_run):
    names = sorted(os.listdir(tracker))
    assert names == ["deepstream_sgie.txt", "reid_config.json", "small.onnx", "small.onnx.metadata.json",
                     "small.tflite", "small_raw255.onnx"]
    graph = onnx.load(os.path.join(tracker, "small.onnx")).graph
    (inp,) = graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and dims[1:] == [3, 64, 32] and isinstance(dims[0], str)  # dynamic batch
    assert graph.output[0].name == "embeddings"
    model = onnx.load(os.path.join(tracker, "small.onnx"))
    assert {o.domain: o.version for o in model.opset_import}[""] == tracker_export.ONNX_OPSET and model.ir_version <= 10
    sidecar = json.load(open(os.path.join(tracker, "small.onnx.metadata.json")))
    assert sidecar["schema_version"] == 1 and sidecar["model_name"] == "small"
    assert sidecar["img_size"] == [64, 32] and sidecar["preprocess"] == "resize"
    assert sidecar["model_kwargs"] == {"img_size": [64, 32], "feat_dim": 128}
    ds = open(os.path.join(tracker, "deepstream_sgie.txt")).read()
    assert "onnx-file=small_raw255.onnx" in ds and "net-scale-factor=1.0" in ds and "infer-dims=3;64;32" in ds


def test_boxmots_crops_embed_as_the_eval_pipeline_does(tracker, trained_run, market_dir):
    """A BGR frame with people pasted in, cut the way boxmot cuts it, against tools/eval.py's pipeline
    on the same crops: batches of 1, 7 and 33."""
    records = (load_market1501(market_dir)["gallery"] * 2)[:33]
    crops = [cv2.imread(r.path) for r in records]  # BGR, as a tracker's frames
    frame = np.zeros((200, 64 * 33 + 40, 3), np.uint8)
    boxes = []
    for i, crop in enumerate(crops):
        x, y = 10 + 64 * i, 30 + (i % 3) * 10
        big = cv2.resize(crop, (48, 96), interpolation=cv2.INTER_CUBIC)  # people at another size than the model's
        frame[y:y + 96, x:x + 48] = big
        boxes.append([x + 0.4, y - 0.3, x + 48.2, y + 96.4])  # detector boxes are fractional
    onnx_run = tracker_export.tracker_onnx_run(os.path.join(tracker, "small.onnx"))
    eval_model = exported.open_export(os.path.join(trained_run, "export", "30"))
    for n in (1, 7, 33):
        ours = onnx_run(boxmot_crops(frame, boxes[:n], 64, 32))
        x1, y1, x2, y2 = np.array(boxes[:n]).round().astype(int).T
        pixels = np.stack([images.resize(cv2.cvtColor(frame[a:b, c:d], cv2.COLOR_BGR2RGB).astype(np.float32),
                                         64, 32).numpy() for a, b, c, d in zip(y1, y2, x1, x2)])
        reference = eval_model.embed(pixels)
        # The two resizes are one (cv2's INTER_LINEAR on floats is the eval pipeline's bilinear); boxmot's
        # only difference is cv2 rounding its uint8 output.
        floats = np.stack([cv2.resize(cv2.cvtColor(frame[a:b, c:d], cv2.COLOR_BGR2RGB).astype(np.float32), (32, 64),
                                      interpolation=cv2.INTER_LINEAR) for a, b, c, d in zip(y1, y2, x1, x2)])
        np.testing.assert_allclose(floats, pixels, atol=1e-3)
        cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
        assert ours.shape == (n, 128) and np.isfinite(ours).all() and cosine.min() >= 0.999, (n, cosine.min())


def test_the_raw_pixel_and_litert_files_give_the_same_embeddings(tracker, trained_run):
    pixels = np.random.default_rng(0).uniform(0, 255, (7, 64, 32, 3)).astype(np.float32)
    reference = exported.open_export(os.path.join(trained_run, "export", "30")).embed(pixels)
    raw = tracker_export.tracker_onnx_run(os.path.join(tracker, "small_raw255.onnx"))(pixels.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(raw, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    from reid_tf import convert

    lite = convert.tflite_embed_fn(os.path.join(tracker, "small.tflite"))
    for n in (1, 7):
        got = lite(tracker_export.standardised(pixels[:n]).transpose(0, 2, 3, 1))
        np.testing.assert_allclose(got, reference[:n], rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    opened = exported.open_export(tracker)  # the tracker folder opens as any export
    assert opened.format == "tracker" and np.allclose(opened.embed(pixels), reference, atol=1e-4)


@pytest.mark.parametrize("backbone,neck_feat", [("small", "after"), ("resnet50", "before")])
def test_the_tracker_input_feeds_any_backbone_and_bnneck(backbone, neck_feat):
    """Any backbone's own preprocessing behind ImageNet-standardised NCHW input (ResNet50's caffe
    BGR-less-mean mode too), and BoT's BNNeck feature chosen by --neck_feat as the output."""
    from reid_tf import config as C
    from reid_tf import model as M

    model = M.build_model((64, 32, 3), C.ModelConfig(backbone=backbone, backbone_weights="none", neck="bnneck",
                                                     neck_feat=neck_feat))
    pixels = np.random.default_rng(1).uniform(0, 255, (3, 64, 32, 3)).astype(np.float32)
    expected = model(pixels, training=False)[neck_feat == "after" and "neck" or "features"].numpy()
    got = tracker_export.tracker_function(model, 64, 32, "nchw")(tracker_export.standardised(pixels))["embeddings"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_an_int8_tracker_litert_file_is_reported(trained_run, tmp_path):
    folder = export_lib.export_run(trained_run, str(tmp_path / "int8"), fmt="tracker", quantize="int8")
    meta = json.load(open(os.path.join(folder, "reid_config.json")))
    assert meta["verification"]["small.tflite"]["min_cosine"] > 0.9  # reported, and a working model
    assert meta["verification"]["small.onnx"]["relative"] < 1e-4


@pytest.fixture(scope="module")
def crops(market_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crops")
    for r in load_market1501(market_dir)["gallery"]:
        shutil.copy(r.path, folder)
    good = sorted(os.listdir(folder))[0]
    (folder / "0999_c1s1_000100_00.jpg").write_bytes((folder / good).read_bytes()[:200])  # truncated
    (folder / "notes.png").write_bytes(b"not an image")
    return str(folder)


def run_gallery(*args):
    return warm_python.run([sys.executable, "tools/gallery.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_index_skips_bad_files_resumes_and_searches_exactly(trained_run, crops, tmp_path):
    index = str(tmp_path / "gallery.idx")
    first = run_gallery("index", f"--model={trained_run}", f"--images={crops}", f"--index={index}")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "0999_c1s1_000100_00.jpg" in first.stderr and "notes.png" in first.stderr  # named, skipped
    loaded = gallery.load(index)
    good = len(os.listdir(crops)) - 2
    assert loaded.meta["count"] == good and loaded.embeddings.shape == (good, 128)
    again = run_gallery("index", f"--model={trained_run}", f"--images={crops}", f"--index={index}")
    assert again.returncode == 0 and gallery.load(index).meta["count"] == good  # nothing twice
    query = os.path.join(crops, sorted(os.listdir(crops))[3])
    out = tmp_path / "results.json"
    found = run_gallery("search", f"--index={index}", f"--query={query}", "--k=5", f"--output_json={out}",
                        f"--plot_dir={tmp_path / 'pictures'}")
    assert found.returncode == 0, found.stderr[-2000:]
    results = json.load(open(out))["queries"][0]
    model = exported.open_export(trained_run)
    q = evaluate.embed_records(model.embed, loaded.records([list(loaded.paths).index(query)]), 64, 32)[0]
    brute = np.linalg.norm(loaded.embeddings - q, axis=1)
    order = np.argsort(brute, kind="stable")[:5]
    assert [r["path"] for r in results["results"]] == [loaded.paths[i] for i in order]
    np.testing.assert_allclose([r["distance"] for r in results["results"]], brute[order], rtol=1e-4, atol=1e-5)
    assert results["results"][0]["path"] == query  # the query itself is in the gallery
    assert os.path.exists(tmp_path / "pictures" / "search_00000.png")


def test_filters_and_engines_give_the_exact_results(trained_run, crops, tmp_path):
    index_dir = str(tmp_path / "idx")
    gallery.index_folder(exported.open_export(trained_run), crops, index_dir, progress=None)
    index = gallery.load(index_dir)
    queries = index.embeddings[:6] + 0.01
    cams, frames = index.camids[:6], index.frames[:6]
    for engine in ("numpy", "faiss"):
        rows, dist = gallery.search(index, queries, 7, engine=engine)
        brute = np.linalg.norm(queries[:, None] - index.embeddings[None], axis=2)
        np.testing.assert_array_equal(rows, np.argsort(brute, axis=1, kind="stable")[:, :7])
    rows, _ = gallery.search(index, queries, 7, cams, frames, other_cameras=True)
    assert (index.camids[rows] != cams[:, None]).all()
    rows, dist = gallery.search(index, queries, 7, cams, frames, time_window=0)
    kept = np.isfinite(dist)
    assert (index.frames[rows][kept] == np.repeat(frames[:, None], 7, axis=1)[kept]).all()
    reranked, _ = gallery.search(index, queries, 5, rerank=True)
    assert reranked.shape == (6, 5)


def test_bad_gallery_input_is_one_line(trained_run, crops, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_gallery("index", f"--model={trained_run}", f"--images={empty}", f"--index={tmp_path / 'i'}")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: --images=")
    assert "Traceback" not in proc.stderr
    index = str(tmp_path / "ok")
    gallery.index_folder(exported.open_export(trained_run), crops, index, progress=None)
    with open(os.path.join(index, "chunk-00000.npz"), "r+b") as f:
        f.truncate(100)
    proc = run_gallery("search", f"--index={index}", f"--query={crops}")
    assert proc.returncode == 1 and "is corrupt" in proc.stderr.strip().splitlines()[-1]
    other = str(tmp_path / "other")
    gallery.index_folder(exported.open_export(trained_run), crops, other, progress=None)
    with pytest.raises(gallery.GalleryError, match="made by another model"):
        gallery.load(other, model_identity="someone else")
    with pytest.raises(gallery.GalleryError, match="queries are 3-d"):
        gallery.search(gallery.load(other), np.zeros((1, 3), np.float32))


def assert_exact_top_k(indices: np.ndarray, served: np.ndarray, rows: np.ndarray, distances: np.ndarray,
                       queries: np.ndarray, embeddings: np.ndarray) -> None:
    """`indices` at `served` distances is the exact top-k that `rows` at `distances` is. Distances
    compare as squares, within the float32 rounding of |q|^2 + |g|^2 - 2qg (a few ulps of the norms);
    entries tied within it may come in either order, all others must be the same rows."""
    q_sq = np.square(queries).sum(1)[:, None]
    tol = 16 * np.finfo(np.float32).eps * (q_sq + np.square(embeddings).sum(1).max())
    exact = np.square(queries[:, None, :] - embeddings[indices]).sum(-1)
    for d in (exact, np.square(served)):
        assert (np.abs(d - np.square(distances)) <= tol).all(), (d, np.square(distances), tol)
    sq = np.square(distances)
    gaps = np.abs(sq[:, :, None] - sq[:, None, :]) + np.where(np.eye(sq.shape[1]), np.inf, 0.0)
    untied = gaps.min(axis=2) > tol
    assert untied.mean() > 0.3, "too many ties to tell one order from another"
    np.testing.assert_array_equal(indices[untied], rows[untied])


def test_the_search_saved_model_equals_the_gallery_tool(trained_run, crops, tmp_path):
    index_dir = str(tmp_path / "idx")
    model = exported.open_export(trained_run)
    gallery.index_folder(model, crops, index_dir, progress=None)
    folder = export_lib.export_run(trained_run, str(tmp_path / "search"), fmt="search", index=index_dir, k=6)
    served = tf.saved_model.load(folder)
    assert set(served.signatures) == {"search", "search_bytes"}
    index = gallery.load(index_dir)
    paths = list(index.paths[:4])
    encoded = tf.constant([open(p, "rb").read() for p in paths])
    out = served.signatures["search_bytes"](image_bytes=encoded)
    queries = evaluate.embed_records(model.embed, index.records(np.arange(4)), 64, 32)[0]
    rows, dist = gallery.search(index, queries, 6, engine="numpy")
    assert_exact_top_k(out["indices"].numpy(), out["distances"].numpy(), rows, dist, queries, index.embeddings)
    assert [[p.decode() for p in row] for row in out["paths"].numpy()] == [
        list(index.paths[r]) for r in out["indices"].numpy()]
    pixels = evaluate.embed_records(lambda x: x.numpy().reshape(len(x), -1), index.records(np.arange(4)), 64, 32)[0]
    by_pixels = served.signatures["search"](images=tf.constant(pixels.reshape(4, 64, 32, 3)))
    assert_exact_top_k(by_pixels["indices"].numpy(), by_pixels["distances"].numpy(), rows, dist, queries,
                       index.embeddings)
    with pytest.raises(export_lib.ExportError, match="needs --index"):
        export_lib.export_run(trained_run, str(tmp_path / "no"), fmt="search")


def test_the_library_searches_a_folder_of_queries(trained_run, crops, tmp_path):
    """gallery_queries.search_images, the tool's library: each indexed crop asked as a query finds
    itself first, at distance 0; --other_cameras leaves only results from other cameras."""
    from reid_tf import gallery_queries

    index_dir = str(tmp_path / "idx")
    gallery.index_folder(exported.open_export(trained_run), crops, index_dir, progress=None)
    index = gallery.load(index_dir)
    plain = gallery_queries.search_images(index_dir, crops, k=3)["queries"]
    assert sorted(q["query"] for q in plain) == sorted(index.paths)  # the unreadable two left out
    for q in plain:
        assert q["results"][0]["path"] == q["query"] and q["results"][0]["distance"] < 1e-3
    other = gallery_queries.search_images(index_dir, crops, k=3, other_cameras=True)["queries"]
    camera = {p: gallery.describe_name(p)[1] for p in index.paths}
    for q in other:
        assert q["results"] and all(camera[r["path"]] != camera[q["query"]] for r in q["results"])
    with pytest.raises(gallery.GalleryError, match="search needs --query"):
        gallery_queries.search_images(index_dir, "")
