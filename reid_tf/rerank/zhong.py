"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), numerically as the authors' Python code computes it, in bounded memory.

The reference keeps several dense (Q+G)^2 matrices and a full argsort. Only the top-(k1+1)
neighbours of each item matter, so this keeps those (a partial sort, one pass over the distance
rows), stores the encodings V as a sparse matrix, and scores the Jaccard distance through an
inverted index, a block of queries at a time: memory grows with (Q+G) * k1 and one block of
queries x gallery, not (Q+G)^2, and a caller that scores blocks never holds Q x G at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

from reid_tf.rerank.neighbors import nearest_neighbors, squared_views

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

    full = np.block([[q_q, q_g], [q_g.T, g_g]])  # the caller holds (Q+G)^2 already

    def squared_block(rows: slice, cols: slice) -> np.ndarray:
        return np.square(full[rows, cols])

    def squared_pairs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), np.float32)
        row_q, col_q = rows < num_q, cols < num_q
        for mask, values in ((row_q & col_q, lambda r, c: q_q[r, c]),
                             (row_q & ~col_q, lambda r, c: q_g[r, c - num_q]),
                             (~row_q & col_q, lambda r, c: q_g[c, r - num_q]),
                             (~row_q & ~col_q, lambda r, c: g_g[r - num_q, c - num_q])):
            out[mask] = values(rows[mask], cols[mask])
        return np.square(out)

    encoding = KReciprocal(squared_block, squared_pairs, num_q, num_q + num_g, k1, k2, lambda_value)
    return encoding.distances(0, num_q, np.square(q_g))


def re_ranking_features(
    query_features: np.ndarray, gallery_features: np.ndarray,
    k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked query x gallery distances from embeddings (Euclidean), never forming (Q+G)^2."""
    encoding = KReciprocal.of_features(query_features, gallery_features, k1, k2, lambda_value)
    num_q = len(query_features)
    result = np.empty((num_q, len(gallery_features)), np.float32)
    for start, stop in _row_blocks(num_q, encoding.num_all):
        squared = encoding.squared_block(slice(start, stop), slice(num_q, encoding.num_all))
        result[start:stop] = encoding.distances(start, stop, squared)
    return result


def _row_blocks(num: int, width: int):
    step = max(1, _BLOCK_ELEMENTS // max(width, 1))
    for start in range(0, num, step):
        yield start, min(start + step, num)


def _reciprocal(neighbors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """mask[r, a]: item rows[r] is among the neighbours of its neighbour neighbors[rows[r], a]."""
    forward = neighbors[rows]
    return (neighbors[forward] == rows[:, None, None]).any(axis=2)


class KReciprocal:
    """The k-reciprocal encodings V of every query and gallery item, built from their squared
    distances (`squared_block(rows, cols)`: a block of the (Q+G)^2 matrix, given slices;
    `squared_pairs(rows, cols)`: single entries); then `distances` re-ranks any block of queries."""

    def __init__(self, squared_block: Callable[[slice, slice], np.ndarray],
                 squared_pairs: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 num_q: int, num_all: int, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                 nearest: np.ndarray | None = None):
        if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
            raise ValueError(f"need k1 >= 1, k2 >= 1, 0 <= lambda <= 1; got {k1}, {k2}, {lambda_value}")
        self.squared_block, self.num_q, self.num_all = squared_block, num_q, num_all
        self.lambda_value = lambda_value
        if nearest is None:
            neighbors, self.row_max = nearest_neighbors(squared_block, num_all, k1, _BLOCK_ELEMENTS)
        else:  # Cluster Contrast's encodings: given neighbours, weights softmax(-d^2) with no row maximum
            neighbors, self.row_max = nearest, np.ones(num_all, np.float32)
        v = self._encodings(neighbors, squared_pairs, k1)
        if k2 != 1:  # local query expansion: the mean encoding of the k2 nearest (self included)
            k2 = min(k2, neighbors.shape[1])
            expand = sparse.csr_matrix(
                (np.full(num_all * k2, 1.0 / k2, np.float32),
                 (np.repeat(np.arange(num_all), k2), neighbors[:, :k2].ravel())),
                shape=(num_all, num_all),
            )
            v = (expand @ v).astype(np.float32).tocsr()
        self.queries, self.inverted = v[:num_q], v[num_q:].tocsc()  # the gallery's rows by column

    @classmethod
    def of_features(cls, query_features: np.ndarray, gallery_features: np.ndarray, k1: int = 20, k2: int = 6,
                    lambda_value: float = 0.3) -> KReciprocal:
        """The encodings of embeddings under the Euclidean distance."""
        qf = np.asarray(query_features, np.float32)
        gf = np.asarray(gallery_features, np.float32)
        if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
            raise ValueError(f"feature shapes do not fit: query {qf.shape}, gallery {gf.shape}")
        features = np.concatenate([qf, gf], axis=0)
        return cls(*squared_views(features), len(qf), len(features), k1, k2, lambda_value)

    @classmethod
    def for_clustering(cls, features: np.ndarray, k1: int = 30, k2: int = 6) -> KReciprocal:
        """Cluster Contrast's encodings of one set (its compute_jaccard_distance): each item's k1
        nearest, itself included (its search asks faiss for k1, not k1 + 1), from an exact search
        (faiss' IndexFlatL2 where installed, else the blocked search: the same neighbours up to
        ties), weighted by softmax(-d^2) over each set."""
        features = np.ascontiguousarray(features, np.float32)
        block, pairs = squared_views(features)
        kk = min(k1, len(features))
        try:
            import faiss
        except ImportError:
            nearest = None
        else:
            index = faiss.IndexFlatL2(features.shape[1])
            index.add(features)
            nearest = index.search(features, kk)[1].astype(np.int64)
        if nearest is None:
            nearest = nearest_neighbors(block, len(features), kk - 1, _BLOCK_ELEMENTS)[0]
        return cls(block, pairs, len(features), len(features), k1, k2, nearest=nearest)

    def _encodings(self, neighbors: np.ndarray, squared_pairs, k1: int) -> sparse.csr_matrix:
        """k-reciprocal sets, expanded by candidates' half-size sets that overlap > 2/3,
        weighted by exp(-distance) and normalised: the sparse encodings V."""
        num_all = self.num_all
        kh = min(int(np.around(k1 / 2.0)) + 1, num_all)
        half = neighbors[:, :kh]
        half_recip = _reciprocal(half, np.arange(num_all))  # [n, kh]
        v_rows, v_cols, v_vals = [], [], []
        for start, stop in _row_blocks(num_all, 64 * neighbors.shape[1] * kh):
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
            weights = np.exp(-(squared_pairs(start + r_idx, cols) / self.row_max[start + r_idx]))
            sums = np.bincount(r_idx, weights=weights, minlength=len(rows))
            v_rows.append(start + r_idx)
            v_cols.append(cols)
            v_vals.append((weights / sums[r_idx]).astype(np.float32))
        return sparse.csr_matrix(
            (np.concatenate(v_vals), (np.concatenate(v_rows), np.concatenate(v_cols))),
            shape=(num_all, num_all), dtype=np.float32,
        )

    def jaccard_graph(self, max_distance: float = 1.0) -> sparse.csr_matrix:
        """The Jaccard distance of the encodings between every two items of a set (built with no
        gallery: `of_features(features, features[:0])`), as a sparse [N, N] matrix of the pairs whose
        encodings overlap; every other pair is at distance 1. What clustering a set needs.
        `max_distance` < 1 keeps only the pairs within it (DBSCAN's eps needs no more), each
        stored as at least 1e-9 so that a distance of 0 stays a stored neighbour."""
        v, n = self.queries, self.queries.shape[0]
        inverted = v.tocsc()
        per_row = max(1.0, v.nnz / max(n, 1))
        step = max(1, int(_BLOCK_ELEMENTS // (8 * per_row * per_row)))
        blocks = []
        for s in range(0, n, step):
            block = v[s:min(s + step, n)].tocoo()
            counts = np.diff(inverted.indptr)[block.col]
            begin = np.repeat(inverted.indptr[block.col] - np.cumsum(counts) + counts, counts)
            pos = begin + np.arange(counts.sum())
            mins = np.minimum(np.repeat(block.data, counts), inverted.data[pos])
            shared = sparse.coo_matrix((mins, (np.repeat(block.row, counts), inverted.indices[pos])),
                                       shape=(block.shape[0], n)).tocsr()  # duplicates summed: sum_k min
            shared.data = 1.0 - shared.data / (2.0 - shared.data)  # rows of V sum to 1
            if max_distance < 1.0:
                shared.data[shared.data > max_distance] = np.nan
                shared.data = np.maximum(shared.data, 1e-9)  # NaN stays NaN: the pairs dropped below
                shared.data[np.isnan(shared.data)] = 0.0
                shared.eliminate_zeros()
            blocks.append(shared)
        return sparse.vstack(blocks).tocsr() if blocks else sparse.csr_matrix((0, 0), dtype=np.float32)

    def distances(self, start: int, stop: int, squared: np.ndarray) -> np.ndarray:
        """Re-ranked distances [stop - start, G] of queries start:stop, from their squared plain
        distances to the gallery: lambda x the row-normalised distance + (1 - lambda) x the
        Jaccard distance of the encodings, sum_k min(V[q, k], V[g, k]) through the inverted index."""
        num_g = self.num_all - self.num_q
        result = squared / self.row_max[start:stop, None]
        inverted = self.inverted
        step = max(1, min(512, _BLOCK_ELEMENTS // (4 * max(num_g, 1))))
        for s in range(start, stop, step):
            e = min(s + step, stop)
            block = self.queries[s:e].tocoo()
            counts = np.diff(inverted.indptr)[block.col]
            begin = np.repeat(inverted.indptr[block.col] - np.cumsum(counts) + counts, counts)
            pos = begin + np.arange(counts.sum())
            q_local = np.repeat(block.row, counts)
            mins = np.minimum(np.repeat(block.data, counts), inverted.data[pos])
            shared = np.bincount(
                q_local * num_g + inverted.indices[pos], weights=mins, minlength=(e - s) * num_g
            ).reshape(e - s, num_g)
            jaccard = 1.0 - shared / (2.0 - shared)
            rows = slice(s - start, e - start)
            result[rows] *= self.lambda_value
            result[rows] += jaccard * (1 - self.lambda_value)
        return result.astype(np.float32, copy=False)
