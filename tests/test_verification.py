"""'Same person?': the verification figures against exact sorted-distance references, the
calibration file, and the gallery search deciding with it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO

from reid_tf import calibration, eval_pairs, gallery, gallery_queries, metrics, verification
from reid_tf import config as C


def _set(seed=0, num_q=120, num_g=600, ids=40, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    q_pids, g_pids = rng.integers(0, ids, num_q), rng.integers(-1, ids, num_g)  # -1: junk
    q = (centres[q_pids] + rng.normal(scale=0.8, size=(num_q, dim))).astype(np.float32)
    g = (centres[np.maximum(g_pids, 0)] + rng.normal(scale=0.8, size=(num_g, dim))).astype(np.float32)
    return q, g, q_pids, g_pids, rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)


def test_figures_match_exact_references_to_the_bin_width():
    q, g, qp, gp, qc, gc = _set()
    h = verification.pair_histograms(q, g, qp, gp, qc, gc)
    d = metrics.euclidean_distances(q, g)
    same = qp[:, None] == gp[None]
    keep = (gp[None] != -1) & ~(same & (qc[:, None] == gc[None]))
    pos, neg = np.sort(d[keep & same]), np.sort(d[keep & ~same])
    assert (h.positive.sum(), h.negative.sum()) == (len(pos), len(neg))  # the ranking's pairs, no other
    exact_auc = (len(neg) - np.searchsorted(neg, pos, side="right")).sum() / (len(pos) * len(neg))
    s = verification.summary(h)
    assert s["roc_auc"] == pytest.approx(exact_auc, abs=1e-4)
    for far in (1e-2, 1e-3, 1e-4):
        threshold, tar, achieved = verification.threshold_at_far(h, far)
        exact = neg[int(far * len(neg))]  # the first negative that a larger threshold would accept
        assert achieved <= far and exact - h.width <= threshold <= exact + h.width
        assert tar == pytest.approx((pos < threshold).mean(), abs=1e-12)
        assert s["thresholds"][f"far={far:g}"] == threshold
    eer, at = verification.equal_error(h)
    frr, fa = (pos > at).mean(), (neg <= at).mean()
    assert abs(frr - fa) <= 2 / len(pos) + 2 / len(neg) + 1e-3 and eer == pytest.approx((frr + fa) / 2, abs=2e-3)
    assert pos.mean() < s["thresholds"]["crossing"] < neg.mean()


def test_too_few_negatives_for_a_far_are_said_not_guessed():
    q, g, qp, gp, qc, gc = _set(num_q=10, num_g=30, ids=3)
    s = verification.summary(verification.pair_histograms(q, g, qp, gp, qc, gc))
    assert s["tar_at_far=0.0001"] is None and "far=0.0001" not in s["thresholds"]
    assert "too few pairs" in eval_pairs.lines(s)[1]


def test_calibration_fits_writes_fixed_keys_and_the_search_decides_with_it(saved_model, market_dir, tmp_path):
    path = str(tmp_path / "calibration.json")
    fitted = eval_pairs.calibrate(saved_model, C.ScoringConfig(), path, dataset="market1501", data_dir=market_dir)
    on_disk = json.load(open(path))
    assert on_disk["distance"] == "euclidean" and set(on_disk["thresholds"]) == set(calibration.KEYS)
    assert on_disk["fitted_on"]["protocol"] == "market1501" and on_disk["fitted_on"]["pairs"]["positive"] > 0
    eer = fitted["thresholds"]["eer"]
    index = str(tmp_path / "index")
    from reid_tf import exported

    gallery.index_folder(exported.open_export(saved_model), os.path.join(market_dir, "bounding_box_test"), index)
    query = os.path.join(market_dir, "query")
    out = gallery_queries.search_images(index, query, saved_model, k=5, calibration_path=path, threshold="eer")
    results = [r for q in out["queries"] for r in q["results"]]
    assert out["threshold"] == eer and all(r["same_person"] == (r["distance"] <= eer) for r in results)
    assert {r["same_person"] for r in results} == {True, False}  # a threshold that decides
    fars = [r["far"] for r in sorted(results, key=lambda r: r["distance"])]
    assert all(a <= b for a, b in zip(fars, fars[1:]))  # FAR grows with distance
    on_disk["fitted_on"]["model_identity"] = "another"
    json.dump(on_disk, open(path, "w"))
    with pytest.raises(gallery.GalleryError, match="fitted on another model"):
        gallery_queries.search_images(index, query, saved_model, calibration_path=path, threshold="eer")


def test_eval_verification_and_calibrate_from_the_command_line(saved_model, tmp_path):
    """tools/eval.py as a user runs it: the figures and picture, then the run's validation identities."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    shown = subprocess.run([sys.executable, "tools/eval.py", f"--model={saved_model}", "--verification",
                            f"--plot_dir={tmp_path}", f"--output_json={tmp_path}/s.json"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr[-2000:]
    assert "ROC AUC" in shown.stdout and os.path.getsize(tmp_path / "verification.png") > 10_000
    assert 0 < json.load(open(tmp_path / "s.json"))["verification_roc_auc"] <= 1  # a 30-step toy model
    fitted = subprocess.run([sys.executable, "tools/eval.py", f"--model={saved_model}", "--calibrate",
                             f"--calibration={tmp_path}/c.json"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert fitted.returncode == 0 and "Traceback" not in fitted.stderr, fitted.stderr[-2000:]
    assert json.load(open(tmp_path / "c.json"))["fitted_on"]["identities"] == "the run's validation identities"


def test_the_export_carries_the_threshold(trained_run, saved_model, market_dir, tmp_path):
    """--calibration: the search SavedModel's `match` is distance <= the threshold; the tracker's
    sidecar gates at the threshold fitted on normalised embeddings, as cosine distance."""
    import tensorflow as tf

    from reid_tf import export_lib, exported

    path = str(tmp_path / "c.json")
    fitted = eval_pairs.calibrate(saved_model, C.ScoringConfig(), path, dataset="market1501", data_dir=market_dir)
    index = str(tmp_path / "index")
    gallery.index_folder(exported.open_export(saved_model), os.path.join(market_dir, "bounding_box_test"), index)
    folder = export_lib.export_run(trained_run, str(tmp_path / "search"), fmt="search", index=index, k=6,
                                   calibration_file=path, threshold="eer")
    assert json.load(open(os.path.join(folder, calibration.FILE))) == fitted  # beside the model
    images = np.random.default_rng(0).uniform(0, 255, (3, 64, 32, 3)).astype(np.float32)
    out = tf.saved_model.load(folder).signatures["search"](images=tf.constant(images))
    expected = out["distances"].numpy() <= fitted["thresholds"]["eer"]
    assert np.array_equal(out["match"].numpy(), expected)
    tracker = export_lib.export_run(trained_run, str(tmp_path / "tracker"), fmt="tracker", calibration_file=path,
                                    threshold="eer")
    sidecar = json.load(open(os.path.join(tracker, "small.onnx.metadata.json")))["reid_tf"]
    assert sidecar["max_cos_dist"] == fitted["cosine"]["thresholds"]["eer"] and "d^2 / 2" in sidecar["threshold"][
        "conversion"]
    fitted["fitted_on"]["model_identity"] = "another"
    json.dump(fitted, open(path, "w"))
    with pytest.raises(export_lib.ExportError, match="fitted on another model"):
        export_lib.export_run(trained_run, str(tmp_path / "no"), calibration_file=path)
