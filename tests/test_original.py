"""The 2017 original's semantics against its own functions' outputs (../shared/oracles/: res_cmc.py,
re_ranking.py and res_data.py at 0e5c742, run on the July-2017 software), and its quirks as
settings: each trains, validates and exports, and each is off by default."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import warm_python
from helpers import REPO, replaced, tiny_config

from reid_tf import augment, images, metrics, rerank, train_lib
from reid_tf import config as C

ORACLES = os.path.join(os.path.dirname(REPO), "shared", "oracles")
needs_oracles = pytest.mark.skipif(not os.path.isdir(ORACLES), reason="../shared/oracles is not beside the checkout")


def cases(name):
    meta = json.load(open(os.path.join(ORACLES, f"{name}.json")))
    arrays = np.load(os.path.join(ORACLES, f"{name}.npz"))
    return [(c, {k.split("__", 1)[1]: arrays[k] for k in arrays.files if k.startswith(c["name"] + "__")})
            for c in meta["cases"]]


@needs_oracles
def test_original_scores_equal_res_cmc():
    for case, a in cases("original_metrics"):
        got = metrics.original_scores(a["dist"], a["q_ids"], a["g_ids"], top_n=200)
        assert got["mAP"] == pytest.approx(float(a["map1_interp"]), abs=1e-12), case["name"]
        ties = "map2_top200_ties_by_index" in a  # a stable order breaks ties: the oracle's value for it
        top = float(a["map2_top200_ties_by_index" if ties else "map2_top200"])
        assert got["mAP_at_top_n"] == pytest.approx(top, abs=1e-12), case["name"]
        at10 = metrics.original_scores(a["dist"], a["q_ids"], a["g_ids"], top_n=10)["mAP_at_top_n"]
        assert at10 == pytest.approx(float(a["map2_top10_ties_by_index" if ties else "map2_top10"]), abs=1e-12)
        expected = a["cmc_expected_at"]
        for k, value in zip((1, 5, 10, 20), expected):
            if np.isfinite(value):  # the oracle's exact expectation (cases without ties)
                assert got[f"rank{k}"] == pytest.approx(float(value), abs=1e-12), (case["name"], k)
            elif not case["edge_cases"]["ties"]:
                assert np.isnan(got[f"rank{k}"])  # beyond the curve: the original's is one entry an id
        if case["edge_cases"]["ties"]:  # the seeded run of the randomised CMC, within its Monte Carlo error
            seeded = a["cmc_seed0_at"]
            assert abs(got["rank1"] - seeded[0]) < 0.06 and abs(got["rank5"] - seeded[1]) < 0.06


@needs_oracles
def test_original_re_ranking_equals_re_ranking_py():
    for case, a in cases("original_rerank"):
        default = rerank.original_re_ranking(a["p_feat"], a["g_feat"])  # 0e5c742's k1 10, k2 6, lambda 0.05
        np.testing.assert_allclose(default, a["rr_0e5c742_default"], rtol=0, atol=1e-9, err_msg=case["name"])
        day = rerank.original_re_ranking(a["p_feat"], a["g_feat"], k1=20, k2=6, lambda_value=0.3)  # 7.13's
        np.testing.assert_allclose(day, a["rr_0e5c742_k1_20_lambda_0.3"], rtol=0, atol=1e-9)
        maps = metrics.original_scores(default, a["q_ids"], a["g_ids"])
        assert maps["mAP"] == pytest.approx(float(a["maps_rr_0e5c742_default"][0]), abs=1e-9)
        assert maps["mAP_at_top_n"] == pytest.approx(float(a["maps_rr_0e5c742_default"][2]), abs=1e-9)


def test_the_walk_that_deletes_from_its_own_list_keeps_the_next_neighbour():
    """R()'s bug by hand: neighbours 1, 2, 3 of x, none reciprocal: 1 is deleted, 2 skipped (kept),
    3 deleted; with the walk done right none would stay."""
    from reid_tf.rerank.original import _reciprocal_sets

    n = 5  # x = 0; its order 0, 1, 2, 3, 4; every other point's nearest are far from x
    order = np.array([[0, 1, 2, 3, 4], [1, 4, 2, 3, 0], [2, 4, 3, 1, 0], [3, 4, 1, 2, 0], [4, 1, 2, 3, 0]])
    kept = _reciprocal_sets(order[None], 3)[0]
    assert list(np.flatnonzero(kept[0])) == [2]
    assert n == order.shape[0]


@needs_oracles
def test_the_centre_crop_is_process_image():
    for case, a in cases("original_process_image"):
        ours = images.original_center_crop(tf.constant(a["image"]), 224, 112).numpy()
        exact = a["float_before_uint8"]
        # The value before truncation to 1e-9; the truncated value wherever the 2017 value is not an
        # integer in exact arithmetic (its resize's coordinates carry the round-off of an affine fit,
        # about 1e-14, which decides the side of an integer only there).
        unit = tf.cast(a["image"], tf.float64) / 255.0
        height = images._skimage_bilinear_weights(tf.shape(a["image"])[0], 224)
        width = images._skimage_bilinear_weights(tf.shape(a["image"])[1], 140)[14:126]
        before = tf.einsum("hr,rwc->hwc", height, tf.einsum("rkc,wk->rwc", unit, width)).numpy() * 255
        np.testing.assert_allclose(before, exact, rtol=0, atol=1e-9, err_msg=case["name"])
        away = np.abs(exact - np.round(exact)) > 1e-6
        np.testing.assert_array_equal(ours[away], a["out"][away])


def test_the_original_split_draws_one_or_two_probes_and_at_most_40_gallery_images():
    from reid_tf.datasets.records import Record
    from reid_tf.datasets.splits import original_gallery_split

    records = [Record(f"{pid}_{i}.jpg", pid, i % 3) for pid in range(30) for i in range(2 + pid * 2)]
    query, gallery = original_gallery_split(records, seed=0)
    per_query = np.bincount([r.pid for r in query], minlength=30)
    per_gallery = np.bincount([r.pid for r in gallery], minlength=30)
    assert set(per_query) <= {1, 2} and 5 < (per_query == 2).sum() < 25  # the second probe is a coin
    counts = np.array([2 + pid * 2 for pid in range(30)])
    np.testing.assert_array_equal(per_gallery, np.minimum(counts - per_query, 40))
    assert not {r.path for r in query} & {r.path for r in gallery}
    assert original_gallery_split(records, seed=0) == (query, gallery)


def test_the_slots_ops_are_drawn_once_per_run_with_the_commits_probabilities():
    for name, expected in (("original_e50be2b", (0.1, 0.1, 0.5, 0.1)), ("original_d26b97d", (0.5,) * 4)):
        ops = augment.original_slot_ops(name, 20000, seed=3)
        np.testing.assert_allclose(ops.mean(axis=0), expected, atol=0.015)
        np.testing.assert_array_equal(ops, augment.original_slot_ops(name, 20000, seed=3))
    only = augment.original_slot_ops("original_d26b97d", 1000, 3, ("hue", "brightness"))
    assert not only[:, 0].any() and not only[:, 2].any() and only[:, 1].any()


def test_the_original_augmentation_keeps_each_slots_ops(tmp_path):
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(0, 255, (64, 32, 3)), tf.float32)
    seed = tf.constant([1, 2], tf.int64)
    nothing = augment.original_augment(image, 64, 32, tf.constant([False] * 4), "original_d26b97d", seed)
    np.testing.assert_allclose(nothing.numpy(), image.numpy(), atol=1e-4)  # no op: the same image
    bright = augment.original_augment(image, 64, 32, tf.constant([False, False, False, True]),
                                      "original_d26b97d", seed).numpy() - image.numpy()
    assert np.ptp(bright) < 1e-3 and 0 < abs(bright.mean()) <= 25.5  # one unclipped shift, |delta| <= 0.1
    cropped = augment.original_augment(image, 64, 32, tf.constant([True, False, False, False]),
                                       "original_d26b97d", seed).numpy()
    assert cropped.shape == (64, 32, 3) and not np.allclose(cropped, image.numpy(), atol=1)


QUIRKS = {  # one tiny run of every quirk setting, with what it changes from the defaults
    "fc inits 0.0315/0.044, no bias": {"model": {"fc1_init_stddev": 0.0315, "fc2_init_stddev": 0.044,
                                                   "embedding_bias": False}},
    "staircase, Adam eps 1e-8, no TF32": {"optimizer": {"staircase": True, "adam_epsilon": 1e-8},
                                          "train": {"allow_tf32": False}},
    "centre crop, augmentation e50be2b": {"data": {"crop": "center_1.25w", "augment": "original_e50be2b"}},
    "augmentation d26b97d, colour only": {"data": {"augment": "original_d26b97d",
                                                    "original_ops": ("hue", "brightness")}},
    "[0, 1] input, frozen backbone BN, head BN at init": {"model": {"pixel_range": "unit", "backbone_bn": "frozen",
                                                                     "head_bn": "inference_init"}},
    "backbone BN not updated, head BN not updated": {"model": {"backbone_bn": "train_no_update",
                                                                "head_bn": "batch_no_update"}},
    "the original's split, protocol and re-ranking": {
        "data": {"valid_split": "original", "valid_fraction": 0.25, "train_eval_final_only": True},
        "scoring": {"protocol": "original", "rerank_impl": "original", "k1": 3, "k2": 2, "lambda_value": 0.05},
        "train": {"eval_rerank": True}},
}


@pytest.mark.parametrize("name", list(QUIRKS))
def test_each_quirk_trains_validates_and_exports(market_dir, tmp_path, name):
    config = tiny_config(market_dir, max_steps=2, eval_every=2, checkpoint_every=2)
    for section, values in QUIRKS[name].items():
        config = replaced(config, section, **values)
    summary = train_lib.run(config, str(tmp_path / "run"))
    final = summary["final"]
    assert summary["step"] == 2 and np.isfinite(final["mAP"]) and os.path.exists(summary["export"])
    if config.scoring.protocol == "original":
        assert {"mAP_at_200", "rank1", "market1501_mAP", "mAP_rerank", "train_mAP"} <= set(final)
    else:
        assert {"original_mAP", "original_mAP_at_200"} <= set(final)


def test_every_quirk_is_off_by_default():
    quirks = [s for s in C.ALL_SETTINGS if s.group == C.ORIGINAL]
    assert {s.name for s in quirks} >= {"crop", "pixel_range", "backbone_bn", "head_bn",
                                         "adam_epsilon", "init_checkpoint_full", "allow_tf32", "valid_split"}
    defaults = C.RunConfig()
    assert (defaults.data.crop, defaults.model.pixel_range, defaults.model.backbone_bn) == (
        "none", "backbone", "train")
    assert (defaults.model.head_bn, defaults.optimizer.adam_epsilon, defaults.train.allow_tf32) == (
        "train", 1e-7, True)
    assert (defaults.scoring.protocol, defaults.scoring.rerank_impl, defaults.data.valid_split) == (
        "market1501", "zhong", "per_camera")


def test_head_bn_modes_keep_their_statistics(market_dir):
    from reid_tf import model as model_lib

    x = tf.random.stateless_normal([16, 64, 32, 3], [0, 1]) * 60 + 128
    for mode in ("inference_init", "batch_no_update", "train"):
        m = model_lib.build_model((64, 32, 3), backbone="small", backbone_weights="none", head_bn=mode,
                                  trainable="head")  # the backbone in inference mode: only the head BN differs
        bn = m.get_layer("fc1_bn")
        m(x, training=True)
        moved = not np.allclose(bn.moving_variance.numpy(), 1.0)
        assert moved == (mode == "train"), mode
        train_out = m(x, training=True).numpy()
        eval_out = m(x, training=False).numpy()
        assert np.allclose(train_out, eval_out, atol=1e-5) == (mode == "inference_init"), mode


def test_a_full_warm_start_restores_the_step_and_adams_state(market_dir, tmp_path):
    source = str(tmp_path / "source")
    train_lib.run(tiny_config(market_dir, max_steps=2), source)
    config = tiny_config(market_dir, max_steps=3, init_checkpoint=source, init_checkpoint_full=True)
    summary = train_lib.run(config, str(tmp_path / "continued"))
    assert summary["step"] == 3  # from step 2: one step, as TF1's Saver had global_step come back
    first = json.load(open(tmp_path / "continued" / "first_step.json"))
    assert first["step"] == 3
    with pytest.raises(C.ConfigError, match="init_checkpoint_full needs --init_checkpoint"):
        replaced(config, "train", init_checkpoint="").validate()


def test_eval_scores_the_original_protocol(trained_run, tmp_path):
    import sys

    out = tmp_path / "scores.json"
    proc = warm_python.run([sys.executable, "tools/eval.py", f"--model={trained_run}", "--protocol=original",
                           "--rerank", "--rerank_impl=original", f"--output_json={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.load(open(out))
    assert {"mAP", "mAP_at_200", "rank1", "rank5", "rank10", "rank20"} <= set(scores)
    assert {"mAP_rerank", "mAP_at_200_rerank", "rank1_rerank", "market1501_mAP"} <= set(scores)
    assert all(0 <= scores[k] <= 1 for k in ("mAP", "mAP_at_200", "rank1", "mAP_rerank"))
    assert scores["rank20"] is None  # 9 gallery identities: the original's curve has 9 entries
