import numpy as np
import pytest
import tensorflow as tf
from triplet_reference import CASES, addons_triplet_hard_loss, value_and_grad

from reid_tf import losses


def numpy_batch_hard(emb, pids, margin="soft", hardest=False):
    """Plain reference: loops over anchors, Addons' conventions for empty positive/negative sets."""
    emb = np.asarray(emb, np.float64)
    d = np.sqrt(((emb[:, None] - emb[None]) ** 2).sum(-1))
    per = []
    for a in range(len(emb)):
        pos = [d[a, j] for j in range(len(emb)) if j != a and pids[j] == pids[a]]
        neg = [d[a, j] for j in range(len(emb)) if pids[j] != pids[a]]
        d_ap = max(pos) if pos else 0.0
        d_an = min(neg) if neg else d[a].max()
        gap = d_ap - d_an
        per.append(np.logaddexp(0.0, gap) if margin == "soft" else max(gap + margin, 0.0))
    return max(per) if hardest else float(np.mean(per))




@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("margin", ["soft", 0.3, 1.0])
def test_matches_addons_value_and_gradient(case, margin):
    emb, pids = CASES[case]
    pids = tf.constant(pids)
    soft = margin == "soft"
    ours = value_and_grad(lambda e: losses.batch_hard_triplet_loss(e, pids, margin), emb)
    ref = value_and_grad(
        lambda e: addons_triplet_hard_loss(pids, e, margin=0.0 if soft else margin, soft=soft), emb
    )
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[0], numpy_batch_hard(emb, pids.numpy(), margin), rtol=1e-5)


@pytest.mark.parametrize("margin", ["soft", 0.5])
def test_batch_hardest_is_the_worst_anchor(margin):
    emb, pids = CASES["random"]
    value = losses.batch_hard_triplet_loss(tf.constant(emb, tf.float32), tf.constant(pids),
                                           margin, mining="batch_hardest")
    np.testing.assert_allclose(value, numpy_batch_hard(emb, pids, margin, hardest=True), rtol=1e-5)


def test_analytic_cases():
    pids = tf.constant([0, 0, 1, 1])
    separated = tf.constant([[0.0, 0], [0, 1], [10, 0], [10, 1]])  # d_ap = 1, d_an = 10 (or more)
    np.testing.assert_allclose(losses.batch_hard_triplet_loss(separated, pids, 1.0), 0.0)
    np.testing.assert_allclose(losses.batch_hard_triplet_loss(separated, pids), np.log1p(np.exp(-9.0)),
                               rtol=1e-5)
    wrong = tf.constant([[0.0, 0], [10, 0], [0, 1], [10, 1]])  # each anchor's negative is nearer
    np.testing.assert_allclose(losses.batch_hard_triplet_loss(wrong, pids, 0.5), 10 - 1 + 0.5,
                               rtol=1e-6)
    np.testing.assert_allclose(losses.batch_hard_triplet_loss(tf.zeros([4, 3]), pids), np.log(2.0),
                               rtol=1e-6)


def test_soft_margin_stays_finite_for_large_gaps():
    # d_ap - d_an ~ 1000: Addons' log1p(exp(x)) gives inf and NaN gradients; softplus does not.
    emb = np.array([[0.0, 0], [1000, 0], [1, 0], [1001, 0]])
    pids = tf.constant([0, 0, 1, 1])
    value, grad = value_and_grad(lambda e: losses.batch_hard_triplet_loss(e, pids), emb)
    assert np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_allclose(value, numpy_batch_hard(emb, [0, 0, 1, 1]), rtol=1e-6)
    addons = value_and_grad(lambda e: addons_triplet_hard_loss(pids, e, soft=True), emb)
    assert not np.isfinite(addons[0])


def test_pairwise_distances_exact_zero_and_finite_gradient():
    emb = tf.constant([[1.0, 2.0], [1.0, 2.0], [4.0, 6.0]])
    with tf.GradientTape() as tape:
        tape.watch(emb)
        d = losses.pairwise_distances(emb)
        total = tf.reduce_sum(d)
    np.testing.assert_allclose(d.numpy(), [[0, 0, 5], [0, 0, 5], [5, 5, 0]], atol=1e-6)
    assert np.isfinite(tape.gradient(total, emb).numpy()).all()
    half = losses.pairwise_distances(tf.cast(emb, tf.bfloat16))
    assert half.dtype == tf.float32


def test_batch_stats():
    emb = tf.constant([[0.0, 0], [0, 1], [10, 0], [10, 1]])
    stats = {k: float(v) for k, v in losses.batch_stats(emb, tf.constant([0, 0, 1, 1])).items()}
    np.testing.assert_allclose(stats["mean_distance_positive"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(stats["mean_distance_negative"], (10 + 10 + np.hypot(10, 1) * 2) / 4,
                               rtol=1e-6)
    assert stats["active_triplets"] == 0.0 and stats["top1_in_batch"] == 1.0
    np.testing.assert_allclose(stats["embedding_norm"], (0 + 1 + 10 + np.hypot(10, 1)) / 4, rtol=1e-6)
    swapped = losses.batch_stats(emb, tf.constant([0, 1, 0, 1]))
    assert float(swapped["active_triplets"]) == 1.0 and float(swapped["top1_in_batch"]) == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="margin"):
        losses.batch_hard_triplet_loss(tf.zeros([2, 2]), tf.constant([0, 1]), margin="hard")
    with pytest.raises(ValueError, match="mining"):
        losses.batch_hard_triplet_loss(tf.zeros([2, 2]), tf.constant([0, 1]), mining="semi")
