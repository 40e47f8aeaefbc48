"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), numerically as the authors' Python code computes it, in bounded memory.

The reference keeps several dense (Q+G)^2 matrices and a full argsort. Only the top-(k1+1)
neighbours of each item matter, so this keeps those (a partial sort), stores the encodings V
as a sparse matrix, and scores the Jaccard distance through an inverted index, chunk by chunk:
memory grows with (Q+G) * k1 and the Q x G output, not (Q+G)^2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

_BLOCK_ELEMENTS = 1 << 26  # distance entries per row block (256 MiB of float32)


def re_ranking(
    q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray,
    k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked query x gallery distances (float32) from plain Euclidean distance matrices.

    The inputs are squared here, as the paper's code does; do not pass squared distances.
    """
    q_g = np.asarray(q_g_dist, np.float32)
    q_q = np.asarray(q_q_dist, np.float32)
    g_g = np.asarray(g_g_dist, np.float32)
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise ValueError(
            f"shapes do not fit: q_g {q_g.shape}, q_q {q_q.shape}, g_g {g_g.shape}"
        )

    def squared_rows(start: int, stop: int) -> np.ndarray:
        # Rows start:stop of [[q_q, q_g], [q_g.T, g_g]], squared.
        parts = []
        if start < num_q:
            s = slice(start, min(stop, num_q))
            parts.append(np.concatenate([q_q[s], q_g[s]], axis=1))
        if stop > num_q:
            s = slice(max(start, num_q) - num_q, stop - num_q)
            parts.append(np.concatenate([q_g[:, s].T, g_g[s]], axis=1))
        return np.square(np.concatenate(parts, axis=0))

    return _k_reciprocal_distances(squared_rows, num_q, num_q + num_g, k1, k2, lambda_value)


def re_ranking_features(
    query_features: np.ndarray, gallery_features: np.ndarray,
    k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked query x gallery distances from embeddings (Euclidean), never forming (Q+G)^2."""
    qf = np.asarray(query_features, np.float32)
    gf = np.asarray(gallery_features, np.float32)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"feature shapes do not fit: query {qf.shape}, gallery {gf.shape}")
    features = np.concatenate([qf, gf], axis=0)
    sq_norms = np.einsum("ij,ij->i", features, features)

    def squared_rows(start: int, stop: int) -> np.ndarray:
        d = features[start:stop] @ features.T
        d *= -2.0
        d += sq_norms[start:stop, None]
        d += sq_norms[None, :]
        return np.maximum(d, 0.0, out=d)

    return _k_reciprocal_distances(squared_rows, len(qf), len(features), k1, k2, lambda_value)


def _row_blocks(num: int, width: int):
    step = max(1, _BLOCK_ELEMENTS // max(width, 1))
    for start in range(0, num, step):
        yield start, min(start + step, num)


def _reciprocal(neighbors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """mask[r, a]: item rows[r] is among the neighbours of its neighbour neighbors[rows[r], a]."""
    forward = neighbors[rows]
    return (neighbors[forward] == rows[:, None, None]).any(axis=2)


def _k_reciprocal_distances(
    squared_rows: Callable[[int, int], np.ndarray],
    num_q: int, num_all: int, k1: int, k2: int, lambda_value: float,
) -> np.ndarray:
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"need k1 >= 1, k2 >= 1, 0 <= lambda <= 1; got {k1}, {k2}, {lambda_value}")
    num_g = num_all - num_q
    kk = min(k1 + 1, num_all)
    kh = min(int(np.around(k1 / 2.0)) + 1, num_all)

    # Pass 1: each row's maximum and its k1+1 nearest items, in order; the query rows of the
    # normalised distance (the "original" distance of the final blend) go into the result,
    # which the Jaccard pass then blends in place.
    neighbors = np.empty((num_all, kk), np.int64)
    row_max = np.empty(num_all, np.float32)
    result = np.empty((num_q, num_g), np.float32)
    for start, stop in _row_blocks(num_all, num_all):
        d = squared_rows(start, stop)
        row_max[start:stop] = d.max(axis=1)
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < num_all else np.tile(
            np.arange(num_all), (stop - start, 1))
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        neighbors[start:stop] = np.take_along_axis(part, order, axis=1)
        if start < num_q:
            q_stop = min(stop, num_q)
            result[start:q_stop] = d[: q_stop - start, num_q:] / row_max[start:q_stop, None]

    # Pass 2: k-reciprocal sets, expanded by candidates' half-size sets that overlap > 2/3,
    # weighted by exp(-distance) and normalised: the sparse encodings V.
    half = neighbors[:, :kh]
    half_recip = _reciprocal(half, np.arange(num_all))  # [n, kh]
    v_rows, v_cols, v_vals = [], [], []
    for start, stop in _row_blocks(num_all, num_all):
        rows = np.arange(start, stop)
        recip = _reciprocal(neighbors, rows)  # [c, kk]
        candidates = neighbors[rows]  # [c, kk]
        cand_sets = half[candidates]  # [c, kk, kh]
        cand_mask = half_recip[candidates]  # [c, kk, kh]
        in_set = (cand_sets[..., None] == candidates[:, None, None, :]) & recip[:, None, None, :]
        overlap = (in_set.any(axis=3) & cand_mask).sum(axis=2)
        accept = recip & (overlap > 2.0 / 3 * cand_mask.sum(axis=2))
        members = np.concatenate(
            [np.where(recip, candidates, num_all),
             np.where(accept[..., None] & cand_mask, cand_sets, num_all).reshape(len(rows), -1)],
            axis=1,
        )
        members.sort(axis=1)
        first = np.ones_like(members, dtype=bool)
        first[:, 1:] = members[:, 1:] != members[:, :-1]
        keep = first & (members < num_all)
        r_idx, c_idx = np.nonzero(keep)
        cols = members[r_idx, c_idx]
        d = squared_rows(start, stop)
        weights = np.exp(-(d[r_idx, cols] / row_max[start + r_idx]))
        sums = np.bincount(r_idx, weights=weights, minlength=len(rows))
        v_rows.append(start + r_idx)
        v_cols.append(cols)
        v_vals.append((weights / sums[r_idx]).astype(np.float32))
    v = sparse.csr_matrix(
        (np.concatenate(v_vals), (np.concatenate(v_rows), np.concatenate(v_cols))),
        shape=(num_all, num_all), dtype=np.float32,
    )
    if k2 != 1:  # local query expansion: the mean encoding of the k2 nearest (self included)
        k2 = min(k2, kk)
        expand = sparse.csr_matrix(
            (np.full(num_all * k2, 1.0 / k2, np.float32),
             (np.repeat(np.arange(num_all), k2), neighbors[:, :k2].ravel())),
            shape=(num_all, num_all),
        )
        v = (expand @ v).astype(np.float32).tocsr()
    del neighbors, half, half_recip

    # Jaccard distance between each query and each gallery item through the inverted index
    # (the gallery rows of V by column): sum_k min(V[q, k], V[g, k]).
    inverted = v[num_q:].tocsc()
    q_step = max(1, min(512, _BLOCK_ELEMENTS // (4 * max(num_g, 1))))
    for start in range(0, num_q, q_step):
        stop = min(start + q_step, num_q)
        block = v[start:stop].tocoo()
        counts = np.diff(inverted.indptr)[block.col]
        begin = np.repeat(inverted.indptr[block.col] - np.cumsum(counts) + counts, counts)
        pos = begin + np.arange(counts.sum())
        q_local = np.repeat(block.row, counts)
        mins = np.minimum(np.repeat(block.data, counts), inverted.data[pos])
        shared = np.bincount(
            q_local * num_g + inverted.indices[pos], weights=mins, minlength=(stop - start) * num_g
        ).reshape(stop - start, num_g)
        jaccard = 1.0 - shared / (2.0 - shared)
        result[start:stop] *= lambda_value
        result[start:stop] += jaccard * (1 - lambda_value)
    return result
