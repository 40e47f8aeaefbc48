"""Validation splits of training records: held-out identities as a query/gallery set, and a
subset of training identities for the train-set mAP. Deterministic by seed."""

from __future__ import annotations

import numpy as np

from reid_tf.datasets.records import DatasetError, Record


def split_validation(
    records: list[Record], num_ids: int, seed: int
) -> tuple[list[Record], list[Record], list[Record]]:
    """Hold out `num_ids` identities as a validation query/gallery set, deterministic by seed.

    Returns (train, query, gallery). Per held-out identity, one image per camera becomes a
    query (as in Market-1501) and the rest the gallery.
    """
    pids = np.array(sorted({r.pid for r in records}))
    if num_ids <= 0:
        return list(records), [], []
    if num_ids >= len(pids):
        raise DatasetError(
            f"--valid_ids={num_ids} holds out every one of the {len(pids)} training identities;"
            " use a smaller value"
        )
    rng = np.random.default_rng(seed)
    held = set(rng.choice(pids, size=num_ids, replace=False).tolist())
    train = [r for r in records if r.pid not in held]
    held_records = [r for r in records if r.pid in held]
    query, gallery = query_gallery_split(held_records, seed)
    return train, query, gallery


def query_gallery_split(records: list[Record], seed: int) -> tuple[list[Record], list[Record]]:
    """One random image per (pid, camera) as query, the rest gallery; deterministic by seed."""
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(records))
    first_seen: set[tuple[int, int]] = set()
    is_query = np.zeros(len(records), dtype=bool)
    for i in order:
        key = (records[i].pid, records[i].camid)
        if key not in first_seen:
            first_seen.add(key)
            is_query[i] = True
    query = [r for r, q in zip(records, is_query) if q]
    gallery = [r for r, q in zip(records, is_query) if not q]
    return query, gallery


def subset_ids(records: list[Record], num_ids: int, seed: int) -> list[Record]:
    """Records of `num_ids` identities chosen by seed (e.g. for a train-set mAP)."""
    pids = np.array(sorted({r.pid for r in records}))
    rng = np.random.default_rng(seed + 2)
    chosen = set(rng.choice(pids, size=min(num_ids, len(pids)), replace=False).tolist())
    return [r for r in records if r.pid in chosen]


def cameras_for_unknown(query: list[Record], gallery: list[Record]) -> tuple[list[Record], list[Record]]:
    """Without cameras (a CSV list without camid), every other image of the identity is a match:
    query and gallery get different pseudo cameras so the same-camera rule removes nothing."""
    if any(r.camid != -1 for r in query + gallery):
        return query, gallery
    return [r._replace(camid=0) for r in query], [r._replace(camid=1) for r in gallery]
