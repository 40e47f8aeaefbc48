import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import warm_python
from helpers import REPO

from reid_tf import config as C
from reid_tf import datasets, evaluate, export_lib
from reid_tf import model as model_lib
from reid_tf.metrics import MetricsError, evaluate_rank

TOOL = os.path.join(REPO, "tools", "eval.py")


def features_case(seed=0, num_q=20, num_g=80, dim=8):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim))
    qp, gp = rng.integers(1, 11, num_q), rng.integers(1, 11, num_g)
    return {
        "query_features": centers[qp - 1] + 0.5 * rng.normal(size=(num_q, dim)),
        "gallery_features": centers[gp - 1] + 0.5 * rng.normal(size=(num_g, dim)),
        "query_pids": qp, "gallery_pids": gp,
        "query_camids": np.ones(num_q, int), "gallery_camids": np.full(num_g, 2),
    }


def run_tool(*args):
    return warm_python.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300)


def test_euclidean_distances():
    a, b = np.array([[0.0, 0], [3, 4]]), np.array([[0.0, 0], [6, 8], [3, 4]])
    np.testing.assert_allclose(evaluate.euclidean_distances(a, b), [[0, 10, 5], [5, 5, 0]], atol=1e-5)


def test_score_plain_and_reranked():
    case = features_case()
    scores = evaluate.score(*case.values(), rerank_too=True)
    d = evaluate.euclidean_distances(case["query_features"], case["gallery_features"])
    ref = evaluate_rank(d, case["query_pids"], case["gallery_pids"], case["query_camids"],
                        case["gallery_camids"])
    assert scores["mAP"] == pytest.approx(ref["mAP"]) and scores["rank1"] == ref["cmc"][0]
    assert {"mAP_rerank", "rank1_rerank", "rank20_rerank", "mINP_rerank"} <= set(scores)


def test_bad_features():
    case = features_case()
    with pytest.raises(MetricsError, match="query features are 8-d but gallery features 7-d"):
        evaluate.score(case["query_features"], case["gallery_features"][:, :7], *list(case.values())[2:])
    bad = case["gallery_features"].copy()
    bad[3, 1] = np.nan
    with pytest.raises(MetricsError, match="1 gallery feature rows have NaN or Inf"):
        evaluate.score(case["query_features"], bad, *list(case.values())[2:])
    with pytest.raises(MetricsError, match="non-empty"):
        evaluate.score(case["query_features"][:0], case["gallery_features"], *list(case.values())[2:])
    with pytest.raises(MetricsError, match="20 query features but 19 query pids"):
        evaluate.score(case["query_features"], case["gallery_features"], case["query_pids"][:19],
                       *list(case.values())[3:])


def test_flip_averages_the_mirror(market_dir):
    records = datasets.market.load_market1501(market_dir)["query"][:3]

    def embed(x):  # depends on left/right: the mean column of the first channel
        return tf.reduce_mean(x[..., 0] * tf.range(32, dtype=tf.float32), axis=[1])[:, :1]

    plain = evaluate.embed_records(embed, records, 64, 32)[0]
    mirrored = evaluate.embed_records(lambda x: embed(tf.reverse(x, [2])), records, 64, 32)[0]
    flipped = evaluate.embed_records(embed, records, 64, 32, flip=True)[0]
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, rtol=1e-6)


def test_tool_on_a_features_file(tmp_path):
    case = features_case()
    np.savez(tmp_path / "f.npz", **case)
    out = tmp_path / "scores.json"
    proc = run_tool(f"--features={tmp_path / 'f.npz'}", "--rerank", f"--output_json={out}",
                    f"--plot_dir={tmp_path / 'plots'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.load(open(out))
    expected = evaluate.score(*case.values(), rerank_too=True)
    for key in ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP", "mAP_rerank", "rank1_rerank"):
        assert scores[key] == pytest.approx(expected[key])
    assert "re-ranked" in proc.stdout and f"{expected['mAP']:7.4f}" in proc.stdout
    assert os.path.getsize(tmp_path / "plots" / "cmc.png") > 1000


def test_tool_on_an_exported_model(market_dir, tmp_path):
    config = C.RunConfig(data=C.DataConfig(image_height=64, image_width=32),
                         model=C.ModelConfig(backbone="small", backbone_weights="none"))
    model = model_lib.build_run_model(config, "none")
    path = export_lib.export_saved_model(model, config, str(tmp_path / "export"), 1, 0)
    proc = run_tool(f"--saved_model={path}", f"--data_dir={market_dir}", "--flip",
                    f"--plot_dir={tmp_path / 'plots'}", "--plot_queries=2",
                    f"--save_features={tmp_path / 'f.npz'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len([n for n in os.listdir(tmp_path / "plots" / "ranked") if n.endswith(".png")]) == 2
    saved = np.load(tmp_path / "f.npz")
    splits = datasets.market.load_market1501(market_dir)
    assert len(saved["query_features"]) == len(splits["query"])
    emb = evaluate.keras_embed_fn(model)
    direct = evaluate.embed_records(emb, splits["query"], 64, 32, flip=True)[0]
    np.testing.assert_allclose(saved["query_features"], direct, atol=1e-4)


def test_tool_bad_inputs_give_one_line(tmp_path):
    case = features_case()
    case["gallery_features"] = case["gallery_features"][:, :5]
    np.savez(tmp_path / "bad.npz", **case)
    proc = run_tool(f"--features={tmp_path / 'bad.npz'}")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: query features are 8-d but gallery features 5-d")
    np.savez(tmp_path / "missing.npz", query_features=np.zeros((2, 2)))
    proc = run_tool(f"--features={tmp_path / 'missing.npz'}")
    assert "lacks gallery_features" in proc.stderr.strip().splitlines()[-1]
    proc = run_tool()
    assert proc.stderr.strip().splitlines()[-1].startswith("error: give exactly one of")


def test_tool_says_what_a_features_file_must_hold(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))  # pickled objects
    (tmp_path / "notes.txt").write_text("not arrays\n")
    np.save(tmp_path / "single.npy", np.zeros((3, 4)))
    for name in ("objects.npy", "notes.txt", "single.npy"):
        proc = run_tool(f"--features={tmp_path / name}")
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert last.startswith(f"error: {tmp_path / name} is ") and "not a features file" in last
        assert "query_features, gallery_features, query_pids" in last and "pickle" not in last


def test_the_library_scores_an_export_and_its_saved_features_alike(saved_model, market_dir, tmp_path, capsys):
    """eval_lib.run, the tool's library: an export's figures equal those of the features it saved
    (a round trip through the .npz), and the printed table carries them."""
    from reid_tf import eval_lib

    scoring = C.ScoringConfig()
    saved = str(tmp_path / "f.npz")
    from_model = eval_lib.run(saved_model, None, scoring, eval_lib.Outputs(features_path=saved),
                              dataset="market1501", data_dir=market_dir, reranked=True)
    from_features = eval_lib.run(None, saved, scoring, reranked=True)
    for key in ("mAP", "rank1", "mINP", "mAP_rerank", "original_mAP"):
        assert from_model[key] == pytest.approx(from_features[key], abs=1e-6), key
    table = capsys.readouterr().out
    assert f"{from_model['mAP']:10.4f}" in table and "re-ranked" in table
    with pytest.raises(eval_lib.EvalError, match="exactly one of --features"):
        eval_lib.run(saved_model, saved, scoring)
