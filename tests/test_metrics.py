import numpy as np
import pytest

from reid_tf.metrics import MetricsError, evaluate_rank


def torchreid_style(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    """torchreid's eval_market1501 loop (junk removed as its dataset loader does), plus mINP."""
    keep_g = g_pids != -1
    distmat, g_pids, g_cams = distmat[:, keep_g], g_pids[keep_g], g_cams[keep_g]
    aps, inps, cmcs = [], [], []
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        remove = (g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q])
        raw = (g_pids[order] == q_pids[q])[~remove].astype(float)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        inps.append(cmc[np.flatnonzero(raw).max()] / (np.flatnonzero(raw).max() + 1))
        cmcs.append(np.minimum(cmc, 1)[:max_rank])
        aps.append((raw.cumsum() / np.arange(1, len(raw) + 1) * raw).sum() / raw.sum())
    return np.mean(aps), np.mean(cmcs, axis=0), np.mean(inps)


def official_compute_ap(good, junk, index):
    """Market-1501 compute_AP.m, line for line (0-based indices)."""
    cmc = np.zeros(len(index))
    ngood = len(good)
    old_recall, old_precision, ap, intersect, j, good_now, njunk = 0.0, 1.0, 0.0, 0, 0, 0, 0
    for n, idx in enumerate(index):
        flag = False
        if idx in good:
            cmc[n - njunk:] = 1
            flag = True
            good_now += 1
        if idx in junk:
            njunk += 1
            continue
        if flag:
            intersect += 1
        recall = intersect / ngood
        precision = intersect / (j + 1)
        ap += (recall - old_recall) * ((old_precision + precision) / 2)
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == ngood:
            break
    return ap, cmc


def official_style(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    aps, cmcs = [], []
    for q in range(len(q_pids)):
        index = np.argsort(distmat[q], kind="stable")
        good = set(np.flatnonzero((g_pids == q_pids[q]) & (g_cams != q_cams[q])))
        junk = set(np.flatnonzero(((g_pids == q_pids[q]) & (g_cams == q_cams[q])) | (g_pids == -1)))
        if not good:  # no valid match: AP 0, an all-zero CMC row, kept in the mean
            aps.append(0.0)
            cmcs.append(np.zeros(max_rank))
            continue
        ap, cmc = official_compute_ap(good, junk, index)
        aps.append(ap)
        cmcs.append(cmc[:max_rank])
    return np.mean(aps), np.mean(cmcs, axis=0)


def random_case(seed, num_q=40, num_g=300):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, 15, num_q)
    g_pids = rng.integers(-1, 15, num_g)  # includes junk (-1) and distractors (0)
    q_cams, g_cams = rng.integers(1, 4, num_q), rng.integers(1, 4, num_g)
    distmat = rng.random((num_q, num_g)).astype(np.float32)
    distmat -= 0.3 * (q_pids[:, None] == g_pids[None])  # better than chance
    return distmat, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_market1501_protocol_matches_torchreid(seed):
    case = random_case(seed)
    ours = evaluate_rank(*case, max_rank=20, chunk_size=7)
    ap, cmc, inp = torchreid_style(*case, max_rank=20)
    assert abs(ours["mAP"] - ap) < 1e-9 and abs(ours["mINP"] - inp) < 1e-9
    np.testing.assert_allclose(ours["cmc"], cmc, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_protocol_matches_compute_ap(seed):
    case = random_case(seed)
    ours = evaluate_rank(*case, max_rank=20, protocol="official", chunk_size=7)
    ap, cmc = official_style(*case, max_rank=20)
    assert abs(ours["mAP"] - ap) < 1e-9
    np.testing.assert_allclose(ours["cmc"], cmc, atol=1e-12)


def test_hand_built_case():
    # One query (pid 1, cam 1). Gallery in distance order:
    # g0 pid 1 cam 1 (same camera: excluded), g1 pid 2, g2 pid 1 cam 2 (match), g3 junk,
    # g4 pid 0 distractor, g5 pid 1 cam 3 (match).
    distmat = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([1, 2, 1, -1, 0, 1])
    g_cams = np.array([1, 1, 2, 1, 2, 3])
    args = (distmat, [1], g_pids, [1], g_cams)
    # Valid order: g1(x) g2(v) g4(x) g5(v): matches at ranks 2 and 4.
    r = evaluate_rank(*args, max_rank=5)
    assert r["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1, 1, 1])
    assert r["mINP"] == pytest.approx(2 / 4)
    official = evaluate_rank(*args, max_rank=5, protocol="official")
    # Trapezoid: 0.5 * (1/2 + 0/1)/2 + 0.5 * (2/4 + 1/3)/2.
    assert official["mAP"] == pytest.approx(0.5 * (0.5 + 0) / 2 + 0.5 * (0.5 + 1 / 3) / 2)
    assert official["mAP"] != pytest.approx(r["mAP"])


def test_cmc_length_and_max_rank():
    r = evaluate_rank(*random_case(0), max_rank=50)
    assert r["cmc"].shape == (50,) and (np.diff(r["cmc"]) >= 0).all()


def test_skipped_queries_by_protocol():
    # Query 0 (pid 1) has a valid match; query 1 (pid 2) only a same-camera one.
    distmat = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    args = (distmat, [1, 2], [1, 2, 3], [1, 1], [2, 1, 2])
    market = evaluate_rank(*args, max_rank=3)
    assert market["num_valid_queries"] == 1 and market["num_skipped_queries"] == 1
    assert market["mAP"] == 1.0 and market["cmc"][0] == 1.0
    official = evaluate_rank(*args, max_rank=3, protocol="official")
    assert official["mAP"] == 0.5 and official["cmc"][0] == 0.5


def test_distractors_are_negatives_and_junk_is_ignored():
    base = np.array([[0.1, 0.2]])
    # A distractor ahead of the match pushes it to rank 2; junk ahead does not.
    assert evaluate_rank(base, [5], [0, 5], [1], [2, 2])["mAP"] == 0.5
    assert evaluate_rank(base, [5], [-1, 5], [1], [2, 2])["mAP"] == 1.0


def test_bad_inputs():
    d = np.zeros((2, 3))
    with pytest.raises(MetricsError, match="2 query rows but 1 query pids"):
        evaluate_rank(d, [1], [1, 2, 3], [1, 1], [1, 1, 1])
    with pytest.raises(MetricsError, match="3 gallery columns"):
        evaluate_rank(d, [1, 2], [1, 2], [1, 1], [1, 1])
    with pytest.raises(MetricsError, match="nothing to score"):
        evaluate_rank(np.zeros((0, 3)), [], [1, 2, 3], [], [1, 1, 1])
    with pytest.raises(MetricsError, match="NaN or Inf"):
        evaluate_rank(np.full((1, 1), np.nan), [1], [1], [1], [2])
    with pytest.raises(MetricsError, match="no query has a valid match"):
        evaluate_rank(np.zeros((1, 1)), [1], [2], [1], [2])


@pytest.mark.parametrize("protocol", ["market1501", "official"])
def test_block_scoring_equals_the_sorted_scoring_it_replaced(protocol):
    """The scores of the whole-row stable sort that came before, on a larger case with ties
    (duplicated gallery images, a constant block), junk, distractors and same-camera matches."""
    from sorted_metrics import sorted_evaluate_rank

    rng = np.random.default_rng(7)
    distmat, q_pids, g_pids, q_cams, g_cams = random_case(7, num_q=300, num_g=2500)
    distmat[:, 100:160] = distmat[:, 40:100]  # tied copies: order by gallery index decides
    distmat[:20, :] = np.round(distmat[:20, :], 1)  # many ties in a row
    distmat[20:30, :] = 0.5  # a collapsed query row: all equal
    g_pids[100:160] = g_pids[40:100]
    ours = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, protocol=protocol, chunk_size=64)
    old = sorted_evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, protocol=protocol, chunk_size=64)
    assert abs(ours["mAP"] - old["mAP"]) < 1e-12 and abs(ours["mINP"] - old["mINP"]) < 1e-12
    np.testing.assert_array_equal(ours["cmc"], old["cmc"])
    assert ours["num_valid_queries"] == old["num_valid_queries"]
    del rng


def test_scores_from_features_equal_those_of_the_whole_matrix():
    from reid_tf import evaluate
    from reid_tf.metrics import euclidean_distances

    rng = np.random.default_rng(3)
    centers = rng.normal(size=(40, 32)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 40, 120), rng.integers(0, 40, 900)
    qf = centers[q_pids] + 0.7 * rng.normal(size=(120, 32)).astype(np.float32)
    gf = centers[g_pids] + 0.7 * rng.normal(size=(900, 32)).astype(np.float32)
    q_cams, g_cams = rng.integers(1, 5, 120), rng.integers(1, 5, 900)
    whole = evaluate_rank(euclidean_distances(qf, gf), q_pids, g_pids, q_cams, g_cams)
    import reid_tf.metrics as metrics

    metrics_block = metrics.BLOCK_ELEMENTS
    metrics.BLOCK_ELEMENTS = 900 * 7  # blocks of 7 queries
    try:
        scored = evaluate.score(qf, gf, q_pids, g_pids, q_cams, g_cams)
    finally:
        metrics.BLOCK_ELEMENTS = metrics_block
    assert scored["mAP"] == pytest.approx(whole["mAP"], abs=1e-9)
    assert scored["mINP"] == pytest.approx(whole["mINP"], abs=1e-9)
    np.testing.assert_allclose(scored["cmc"], whole["cmc"][:50])
