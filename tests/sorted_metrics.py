"""reid_tf's scoring before it went by ranks of matches: the whole query x gallery matrix, a stable
argsort of every row, then cumulative sums. Kept as the oracle the block scoring must equal."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

JUNK_PID = -1


def sorted_evaluate_rank(
    distmat: np.ndarray,
    query_pids: np.ndarray,
    gallery_pids: np.ndarray,
    query_camids: np.ndarray,
    gallery_camids: np.ndarray,
    max_rank: int = 50,
    protocol: str = "market1501",
    chunk_size: int = 256,
) -> dict:
    """The figures of `reid_tf.metrics.evaluate_rank` (the same protocols), by whole sorted rows."""
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(query_pids).ravel(), np.asarray(gallery_pids).ravel()
    q_cams, g_cams = np.asarray(query_camids).ravel(), np.asarray(gallery_camids).ravel()
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
    keep = found if protocol == "market1501" else np.ones_like(found)
    return {
        "mAP": float(ap[keep].mean()),
        "cmc": cmc[keep].mean(axis=0).astype(np.float64),
        "mINP": float(inp[keep].mean()),
        "num_valid_queries": num_valid,
        "num_skipped_queries": int(num_q - num_valid),
    }
