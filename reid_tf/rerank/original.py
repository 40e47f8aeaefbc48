"""The 2017 original's re-ranking (re_ranking.py at 0e5c742, unchanged since f156097), vectorised
over probes: for each probe only its top_n gallery candidates and itself form the neighbourhood,
k-reciprocal sets with the 2/3 expansion, weights exp(-d / maxdist) normalised, V_p the mean
over the probe's k2 nearest of their k2-encodings, and a "Jaccard" summed over the probe's
expanded set at each gallery coordinate, not per pair. Its bugs are kept, since the log's
re-ranked figures came from them: `R` deletes from the list it walks, so the neighbour after
each deleted one stays unchecked; N drops the nearest point taken to be x itself; an empty
expanded set gives NaN (0/0).
"""

from __future__ import annotations

import numpy as np

_BLOCK = 32  # probes at a time: arrays of block x (top_n + 1)^2, and x D for the features


def _pairwise(f: np.ndarray) -> np.ndarray:
    """[b, n, n] Euclidean distances within each probe's universe (float64, exact zero diagonal)."""
    sq = np.einsum("bnd,bnd->bn", f, f)
    d = sq[:, :, None] + sq[:, None, :] - 2.0 * np.einsum("bnd,bmd->bnm", f, f)
    d = np.sqrt(np.maximum(d, 0.0))
    d[:, np.arange(f.shape[1]), np.arange(f.shape[1])] = 0.0
    return d


def _reciprocal_sets(order: np.ndarray, k: int) -> np.ndarray:
    """bool [b, n, n]: R(x, k) of every x, the original's walk over N(x, k) included: a neighbour y
    whose own N(y, k) lacks x is deleted, and the one after it is then skipped (kept unchecked)."""
    b, n, _ = order.shape
    near = order[:, :, 1:k + 1]  # N(x, k): the nearest first one (taken to be x) dropped
    in_near = np.zeros((b, n, n), bool)
    np.put_along_axis(in_near, near, True, axis=2)
    batch, x = np.arange(b)[:, None], np.arange(n)[None, :]
    kept = np.zeros((b, n, n), bool)
    skip = np.zeros((b, n), bool)
    for j in range(near.shape[2]):  # the walk's position: at most k steps
        y = near[:, :, j]
        reciprocal = in_near[batch, y, x]
        np.put_along_axis(kept, y[..., None], (skip | reciprocal)[..., None], axis=2)
        skip = ~skip & ~reciprocal
    return kept


def _expanded_sets(order: np.ndarray, k: int) -> np.ndarray:
    """bool [b, n, n]: R*(x, k): R(x, k) joined by each member q's R(q, int(k/2)) that shares at
    least 2/3 of itself with R(x, k); the probe (index 0) left out."""
    s = _reciprocal_sets(order, k)
    h = _reciprocal_sets(order, int(k / 2.0))
    overlap = np.einsum("bxy,bqy->bxq", s.astype(np.float64), h.astype(np.float64))
    accept = s & (overlap >= 2.0 / 3.0 * h.sum(axis=2)[:, None, :])
    expanded = s | (np.einsum("bxq,bqy->bxy", accept.astype(np.float64), h.astype(np.float64)) > 0)
    expanded[:, :, 0] = False
    return expanded


def _encodings(local: np.ndarray, order: np.ndarray, k: int, maxdist: float) -> np.ndarray:
    """[b, n, candidates]: V(x, k), exp(-||f_y - f_x|| / maxdist) / 2 over y in R*(x, k), normalised."""
    members = _expanded_sets(order, k)[:, :, 1:]
    weights = np.where(members, np.exp(-local[:, :, 1:] / maxdist) / 2, 0.0)
    with np.errstate(invalid="ignore"):
        return weights / weights.sum(axis=2, keepdims=True)


def original_re_ranking(query_features: np.ndarray, gallery_features: np.ndarray, k1: int = 10, k2: int = 6,
                        lambda_value: float = 0.05, top_n: int = 100) -> np.ndarray:
    """The original's re-ranked query x gallery distances (float64) of raw Euclidean distances:
    (1 - lambda) x its Jaccard + lambda x the distance on each probe's top_n candidates, and
    (1 - lambda) + lambda x the distance elsewhere. Defaults: 0e5c742's (k1 10, k2 6, lambda 0.05)."""
    qf, gf = np.asarray(query_features, np.float64), np.asarray(gallery_features, np.float64)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1] or not len(qf) or not len(gf):
        raise ValueError(f"feature shapes do not fit: query {qf.shape}, gallery {gf.shape}")
    if k1 < 1 or k2 < 1 or top_n < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"need k1, k2, top_n >= 1 and 0 <= lambda <= 1; got {k1}, {k2}, {top_n}, {lambda_value}")
    g_sq = (gf * gf).sum(axis=1)
    distances = np.sqrt(np.maximum((qf * qf).sum(axis=1)[:, None] + g_sq[None, :] - 2.0 * qf @ gf.T, 0.0))
    maxdist = distances.max()  # over every probe: each probe's weights depend on all of them
    out = (1.0 - lambda_value) + lambda_value * distances
    for start in range(0, len(qf), _BLOCK):
        stop = min(start + _BLOCK, len(qf))
        d = distances[start:stop]
        candidates = np.argsort(d, axis=1, kind="stable")[:, :top_n]
        universe = np.concatenate([qf[start:stop, None], gf[candidates]], axis=1)  # the probe first
        local = _pairwise(universe)
        order = np.argsort(local, axis=2, kind="stable")
        v1 = _encodings(local, order, k1, maxdist)
        v2 = _encodings(local, order, k2, maxdist)
        nearest = order[:, 0, 1:k2 + 1]
        v_probe = np.take_along_axis(v2, nearest[..., None], axis=1).mean(axis=1)  # [b, candidates]
        members = _expanded_sets(order, k1)[:, 0, 1:]  # R*(p, k1): candidates g, whose V(g, k1) count
        v_members = v1[:, 1:]
        pairs = np.broadcast_to(v_probe[:, None, :], v_members.shape)
        low = np.where(members[..., None], np.minimum(pairs, v_members), 0.0).sum(axis=1)
        high = np.where(members[..., None], np.maximum(pairs, v_members), 0.0).sum(axis=1)
        jaccard = 1.0 - low / (high + 1e-12)
        rows = np.arange(start, stop)[:, None]
        out[rows, candidates] = (1.0 - lambda_value) * jaccard + lambda_value * d[np.arange(len(d))[:, None],
                                                                                   candidates]
    return out
