"""The 2017 original's scores (res_cmc.py at 0e5c742): no camera filtering; mAP over the whole
ranking as scikit-learn 0.18's average_precision_score computed it (the step-sum AP came with
0.19, after the log), AP cut at the top 200 with no-hit queries counted as 0, and the exact
expectation of its randomised single-shot CMC. Ties fall in gallery order (a stable sort)."""

from __future__ import annotations

import numpy as np

from reid_tf.metrics.distances import MetricsError, block_rows, for_blocks
from reid_tf.metrics.market import _check_ids, _order_keys

ORIGINAL_RANKS = (1, 5, 10, 20)
_LEGENDRE_NODES = 32  # exact for ties among up to 63 identities of one query (see _tied_ids_cmc)


def _sklearn018_ap(sorted_d: np.ndarray, sorted_match: np.ndarray) -> np.ndarray:
    """Per row, scikit-learn 0.18's average_precision_score of scores -d: the trapezoid area under
    the precision-recall points of each distinct distance, from (recall 0, precision 1); NaN for a
    row without a match (the original skips it)."""
    rows, n = sorted_d.shape
    tp = np.cumsum(sorted_match, axis=1, dtype=np.float64)
    total = tp[:, -1:]
    ends = np.ones_like(sorted_match, dtype=bool)  # the last item of each run of equal distances
    ends[:, :-1] = sorted_d[:, 1:] != sorted_d[:, :-1]
    precision = tp / np.arange(1, n + 1)
    previous = np.where(ends, np.arange(n), -1)
    previous = np.maximum.accumulate(np.concatenate([np.full((rows, 1), -1), previous[:, :-1]], axis=1), axis=1)
    taken = np.take_along_axis
    p_before = np.where(previous >= 0, taken(precision, np.maximum(previous, 0), axis=1), 1.0)
    tp_before = np.where(previous >= 0, taken(tp, np.maximum(previous, 0), axis=1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.where(ends, (tp - tp_before) / total * (p_before + precision) / 2, 0.0).sum(axis=1)
    return np.where(total[:, 0] > 0, area, np.nan)


def _row_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys of a [rows, n] array that sort by row, then by value (float32 order)."""
    rows = np.arange(len(values), dtype=np.uint64)[:, None] << np.uint64(32)
    return rows | _order_keys(values).astype(np.uint64)


def _counts_before(sorted_codes: np.ndarray, cuts: np.ndarray, num_ids: int) -> np.ndarray:
    """[rows, cuts, ids]: per row, how many items of each identity lie at positions before each
    cut of the row's sorted gallery."""
    rows, n = sorted_codes.shape
    order = np.argsort(cuts, axis=1, kind="stable")
    ascending = np.take_along_axis(cuts, order, axis=1)
    keys = (np.arange(rows)[:, None] * (n + 1) + ascending).ravel()
    items = (np.arange(rows)[:, None] * (n + 1) + np.arange(n)[None, :]).ravel()
    segment = np.searchsorted(keys, items, "right").reshape(rows, n) - np.arange(rows)[:, None] * cuts.shape[1]
    bins = (np.arange(rows)[:, None] * (cuts.shape[1] + 1) + segment) * num_ids + sorted_codes
    counts = np.bincount(bins.ravel(), minlength=rows * (cuts.shape[1] + 1) * num_ids)
    before = np.cumsum(counts.reshape(rows, cuts.shape[1] + 1, num_ids), axis=1)[:, :-1]
    return np.take_along_axis(before, np.argsort(order, axis=1)[..., None], axis=1)


def _cmc_expectation(sorted_d: np.ndarray, sorted_codes: np.ndarray, q_codes: np.ndarray,
                     id_counts: np.ndarray, ranks: tuple[int, ...]) -> np.ndarray:
    """[rows, len(ranks)]: the exact expectation of the original's single-shot CMC (one gallery
    image drawn per identity, identities in a random order that breaks ties), NaN for a query
    whose identity has no gallery image. Rows come sorted by distance, with each item's identity
    code (`sorted_codes`, a row of `id_counts`); `q_codes` is each query's code (-1: none)."""
    rows, num_ids = len(sorted_d), len(id_counts)
    own = sorted_codes == q_codes[:, None]
    most = max(int(own.sum(axis=1).max()), 1)
    position = np.argsort(~own, axis=1, kind="stable")[:, :most]  # where the true identity's images are
    valid = np.take_along_axis(own, position, axis=1)
    t = np.take_along_axis(sorted_d, position, axis=1)
    flat, wanted = _row_keys(sorted_d).ravel(), _row_keys(t).ravel()
    first = np.arange(rows)[:, None] * sorted_d.shape[1]
    left = np.searchsorted(flat, wanted, "left").reshape(t.shape) - first  # where t's run of ties starts
    right = np.searchsorted(flat, wanted, "right").reshape(t.shape) - first
    before = _counts_before(sorted_codes, np.concatenate([left, right], axis=1), num_ids)
    less, upto = before[:, :most] / id_counts, before[:, most:] / id_counts  # [rows, m, ids]
    tied = upto - less
    counted = (np.arange(num_ids)[None, None, :] != q_codes[:, None, None]) & valid[..., None]
    less, tied = less * counted, tied * counted
    nodes, weights = np.polynomial.legendre.leggauss(_LEGENDRE_NODES if tied.any() else 1)
    tau, weights = (nodes + 1) / 2, weights / 2  # on [0, 1]
    # Given the true identity's draw at distance t and a tie-break priority tau of the true
    # identity, identity j ranks before it with probability less_j + tied_j * tau, independently:
    # the rank is 1 + a Poisson-binomial count, whose distribution below max(ranks) is a DP.
    p = less.transpose(2, 0, 1)[..., None] + tied.transpose(2, 0, 1)[..., None] * tau  # [ids, rows, m, nodes]
    p = p.reshape(num_ids, -1)
    p = p[p.any(axis=1)]  # identities that can come before
    # An identity that cannot come before leaves the DP as it is: where every column has few that
    # can, keep only its nonzero probabilities (sorted to the top) and run the DP over that many.
    busiest = max(int((p > 0).sum(axis=0).max(initial=0)), 1)
    if 2 * busiest < len(p):
        p = -np.sort(-p, axis=0)[:busiest]
    count = np.zeros((max(ranks), p.shape[1]))
    count[0] = 1.0
    for pj in p:  # over identities: the DP's own dimension, vectorised over queries and draws
        count[1:] = count[1:] * (1 - pj) + count[:-1] * pj
        count[0] *= 1 - pj
    count = count.T.reshape(rows, -1, len(tau), max(ranks))
    cdf = np.einsum("rmns,n->rms", np.cumsum(count, axis=3), weights)  # P(rank <= s + 1)
    expected = (cdf * valid[..., None]).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None]
    out = expected[:, [k - 1 for k in ranks]]
    out[:, [k > num_ids for k in ranks]] = np.nan  # the original's curve has one entry an identity
    out[q_codes < 0] = np.nan
    return out


class OriginalAccumulator:
    """The 2017 original's scores (res_cmc.py at 0e5c742) of a query set, block by block: no
    camera filtering; `mAP` (scikit-learn 0.18's AP over the whole ranking, queries without a
    match skipped), `mAP_at_top_n` (AP over the first top_n normalised by the hits among them, a
    query without one counted as 0) and the expected single-shot rank-k. Ties fall in gallery order."""

    def __init__(self, query_pids: np.ndarray, gallery_pids: np.ndarray, top_n: int = 200,
                 ranks: tuple[int, ...] = ORIGINAL_RANKS):
        self.q_pids, self.g_pids = np.asarray(query_pids).ravel(), np.asarray(gallery_pids).ravel()
        _check_ids(len(self.q_pids), len(self.g_pids), self.q_pids, self.g_pids, self.q_pids, self.g_pids)
        self.top_n, self.ranks = top_n, ranks
        ids, self.g_codes = np.unique(self.g_pids, return_inverse=True)
        self.id_counts = np.bincount(self.g_codes).astype(np.float64)
        position = np.searchsorted(ids, self.q_pids)
        hit = (position < len(ids)) & (ids[np.minimum(position, len(ids) - 1)] == self.q_pids)
        self.q_codes = np.where(hit, position, -1)
        self.ap = np.zeros(len(self.q_pids))
        self.ap_top = np.zeros(len(self.q_pids))
        self.cmc = np.zeros((len(self.q_pids), len(ranks)))

    def add(self, start: int, stop: int, d: np.ndarray) -> None:
        d = np.asarray(d, np.float64)
        if d.shape != (stop - start, len(self.g_pids)) or not np.isfinite(d).all():
            raise MetricsError(f"distmat block of shape {d.shape} for {len(self.g_pids)} gallery images,"
                               " or with NaN/Inf entries")
        order = np.argsort(d, axis=1, kind="stable")
        sorted_d = np.take_along_axis(d, order, axis=1)
        match = self.g_pids[order] == self.q_pids[start:stop, None]
        self.ap[start:stop] = _sklearn018_ap(sorted_d, match)
        head = match[:, :self.top_n]
        hits = head.sum(axis=1)
        precision = np.cumsum(head, axis=1) / np.arange(1, head.shape[1] + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.ap_top[start:stop] = np.nan_to_num((head * precision).sum(axis=1) / hits)
        codes = self.g_codes[order]
        for s in range(0, stop - start, 64):  # small blocks: the CMC's arrays grow with ids x images
            e = min(s + 64, stop - start)
            self.cmc[start + s:start + e] = _cmc_expectation(
                sorted_d[s:e], codes[s:e], self.q_codes[start + s:start + e], self.id_counts, self.ranks)

    def result(self) -> dict:
        kept = ~np.isnan(self.ap)
        if not kept.any():
            raise MetricsError("no query has a match in the gallery: check the pids")
        out = {"mAP": float(self.ap[kept].mean()), "mAP_at_top_n": float(self.ap_top.mean())}
        for k, column in zip(self.ranks, self.cmc[kept].T):
            out[f"rank{k}"] = float(column.mean())
        out["num_valid_queries"] = int(kept.sum())
        return out


def original_scores(distances: np.ndarray, query_pids: np.ndarray, gallery_pids: np.ndarray,
                    top_n: int = 200) -> dict:
    """The 2017 original's scores of a query x gallery distance matrix: `mAP`, `mAP_at_top_n`,
    `rank1`, `rank5`, `rank10`, `rank20` (see `OriginalAccumulator`)."""
    distances = np.asarray(distances)
    if distances.ndim != 2:
        raise MetricsError(f"distances must be 2-D (queries x gallery), got shape {distances.shape}")
    scores = OriginalAccumulator(query_pids, gallery_pids, top_n)
    for_blocks(len(distances), block_rows(distances.shape[1]),
               lambda start, stop: scores.add(start, stop, distances[start:stop]))
    return scores.result()
