"""Triplet losses (Hermans et al. 2017, "In Defense of the Triplet Loss"; Schroff et al. 2015's
semi-hard mining) and batch statistics; the ID and center losses of BoT.

Conventions follow TensorFlow Addons' `triplet_hard_loss` and `triplet_semihard_loss`: the anchor
is not its own positive; an anchor without positives gets d_ap = 0 and still counts; an anchor
without negatives uses the largest distance of its row; tied hardest samples share the gradient.
Unlike Addons, the soft margin is a stable softplus, finite for any gap. The Keras classes
`TripletHardLoss` and `TripletSemiHardLoss` are drop-ins for Addons' in `model.compile`, over the
same mining as the training loop.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from reid_tf.config import MININGS

DISTANCE_METRICS = ("L2", "squared-L2", "angular")


def pairwise_distances(embeddings: tf.Tensor, metric="L2") -> tf.Tensor:
    """Distances [n, n] in float32 as Addons' metric learning defines them: "L2" (Euclidean,
    finite gradient at 0) and "squared-L2", exactly 0 on the diagonal; "angular", 1 - cosine
    similarity clipped at 0; or a callable of the embeddings."""
    e = tf.cast(embeddings, tf.float32)
    if callable(metric):
        return tf.cast(metric(e), tf.float32)
    if metric == "angular":
        unit = tf.math.l2_normalize(e, axis=1)
        return tf.maximum(1.0 - tf.matmul(unit, unit, transpose_b=True), 0.0)
    if metric not in DISTANCE_METRICS:
        raise ValueError(f"distance_metric must be one of {DISTANCE_METRICS} or a callable, got {metric!r}")
    sq_norms = tf.reduce_sum(tf.square(e), axis=1)
    squared = sq_norms[:, None] + sq_norms[None, :] - 2.0 * tf.matmul(e, e, transpose_b=True)
    squared = tf.maximum(squared, 0.0)  # round-off can make it slightly negative
    if metric == "squared-L2":
        return tf.linalg.set_diag(squared, tf.zeros_like(sq_norms))
    zero = squared <= 0.0
    # sqrt has an infinite slope at 0: take it only where the value is positive.
    distances = tf.where(zero, 0.0, tf.sqrt(tf.where(zero, 1.0, squared)))
    return tf.linalg.set_diag(distances, tf.zeros_like(sq_norms))


def _hardest(distances: tf.Tensor, pids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per anchor: (largest positive distance, smallest negative distance)."""
    pids = tf.reshape(pids, [-1])
    same = tf.equal(pids[:, None], pids[None, :])
    positive = tf.cast(tf.linalg.set_diag(same, tf.zeros_like(pids, tf.bool)), distances.dtype)
    negative = tf.cast(tf.logical_not(same), distances.dtype)
    # Masked max/min measured from the row's min/max, so an empty mask yields d_ap = row min
    # (= 0, the diagonal) and d_an = row max, Addons' conventions.
    row_min = tf.reduce_min(distances, axis=1, keepdims=True)
    row_max = tf.reduce_max(distances, axis=1, keepdims=True)
    d_ap = tf.reduce_max((distances - row_min) * positive, axis=1, keepdims=True) + row_min
    d_an = tf.reduce_min((distances - row_max) * negative, axis=1, keepdims=True) + row_max
    return d_ap[:, 0], d_an[:, 0]


def _parse_margin(margin) -> float | None:
    if isinstance(margin, str):
        if margin == "soft":
            return None
        try:
            margin = float(margin)
        except ValueError:
            raise ValueError(f"margin must be 'soft' or a number, got {margin!r}") from None
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    return float(margin)


def batch_hard_triplet_loss(
    embeddings: tf.Tensor, pids: tf.Tensor, margin: str | float = "soft", mining: str = "batch_hard",
    distance_metric="L2",
) -> tf.Tensor:
    """Mean over anchors of softplus(d_ap - d_an) ("soft") or max(d_ap - d_an + m, 0).

    `mining="batch_hardest"` keeps only the single hardest triplet of the batch.
    """
    if mining not in MININGS:
        raise ValueError(f"mining must be one of {MININGS}, got {mining!r}")
    m = _parse_margin(margin)
    d_ap, d_an = _hardest(pairwise_distances(embeddings, distance_metric), pids)
    gap = d_ap - d_an
    per_anchor = tf.nn.softplus(gap) if m is None else tf.maximum(gap + m, 0.0)
    return tf.reduce_max(per_anchor) if mining == "batch_hardest" else tf.reduce_mean(per_anchor)


def semi_hard_triplet_loss(embeddings: tf.Tensor, pids: tf.Tensor, margin: float = 1.0,
                           distance_metric="L2") -> tf.Tensor:
    """Schroff et al.'s semi-hard loss as Addons computes it: over every (anchor, positive) pair,
    max(d_ap - d_an + m, 0) with the nearest negative farther than the positive (semi-hard), or
    the farthest negative where none is; the mean over all positive pairs."""
    d = pairwise_distances(embeddings, distance_metric)
    pids = tf.reshape(pids, [-1])
    same = tf.equal(pids[:, None], pids[None, :])
    negative = tf.logical_not(same)
    # [anchor, positive, negative]: negatives beyond the pair's distance.
    beyond = negative[:, None, :] & (d[:, None, :] > d[:, :, None])
    row_max = tf.reduce_max(d, axis=1, keepdims=True)  # [anchor, 1]: Addons' masked minimum
    nearest_beyond = tf.reduce_min((d[:, None, :] - row_max[..., None]) * tf.cast(beyond, tf.float32),
                                   axis=2) + row_max
    farthest = _masked_maximum(d, tf.cast(negative, tf.float32))  # [anchor, 1]
    semi_hard = tf.where(tf.reduce_any(beyond, axis=2), nearest_beyond, farthest)
    positive = tf.cast(tf.linalg.set_diag(same, tf.zeros_like(pids, tf.bool)), tf.float32)
    losses = tf.maximum((margin + d - semi_hard) * positive, 0.0)
    return tf.reduce_sum(losses) / tf.reduce_sum(positive)


def _masked_maximum(data: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Per row, the largest entry where mask is 1 (the row's minimum where the mask is empty)."""
    row_min = tf.reduce_min(data, axis=1, keepdims=True)
    return tf.reduce_max((data - row_min) * mask, axis=1, keepdims=True) + row_min


# ---------------------------------------------------------------------------- Keras losses


def triplet_hard_loss(y_true, y_pred, margin: float = 1.0, soft: bool = False, distance_metric="L2"):
    """Addons' `triplet_hard_loss`: labels, embeddings -> the batch-hard loss (a scalar)."""
    embeddings = tf.convert_to_tensor(y_pred)
    loss = batch_hard_triplet_loss(embeddings, tf.reshape(y_true, [-1]), "soft" if soft else margin,
                                   distance_metric=distance_metric)
    return tf.cast(loss, embeddings.dtype)


def triplet_semihard_loss(y_true, y_pred, margin: float = 1.0, distance_metric="L2"):
    """Addons' `triplet_semihard_loss`: labels, embeddings -> the semi-hard loss (a scalar)."""
    embeddings = tf.convert_to_tensor(y_pred)
    loss = semi_hard_triplet_loss(embeddings, tf.reshape(y_true, [-1]), margin, distance_metric)
    return tf.cast(loss, embeddings.dtype)


class _TripletLoss(keras.losses.Loss):
    """A loss of the whole batch (the mining needs every sample), so no per-sample reduction."""

    def __init__(self, margin: float = 1.0, distance_metric="L2", name: str | None = None, **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="none", **kwargs)
        if not callable(distance_metric) and distance_metric not in DISTANCE_METRICS:
            raise ValueError(f"distance_metric must be one of {DISTANCE_METRICS} or a callable, got"
                             f" {distance_metric!r}")
        self.margin, self.distance_metric = float(margin), distance_metric

    def get_config(self):
        if callable(self.distance_metric):
            raise ValueError("a loss with a callable distance_metric cannot be saved: use L2, squared-L2 or"
                             " angular")
        return {**super().get_config(), "margin": self.margin, "distance_metric": self.distance_metric}


@keras.saving.register_keras_serializable("reid_tf")
class TripletHardLoss(_TripletLoss):
    """Addons' `TripletHardLoss` for `model.compile`: y_true the labels [batch], y_pred the
    embeddings [batch, d]; `soft=True` is the soft margin (margin then unused)."""

    def __init__(self, margin: float = 1.0, soft: bool = False, distance_metric="L2",
                 name: str = "triplet_hard_loss", **kwargs):
        super().__init__(margin, distance_metric, name, **kwargs)
        self.soft = bool(soft)

    def call(self, y_true, y_pred):
        return triplet_hard_loss(y_true, y_pred, self.margin, self.soft, self.distance_metric)

    def get_config(self):
        return {**super().get_config(), "soft": self.soft}


@keras.saving.register_keras_serializable("reid_tf")
class TripletSemiHardLoss(_TripletLoss):
    """Addons' `TripletSemiHardLoss` for `model.compile` (labels, embeddings)."""

    def __init__(self, margin: float = 1.0, distance_metric="L2", name: str = "triplet_semihard_loss",
                 **kwargs):
        super().__init__(margin, distance_metric, name, **kwargs)

    def call(self, y_true, y_pred):
        return triplet_semihard_loss(y_true, y_pred, self.margin, self.distance_metric)


def batch_stats(embeddings: tf.Tensor, pids: tf.Tensor, margin: str | float = "soft") -> dict:
    """Scalars that show how training goes: distances, active triplets, in-batch top-1, norms."""
    e = tf.cast(embeddings, tf.float32)
    pids = tf.reshape(pids, [-1])
    distances = pairwise_distances(e)
    n = tf.shape(pids)[0]
    same = tf.equal(pids[:, None], pids[None, :])
    off_diag = tf.logical_not(tf.eye(n, dtype=tf.bool))
    positive = tf.logical_and(same, off_diag)
    negative = tf.logical_not(same)
    d_ap, d_an = _hardest(distances, pids)
    m = _parse_margin(margin) or 0.0
    nearest = tf.argmin(tf.where(off_diag, distances, float("inf")), axis=1, output_type=tf.int32)

    def masked_mean(mask):
        mask = tf.cast(mask, tf.float32)
        return tf.reduce_sum(distances * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    return {
        "mean_distance_positive": masked_mean(positive),
        "mean_distance_negative": masked_mean(negative),
        "active_triplets": tf.reduce_mean(tf.cast(d_ap - d_an + m > 0, tf.float32)),
        "top1_in_batch": tf.reduce_mean(tf.cast(tf.equal(tf.gather(pids, nearest), pids), tf.float32)),
        "embedding_norm": tf.reduce_mean(tf.norm(e, axis=1)),
    }


def identity_loss(logits: tf.Tensor, labels: tf.Tensor, label_smoothing: float = 0.0) -> tf.Tensor:
    """Mean cross-entropy of identity logits, targets smoothed to (1 - e) one-hot + e / C.

    BoT's CrossEntropyLabelSmooth (Szegedy et al. 2016) is this target, as Keras' own
    label_smoothing defines it.
    """
    logits = tf.cast(logits, tf.float32)
    num_classes = tf.shape(logits)[-1]
    targets = tf.one_hot(tf.reshape(labels, [-1]), num_classes)
    targets = targets * (1.0 - label_smoothing) + label_smoothing / tf.cast(num_classes, tf.float32)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))


def identity_accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Share of the batch whose top identity logit is its own label."""
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_mean(tf.cast(tf.equal(predicted, tf.reshape(labels, [-1])), tf.float32))


def center_loss(features: tf.Tensor, labels: tf.Tensor, centers: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of |f_i - c_(y_i)|^2 (Wen et al. 2016, as BoT's CenterLoss computes it)."""
    features = tf.cast(features, tf.float32)
    own = tf.gather(centers, tf.reshape(labels, [-1]))
    return tf.reduce_mean(tf.reduce_sum(tf.square(features - own), axis=1))
