import numpy as np
import pytest
from dense_rerank import dense_re_ranking
from scipy.spatial.distance import cdist

from reid_tf import rerank
from reid_tf.metrics import evaluate_rank


def clustered(seed, num_q=30, num_g=150, ids=25, dim=16, noise=0.6):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(ids, dim))
    pids = rng.integers(0, ids, num_q + num_g)
    feats = centers[pids] + noise * rng.normal(size=(num_q + num_g, dim))
    return feats[:num_q], feats[num_q:], pids[:num_q], pids[num_q:]


@pytest.mark.parametrize("k1, k2, lam", [(20, 6, 0.3), (7, 3, 0.5), (5, 1, 0.0), (12, 4, 1.0)])
def test_matches_dense_reference(k1, k2, lam):
    qf, gf, _, _ = clustered(k1)
    qg, qq, gg = cdist(qf, gf), cdist(qf, qf), cdist(gf, gf)
    expected = dense_re_ranking(qg, qq, gg, k1, k2, lam)
    got = rerank.re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == qg.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    from_features = rerank.re_ranking_features(qf, gf, k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(from_features, expected, atol=1e-5)


def test_blocked_path_equals_one_block(monkeypatch):
    qf, gf, _, _ = clustered(1, num_q=40, num_g=200)
    whole = rerank.re_ranking_features(qf, gf)
    monkeypatch.setattr(rerank.zhong, "_BLOCK_ELEMENTS", 700)  # blocks of 2-3 rows, queries one by one
    np.testing.assert_allclose(rerank.re_ranking_features(qf, gf), whole, atol=1e-7)


def test_lambda_one_is_the_normalised_squared_distance():
    # Plain distances are squared exactly once (a caller passing squared ones gets fourth powers).
    qf, gf, _, _ = clustered(2)
    full = cdist(np.concatenate([qf, gf]), np.concatenate([qf, gf]))
    squared = full**2
    expected = (squared / squared.max(axis=1, keepdims=True))[: len(qf), len(qf):]
    np.testing.assert_allclose(rerank.re_ranking_features(qf, gf, lambda_value=1.0), expected, atol=1e-5)
    n = len(qf)
    dense = rerank.re_ranking(full[:n, n:], full[:n, :n], full[n:, n:], lambda_value=1.0)
    np.testing.assert_allclose(dense, expected, atol=1e-5)


def test_reranking_helps_on_clustered_data():
    qf, gf, qp, gp = clustered(4, num_q=60, num_g=400, ids=30, noise=0.9)
    cams_q, cams_g = np.zeros(len(qp)), np.ones(len(gp))
    plain = evaluate_rank(cdist(qf, gf), qp, gp, cams_q, cams_g)["mAP"]
    reranked = evaluate_rank(rerank.re_ranking_features(qf, gf), qp, gp, cams_q, cams_g)["mAP"]
    assert reranked > plain


def test_bad_shapes():
    with pytest.raises(ValueError, match="shapes do not fit"):
        rerank.re_ranking(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="feature shapes"):
        rerank.re_ranking_features(np.zeros((2, 3)), np.zeros((4, 5)))


def test_blockwise_scoring_re_ranks_as_the_whole_matrix(monkeypatch):
    """evaluate.score re-ranks a block of queries at a time (never the whole Q x G): the same
    scores as re-ranking the whole matrix and then scoring it."""
    from reid_tf import evaluate, metrics

    qf, gf, qp, gp = clustered(5, num_q=90, num_g=500, ids=30, noise=0.9)
    rng = np.random.default_rng(5)
    qc, gc = rng.integers(1, 4, len(qp)), rng.integers(1, 4, len(gp))
    whole = evaluate_rank(rerank.re_ranking_features(qf, gf), qp, gp, qc, gc)
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 500 * 13)  # blocks of 13 queries
    scored = evaluate.score(qf, gf, qp, gp, qc, gc, rerank_too=True)
    assert scored["mAP_rerank"] == pytest.approx(whole["mAP"], abs=1e-6)
    assert scored["mINP_rerank"] == pytest.approx(whole["mINP"], abs=1e-6)
    np.testing.assert_allclose(scored["cmc_rerank"], whole["cmc"], atol=1e-6)
