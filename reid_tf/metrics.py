"""Ranking metrics with the Market-1501 protocol: mAP, CMC and mINP, vectorised over queries."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reid_tf.datasets import JUNK_PID

PROTOCOLS = ("market1501", "official")


class MetricsError(ValueError):
    """Inputs that cannot be scored; the message says which and why."""


def euclidean_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] in float32."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d, 0.0))


def _check_inputs(distmat, query_pids, gallery_pids, query_camids, gallery_camids):
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(query_pids).ravel(), np.asarray(gallery_pids).ravel()
    q_cams, g_cams = np.asarray(query_camids).ravel(), np.asarray(gallery_camids).ravel()
    if distmat.ndim != 2:
        raise MetricsError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    if num_q == 0 or num_g == 0:
        raise MetricsError(f"nothing to score: {num_q} queries and {num_g} gallery images")
    if len(q_pids) != num_q or len(q_cams) != num_q:
        raise MetricsError(
            f"distmat has {num_q} query rows but {len(q_pids)} query pids and {len(q_cams)} camids"
        )
    if len(g_pids) != num_g or len(g_cams) != num_g:
        raise MetricsError(
            f"distmat has {num_g} gallery columns but {len(g_pids)} gallery pids and {len(g_cams)} camids"
        )
    if not np.isfinite(distmat).all():
        raise MetricsError("distmat has NaN or Inf entries: the features or distances are broken")
    return distmat, q_pids, g_pids, q_cams, g_cams


def evaluate_rank(
    distmat: np.ndarray,
    query_pids: np.ndarray,
    gallery_pids: np.ndarray,
    query_camids: np.ndarray,
    gallery_camids: np.ndarray,
    max_rank: int = 50,
    protocol: str = "market1501",
    chunk_size: int = 256,
) -> dict:
    """mAP, CMC[max_rank] (cmc[0] = rank-1), mINP and the number of valid queries.

    Both protocols leave out, per query, gallery images of its pid seen by its camera, and
    junk (pid -1); distractors (pid 0) stay as negatives.
    - "market1501" (torchreid, fast-reid): AP = mean precision at each correct match; a query
      with no valid match is skipped.
    - "official" (Market-1501's evaluation.m / compute_AP.m): AP by the trapezoid rule over
      recall, starting from precision 1; a query with no valid match scores AP 0 and an
      all-zero CMC row and stays in the means.
    mINP (Ye et al. 2020): mean of (#correct matches / rank of the hardest correct match).
    """
    if protocol not in PROTOCOLS:
        raise MetricsError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    distmat, q_pids, g_pids, q_cams, g_cams = _check_inputs(
        distmat, query_pids, gallery_pids, query_camids, gallery_camids
    )
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    def score_chunk(start):
        stop = min(start + chunk_size, num_q)
        order = np.argsort(distmat[start:stop], axis=1, kind="stable")  # ties: gallery order
        sorted_pids, sorted_cams = g_pids[order], g_cams[order]
        qp, qc = q_pids[start:stop, None], q_cams[start:stop, None]
        same_pid = sorted_pids == qp
        valid = ~(same_pid & (sorted_cams == qc)) & (sorted_pids != JUNK_PID)
        match = same_pid & valid
        rank = np.cumsum(valid, axis=1)  # 1-based rank among valid items, at valid positions
        hits = np.cumsum(match, axis=1)
        num_rel = hits[:, -1]
        found = num_rel > 0
        safe_rel = np.maximum(num_rel, 1)
        precision = hits / np.maximum(rank, 1)
        if protocol == "market1501":
            ap = (precision * match).sum(axis=1) / safe_rel
        else:
            # compute_AP.m: ap += (recall - old_recall) * (old_precision + precision) / 2, where
            # old_precision is the precision one valid item earlier (1 before the first item).
            previous = np.where(rank > 1, (hits - 1) / np.maximum(rank - 1, 1), 1.0)
            ap = ((precision + previous) / 2 * match).sum(axis=1) / safe_rel
        # Valid-item ranks of the first and the last correct match.
        first = np.take_along_axis(rank, np.argmax(match, axis=1)[:, None], 1)[:, 0]
        last_pos = num_g - 1 - np.argmax(match[:, ::-1], axis=1)
        last = np.take_along_axis(rank, last_pos[:, None], 1)[:, 0]
        inp = np.where(found, num_rel / np.maximum(last, 1), 0.0)
        cmc = (np.arange(1, max_rank + 1)[None, :] >= first[:, None]) & found[:, None]
        return np.where(found, ap, 0.0), inp, cmc, found

    # numpy releases the GIL in sorting and elementwise work: chunks run on all cores.
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        parts = list(pool.map(score_chunk, range(0, num_q, chunk_size)))
    ap, inp, cmc, found = (np.concatenate(a) for a in zip(*parts))
    num_valid = int(found.sum())
    if num_valid == 0:
        raise MetricsError(
            "no query has a valid match in the gallery (same pid seen by another camera):"
            " check the pids and camids"
        )
    keep = found if protocol == "market1501" else np.ones_like(found)
    return {
        "mAP": float(ap[keep].mean()),
        "cmc": cmc[keep].mean(axis=0).astype(np.float64),
        "mINP": float(inp[keep].mean()),
        "num_valid_queries": num_valid,
        "num_skipped_queries": int(num_q - num_valid),
    }
