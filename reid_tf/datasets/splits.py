"""Validation splits of training records: held-out identities as a query/gallery set, and a
subset of training identities for the train-set mAP. Deterministic by seed. Two ways to make
queries and gallery: one query per identity and camera (Market-1501's), or the 2017 original's."""

from __future__ import annotations

import numpy as np

from reid_tf.datasets.records import DatasetError, Record


def split_validation(
    records: list[Record], num_ids: int, seed: int, split: str = "per_camera"
) -> tuple[list[Record], list[Record], list[Record]]:
    """Hold out `num_ids` identities as a validation query/gallery set, deterministic by seed.

    Returns (train, query, gallery), the held-out identities' images split by `split` (see
    `query_gallery_split` and `original_gallery_split`).
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
    query, gallery = SPLITS[split](held_records, seed)
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


ORIGINAL_GALLERY_MAX = 40  # res_data.py's generate_gallery keeps at most 40 gallery images an identity


def original_gallery_split(records: list[Record], seed: int) -> tuple[list[Record], list[Record]]:
    """The 2017 original's `generate_gallery`, by seed: per identity one random query, a second
    one with probability 0.5 (when an image is left), and the rest as gallery, at most 40 of
    them drawn at random. Cameras play no part (the original's data had none)."""
    rng = np.random.default_rng(seed + 3)
    by_pid: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_pid.setdefault(r.pid, []).append(i)
    query, gallery = [], []
    for pid in sorted(by_pid):  # per identity, not per image: a few hundred at most
        order = [by_pid[pid][j] for j in rng.permutation(len(by_pid[pid]))]
        probes = 1 + int(rng.random() > 0.5 and len(order) > 1)
        query += [records[i] for i in order[:probes]]
        rest = order[probes:]
        if len(rest) > ORIGINAL_GALLERY_MAX:
            rest = [rest[j] for j in sorted(rng.choice(len(rest), ORIGINAL_GALLERY_MAX, replace=False))]
        gallery += [records[i] for i in rest]
    return query, gallery


SPLITS = {"per_camera": query_gallery_split, "original": original_gallery_split}


def subset_ids(records: list[Record], num_ids: int, seed: int) -> list[Record]:
    """Records of `num_ids` identities chosen by seed (e.g. for a train-set mAP)."""
    pids = np.array(sorted({r.pid for r in records}))
    rng = np.random.default_rng(seed + 2)
    chosen = set(rng.choice(pids, size=min(num_ids, len(pids)), replace=False).tolist())
    return [r for r in records if r.pid in chosen]
