"""'Is this the same person?': every query x gallery pair's distance, same identity a positive,
gathered block by block into two fine histograms, from which TAR at a FAR, the EER, the ROC AUC and
the thresholds that a calibration file ships are read. Exact to the bin width, which is stated."""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np

from reid_tf import metrics
from reid_tf.constants import JUNK_PID

BINS = 1 << 16  # the histograms' bins over [0, an upper bound of every distance]
FARS = (1e-2, 1e-3, 1e-4)
CROSSING_BINS = 100  # the coarse histograms whose crossing is the "crossing" threshold


@dataclasses.dataclass
class PairHistograms:
    """Counts of positive and negative pair distances in BINS bins of `width` from 0."""

    width: float
    positive: np.ndarray
    negative: np.ndarray

    def edges(self) -> np.ndarray:
        """The upper edge of every bin: a pair in bin b is accepted by any threshold >= edges[b]."""
        return (np.arange(len(self.positive)) + 1) * self.width


def pair_histograms(query_features: np.ndarray, gallery_features: np.ndarray, query_pids: np.ndarray,
                    gallery_pids: np.ndarray, query_camids: np.ndarray, gallery_camids: np.ndarray) -> PairHistograms:
    """Every query x gallery pair, Euclidean distance, positive when the identities agree. The pairs a
    ranking leaves out are left out here too: junk, and the same identity seen by the same camera
    (under no_cameras, give each file its own camera: then only a query's own file goes)."""
    qf, gf = np.asarray(query_features, np.float32), np.asarray(gallery_features, np.float32)
    q_pids, g_pids = np.asarray(query_pids), np.asarray(gallery_pids)
    q_cams, g_cams = np.asarray(query_camids), np.asarray(gallery_camids)
    # ||q - g|| <= ||q|| + ||g||: an upper bound of every distance, so no pair falls outside.
    bound = float(np.linalg.norm(qf, axis=1).max() + np.linalg.norm(gf, axis=1).max()) or 1.0
    width = bound * (1 + 1e-6) / BINS
    positive, negative = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    distances = metrics.distances_from(gf)
    kept_gallery = g_pids != JUNK_PID
    lock = threading.Lock()  # blocks run on several threads

    def block(start: int, stop: int) -> None:
        d = distances(qf[start:stop])
        same = q_pids[start:stop, None] == g_pids[None, :]
        keep = kept_gallery[None, :] & ~(same & (q_cams[start:stop, None] == g_cams[None, :]))
        index = np.minimum((d / width).astype(np.int64), BINS - 1)
        pos, neg = np.bincount(index[keep & same], minlength=BINS), np.bincount(index[keep & ~same], minlength=BINS)
        with lock:
            positive[:] += pos
            negative[:] += neg

    metrics.for_blocks(len(qf), metrics.block_rows(len(gf)), block)
    if not positive.sum() or not negative.sum():
        raise metrics.MetricsError(f"{positive.sum()} positive and {negative.sum()} negative pairs: verification"
                                   " needs both (identities seen in query and gallery, and other identities)")
    return PairHistograms(width, positive, negative)


def rates(h: PairHistograms) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) when a pair is 'same' at distance <= each bin's upper edge."""
    return np.cumsum(h.negative) / h.negative.sum(), np.cumsum(h.positive) / h.positive.sum()


def threshold_at_far(h: PairHistograms, far: float) -> tuple[float, float, float] | None:
    """(distance, TAR, achieved FAR) of the largest threshold whose FAR is at most `far`; None when
    the negatives are too few for that FAR (fewer than 1/far)."""
    if h.negative.sum() < 1 / far:
        return None
    far_b, tar_b = rates(h)
    b = int(np.searchsorted(far_b, far, side="right")) - 1
    if b < 0:
        return 0.0, 0.0, 0.0
    return float(h.edges()[b]), float(tar_b[b]), float(far_b[b])


def equal_error(h: PairHistograms) -> tuple[float, float]:
    """(EER, its distance): where the false accept and false reject rates meet, at a bin edge."""
    far_b, tar_b = rates(h)
    b = int(np.argmin(np.abs(far_b - (1 - tar_b))))
    return float((far_b[b] + 1 - tar_b[b]) / 2), float(h.edges()[b])


def roc_auc(h: PairHistograms) -> float:
    """P(a negative is farther than a positive), ties within a bin counted half."""
    farther = h.negative.sum() - np.cumsum(h.negative)
    wins = (h.positive * (farther + 0.5 * h.negative)).sum()
    return float(wins / (h.positive.sum() * h.negative.sum()))


def crossing(h: PairHistograms) -> float:
    """The distance where the two normalised histograms (CROSSING_BINS bins over the pairs' range)
    cross: the first bin past the positives' mode where negatives are as dense as positives."""
    used = np.flatnonzero(h.positive + h.negative)
    group = max(1, math.ceil((used[-1] + 1 - used[0]) / CROSSING_BINS))
    start = used[0] - used[0] % group
    pos = np.add.reduceat(h.positive[start:], np.arange(0, len(h.positive) - start, group)) / h.positive.sum()
    neg = np.add.reduceat(h.negative[start:], np.arange(0, len(h.negative) - start, group)) / h.negative.sum()
    after = np.arange(len(pos)) >= int(np.argmax(pos))
    b = int(np.argmax(after & (neg >= pos)))
    return float((start + b * group) * h.width)


def summary(h: PairHistograms) -> dict:
    """The verification figures and the thresholds (distance <= d: same person)."""
    eer, eer_distance = equal_error(h)
    out = {"pairs_positive": int(h.positive.sum()), "pairs_negative": int(h.negative.sum()),
           "bin_width": h.width, "eer": eer, "roc_auc": roc_auc(h)}
    thresholds = {"eer": eer_distance, "crossing": crossing(h)}
    for far in FARS:
        found = threshold_at_far(h, far)
        out[f"tar_at_far={far:g}"] = None if found is None else found[1]
        if found is not None:
            thresholds[f"far={far:g}"] = found[0]
    out["thresholds"] = thresholds
    return out


def far_at(h: PairHistograms, distance: float) -> float:
    """The FAR of a threshold at `distance` on the fitted pairs."""
    far_b, _ = rates(h)
    b = min(int(distance / h.width), len(far_b) - 1)
    return float(far_b[b]) if distance >= 0 else 0.0
