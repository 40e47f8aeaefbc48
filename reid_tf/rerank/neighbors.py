"""The exact nearest neighbours that k-reciprocal encodings start from: a blocked pass over the
squared distances of a feature matrix, each block above the diagonal computed once and read both ways."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_PAIR_CHUNK = 1 << 14  # feature pairs per dot-product chunk (2 x 16384 x D floats)


def _keep_nearest(best: np.ndarray, best_index: np.ndarray, rows: slice, d: np.ndarray, first: int,
                  transposed: bool = False) -> None:
    """Merge a block of distances into each item's k smallest so far (best, best_index), in place;
    ties keep the smaller index. The items are `rows`; d[a, b] is rows[a]'s distance to item
    first + b (transposed: rows[b]'s to item first + a).

    Each item meets the others in increasing index order, so once it holds k entries only a
    distance strictly below its k-th can enter; an item not yet full takes the block's k-th
    smallest (a partial sort of values, not of indices) as its bound. One comparison with the
    bounds finds the few entries that can enter, and only they are merged."""
    k = best.shape[1]
    bound = best[rows, -1].copy()
    empty = ~np.isfinite(bound)
    if empty.any() and d.shape[1 - transposed] > k:
        block = d[:, empty] if transposed else d[empty]
        kth = np.partition(block, k - 1, axis=0 if transposed else 1)[(k - 1, slice(None)) if transposed
                                                                      else (slice(None), k - 1)]
        bound[empty] = np.nextafter(kth, np.float32(np.inf))  # d < bound: d <= its k-th
    a, b = np.nonzero(d < (bound[None, :] if transposed else bound[:, None]))
    if not len(a):
        return
    values = d[a, b]
    item, other = (b, a) if transposed else (a, b)
    touched = np.unique(item)
    owner = np.concatenate([np.repeat(np.arange(len(touched)), k), np.searchsorted(touched, item)])
    at = rows.start + touched
    all_values = np.concatenate([best[at].ravel(), values])
    all_indices = np.concatenate([best_index[at].ravel(), other + first])
    order = np.lexsort((all_indices, all_values, owner))
    starts = np.searchsorted(owner[order], np.arange(len(touched)))
    chosen = order[starts[:, None] + np.arange(k)]
    best[at], best_index[at] = all_values[chosen], all_indices[chosen]


def squared_views(features: np.ndarray):
    """(squared_block, squared_pairs) of a feature matrix: KReciprocal's two views of its distances."""
    sq_norms = np.einsum("ij,ij->i", features, features)

    def squared_block(rows: slice, cols: slice) -> np.ndarray:
        d = features[rows] @ features[cols].T
        d *= -2.0
        d += sq_norms[rows, None]
        d += sq_norms[None, cols]
        return np.maximum(d, 0.0, out=d)

    def squared_pairs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), np.float32)
        for s in range(0, len(rows), _PAIR_CHUNK):  # the same sum as squared_block's, pair by pair
            r, c = rows[s:s + _PAIR_CHUNK], cols[s:s + _PAIR_CHUNK]
            d = np.einsum("ij,ij->i", features[r], features[c]) * np.float32(-2.0)
            out[s:s + _PAIR_CHUNK] = np.maximum(d + sq_norms[r] + sq_norms[c], 0.0)
        return out

    return squared_block, squared_pairs


def nearest_neighbors(squared_block: Callable[[slice, slice], np.ndarray], num_all: int, k1: int,
                      block_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's k1+1 nearest items in order (ties by index, as a stable sort) and its row's
    largest squared distance. The distance matrix is symmetric: each block above the
    diagonal is computed once and read both ways, half the matrix products of whole rows."""
    kk = min(k1 + 1, num_all)
    best = np.full((num_all, kk), np.inf, np.float32)
    best_index = np.zeros((num_all, kk), np.int64)
    row_max = np.zeros(num_all, np.float32)
    side = max(kk, int(np.sqrt(block_elements)))
    for i in range(0, num_all, side):
        rows = slice(i, min(i + side, num_all))
        for j in range(i, num_all, side):
            cols = slice(j, min(j + side, num_all))
            d = squared_block(rows, cols)
            row_max[rows] = np.maximum(row_max[rows], d.max(axis=1))
            _keep_nearest(best, best_index, rows, d, j)
            if j != i:
                row_max[cols] = np.maximum(row_max[cols], d.max(axis=0))
                _keep_nearest(best, best_index, cols, d, i, transposed=True)
    order = np.lexsort((best_index, best), axis=1)
    return np.take_along_axis(best_index, order, axis=1), row_max
