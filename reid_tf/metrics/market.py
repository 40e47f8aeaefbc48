"""Ranking metrics with the Market-1501 protocol (and compute_AP.m's): mAP, CMC and mINP, query
block by query block. AP, CMC and mINP need only where each true match ranks, not a sorted
gallery: a match's rank is 1 + the number of valid gallery items before it."""

from __future__ import annotations

import numpy as np

from reid_tf.config import JUNK_PID
from reid_tf.metrics.distances import MetricsError, for_blocks

PROTOCOLS = ("market1501", "official")


def _check_ids(num_q, num_g, query_pids, gallery_pids, query_camids, gallery_camids):
    q_pids, g_pids = np.asarray(query_pids).ravel(), np.asarray(gallery_pids).ravel()
    q_cams, g_cams = np.asarray(query_camids).ravel(), np.asarray(gallery_camids).ravel()
    if num_q == 0 or num_g == 0:
        raise MetricsError(f"nothing to score: {num_q} queries and {num_g} gallery images")
    if len(q_pids) != num_q or len(q_cams) != num_q:
        raise MetricsError(
            f"distmat has {num_q} query rows but {len(q_pids)} query pids and {len(q_cams)} camids")
    if len(g_pids) != num_g or len(g_cams) != num_g:
        raise MetricsError(
            f"distmat has {num_g} gallery columns but {len(g_pids)} gallery pids and {len(g_cams)} camids")
    return q_pids, g_pids, q_cams, g_cams


def _order_keys(d: np.ndarray) -> np.ndarray:
    """uint32 keys that sort as the float32 values do (IEEE bits, negatives flipped)."""
    bits = (np.asarray(d, np.float32) + np.float32(0.0)).view(np.uint32)  # + 0.0: -0.0 becomes 0.0
    return np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))


def _ranks(d: np.ndarray, m_rows: np.ndarray, m_cols: np.ndarray, excluded) -> tuple[np.ndarray, np.ndarray]:
    """(row, rank) of the true matches (m_rows, m_cols) of a block: each one's 1-based rank among
    its row's items that `excluded(rows, cols)` leaves in, ties between equal distances broken by
    gallery order, as a stable sort of the row would rank it.

    Only items no farther than the row's farthest match can come before a match, so one pass
    over the block picks those (a few hundred of a row's thousands, for any working model); each
    gets a unique 64-bit key (row, distance, gallery index), and one sort and one search place
    every match among them.
    """
    d = np.asarray(d, np.float32)  # ranked as float32, as the keys are
    num_rows, num_g = d.shape
    col_bits = max(int(num_g).bit_length(), 1)
    if int(num_rows - 1).bit_length() + 32 + col_bits > 64:
        raise MetricsError(f"a block of {num_rows} queries x {num_g} gallery images is too large to rank")
    if not len(m_rows):
        return m_rows, m_rows
    farthest = np.full(num_rows, -np.inf, np.float32)
    np.maximum.at(farthest, m_rows, d[m_rows, m_cols])
    rows, cols = np.nonzero(d <= farthest[:, None])
    keep = ~excluded(rows, cols)
    rows, cols = rows[keep], cols[keep]

    def keys(r, c):
        return ((r.astype(np.uint64) << np.uint64(32 + col_bits))
                | (_order_keys(d[r, c]).astype(np.uint64) << np.uint64(col_bits)) | c.astype(np.uint64))

    ordered = np.sort(keys(rows, cols))
    row_start = np.searchsorted(ordered, m_rows.astype(np.uint64) << np.uint64(32 + col_bits))
    return m_rows, np.searchsorted(ordered, keys(m_rows, m_cols)) - row_start + 1


def match_ranks(d: np.ndarray, valid: np.ndarray, match: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, rank) of every true match (`match`, within `valid`) of a block: its 1-based rank among
    the row's valid items, ties broken by gallery order, as a stable sort of the row would."""
    m_rows, m_cols = np.nonzero(match & valid)
    return _ranks(d, m_rows, m_cols, lambda r, c: ~valid[r, c])


def _matches(q_pids, q_cams, g_pids, g_cams) -> tuple[np.ndarray, np.ndarray]:
    """Every query's true matches as CSR (indptr, gallery columns in order): its pid, another
    camera, not junk. A query has few, so the blocks never build query x gallery masks."""
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    lo, hi = np.searchsorted(sorted_pids, q_pids, "left"), np.searchsorted(sorted_pids, q_pids, "right")
    counts = hi - lo
    rows = np.repeat(np.arange(len(q_pids)), counts)
    cols = order[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())]
    keep = (g_cams[cols] != q_cams[rows]) & (g_pids[cols] != JUNK_PID)
    rows, cols = rows[keep], cols[keep]
    cols = cols[np.lexsort((cols, rows))]
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(q_pids)))]), cols


def _score_block(d, start, matches, q_pids, q_cams, g_pids, g_cams, protocol):
    """Per query of a block (queries start:start + len(d)): AP, INP, the rank of its first match,
    and whether it has one."""
    indptr, columns = matches
    counts = np.diff(indptr[start:start + len(d) + 1])
    m_rows = np.repeat(np.arange(len(d)), counts)
    m_cols = columns[indptr[start]:indptr[start + len(d)]]
    qp, qc = q_pids[start:start + len(d)], q_cams[start:start + len(d)]

    def excluded(r, c):  # junk, and the query's own pid seen by its own camera
        return (g_pids[c] == JUNK_PID) | ((g_pids[c] == qp[r]) & (g_cams[c] == qc[r]))

    rows, ranks = _ranks(d, m_rows, m_cols, excluded)
    order = np.lexsort((ranks, rows))
    rows, ranks = rows[order], ranks[order]
    num_rel = np.bincount(rows, minlength=len(d))
    starts = np.cumsum(num_rel) - num_rel
    hits = np.arange(len(rows)) - starts[rows] + 1  # k for the k-th match of its query
    precision = hits / ranks
    if protocol == "market1501":  # mean precision at each match
        terms = precision
    else:  # compute_AP.m's trapezoid: precision one valid item earlier (1 before the first)
        terms = (precision + np.where(ranks > 1, (hits - 1) / np.maximum(ranks - 1, 1), 1.0)) / 2
    found = num_rel > 0
    safe = np.maximum(num_rel, 1)
    ap = np.bincount(rows, weights=terms, minlength=len(d)) / safe
    first = np.full(len(d), np.iinfo(np.int64).max)
    last = np.zeros(len(d), np.int64)
    if len(rows):
        np.minimum.at(first, rows, ranks)
        np.maximum.at(last, rows, ranks)
    inp = np.where(found, num_rel / np.maximum(last, 1), 0.0)
    return np.where(found, ap, 0.0), inp, first, found


class RankAccumulator:
    """mAP, CMC and mINP of a query set scored block by block: `add` the distances of queries
    start:stop to the whole gallery (from any thread; blocks are disjoint), then `result`."""

    def __init__(self, query_pids: np.ndarray, gallery_pids: np.ndarray, query_camids: np.ndarray,
                 gallery_camids: np.ndarray, protocol: str = "market1501"):
        if protocol not in PROTOCOLS:
            raise MetricsError(f"protocol must be one of {PROTOCOLS} here, got {protocol!r}")
        num_q, num_g = len(np.asarray(query_pids).ravel()), len(np.asarray(gallery_pids).ravel())
        self.ids = _check_ids(num_q, num_g, query_pids, gallery_pids, query_camids, gallery_camids)
        self.protocol, self.num_g = protocol, num_g
        self.ap, self.inp = np.zeros(num_q), np.zeros(num_q)
        self.first, self.found = np.zeros(num_q, np.int64), np.zeros(num_q, bool)
        self.matches = _matches(*self.ids[:1], self.ids[2], self.ids[1], self.ids[3])

    def add(self, start: int, stop: int, d: np.ndarray) -> None:
        if d.shape != (stop - start, self.num_g):
            raise MetricsError(f"distmat has {d.shape[1]} gallery columns but {self.num_g} gallery pids")
        if not np.isfinite(d).all():
            raise MetricsError("distmat has NaN or Inf entries: the features or distances are broken")
        q_pids, g_pids, q_cams, g_cams = self.ids
        s = slice(start, stop)
        self.ap[s], self.inp[s], self.first[s], self.found[s] = _score_block(
            d, start, self.matches, q_pids, q_cams, g_pids, g_cams, self.protocol)

    def result(self, max_rank: int = 50) -> dict:
        num_valid = int(self.found.sum())
        if num_valid == 0:
            raise MetricsError(
                "no query has a valid match in the gallery (same pid seen by another camera):"
                " check the pids and camids"
            )
        keep = self.found if self.protocol == "market1501" else np.ones_like(self.found)
        max_rank = min(max_rank, self.num_g)
        cmc = (np.arange(1, max_rank + 1)[None, :] >= self.first[:, None]) & self.found[:, None]
        return {
            "mAP": float(self.ap[keep].mean()),
            "cmc": cmc[keep].mean(axis=0).astype(np.float64),
            "mINP": float(self.inp[keep].mean()),
            "num_valid_queries": num_valid,
            "num_skipped_queries": int(len(self.found) - num_valid),
        }


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
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise MetricsError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    _check_ids(num_q, num_g, query_pids, gallery_pids, query_camids, gallery_camids)
    scores = RankAccumulator(query_pids, gallery_pids, query_camids, gallery_camids, protocol)
    for_blocks(num_q, chunk_size, lambda start, stop: scores.add(start, stop, distmat[start:stop]))
    return scores.result(max_rank)
