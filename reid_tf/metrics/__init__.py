"""Scoring protocols of query x gallery distances: Market-1501's (and its official compute_AP.m)
in `market.py`, the 2017 original's in `original.py`, on the blocked distances of `distances.py`."""

from reid_tf.metrics.distances import (
    BLOCK_ELEMENTS,
    MetricsError,
    block_rows,
    distances_from,
    euclidean_distances,
    for_blocks,
)
from reid_tf.metrics.market import RankAccumulator, evaluate_rank, match_ranks
from reid_tf.metrics.original import ORIGINAL_RANKS, OriginalAccumulator, original_scores

__all__ = ["BLOCK_ELEMENTS", "ORIGINAL_RANKS", "MetricsError", "OriginalAccumulator", "RankAccumulator",
           "block_rows", "distances_from", "euclidean_distances", "evaluate_rank", "for_blocks", "match_ranks",
           "original_scores"]
