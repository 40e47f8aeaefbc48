"""Euclidean distances, query block by query block, and the block runner every scorer uses: no
caller holds the whole query x gallery matrix unless it asked for one."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reid_tf.errors import ReidError

BLOCK_ELEMENTS = 1 << 24  # query x gallery distances of one block (64 MiB of float32)


class MetricsError(ReidError, ValueError):
    """Inputs that cannot be scored; the message says which and why."""


def euclidean_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] in float32."""
    return distances_from(b)(a)


def distances_from(gallery_features: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function of query features giving their Euclidean distances (float32) to the gallery;
    called on blocks of queries, it gives the rows `euclidean_distances` would."""
    g = np.asarray(gallery_features, np.float32)
    g_sq = (g * g).sum(1)

    def distances(query_features: np.ndarray) -> np.ndarray:
        q = np.asarray(query_features, np.float32)
        d = (q * q).sum(1)[:, None] + g_sq[None, :] - 2.0 * (q @ g.T)
        return np.sqrt(np.maximum(d, 0.0, out=d), out=d)

    return distances


def block_rows(num_gallery: int) -> int:
    """Queries per block, so that a block of distances holds about BLOCK_ELEMENTS."""
    return max(1, min(4096, BLOCK_ELEMENTS // max(num_gallery, 1)))


def for_blocks(num: int, rows: int, work: Callable[[int, int], None], workers: int | None = None) -> None:
    """work(start, stop) for consecutive blocks of `rows` of range(num), on `workers` threads
    (numpy's matrix products and sorts release the GIL); the first error is raised."""
    starts = range(0, num, rows)
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        for future in [pool.submit(work, s, min(s + rows, num)) for s in starts]:
            future.result()


