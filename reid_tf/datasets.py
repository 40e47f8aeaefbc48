"""Parsing Market-1501 / DukeMTMC-reID folders and CSV lists into plain records; validation splits."""

from __future__ import annotations

import csv
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from absl import logging
from PIL import Image

from reid_tf.config import DataConfig
from reid_tf.synthetic import make_synthetic_market

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
JUNK_PID = -1  # Market-1501: "-1" = junk, ignored in evaluation
DISTRACTOR_PID = 0  # Market-1501: "0000" = distractor, a negative for every query
# Far above any person crop: an image whose header claims more is refused undecoded (training,
# evaluation and serving alike), so a small file cannot demand gigabytes.
MAX_IMAGE_PIXELS = 4096 * 4096

# Market: 0002_c1s1_000451_03.jpg, -1_c1s1_000000_00.jpg; Duke: 0005_c2_f0046985.jpg.
_NAME_PATTERN = re.compile(r"^(-1|\d+)_c(\d+)")

MARKET_LAYOUT = "bounding_box_train/, query/ and bounding_box_test/ with files named PPPP_cC..."


class DatasetError(ValueError):
    """Bad dataset input; the message is one line naming the file or folder and what to do."""


class Record(NamedTuple):
    path: str
    pid: int
    camid: int


def parse_market_name(name: str) -> tuple[int, int] | None:
    """(pid, camid) from a Market-1501 / Duke file name, or None when it does not match."""
    m = _NAME_PATTERN.match(name)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def read_market_folder(folder: str) -> list[Record]:
    """Records of one split folder (e.g. `query/`), sorted by file name; odd names are reported."""
    if not os.path.isdir(folder):
        raise DatasetError(
            f"missing folder {folder}: expected a Market-1501 layout ({MARKET_LAYOUT})"
        )
    records, unmatched = [], []
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue  # Market ships Thumbs.db files and the like
        parsed = parse_market_name(name)
        if parsed is None:
            unmatched.append(name)
            continue
        records.append(Record(os.path.join(folder, name), parsed[0], parsed[1]))
    if unmatched:
        logging.warning(
            "left out %d image(s) in %s whose names do not match PPPP_cC...: %s",
            len(unmatched), folder, ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else ""),
        )
    return records


def load_market1501(root: str) -> dict[str, list[Record]]:
    """Train, query and gallery records of a Market-1501 (or DukeMTMC-reID) folder.

    Training records drop junk (-1) and distractor (0) images; pids are kept as in the files
    (use `relabel` before training). Query and gallery keep everything: evaluation applies
    the protocol's exclusions.
    """
    if not os.path.isdir(root):
        raise DatasetError(f"missing dataset folder {root}: expected {MARKET_LAYOUT}")
    train = [r for r in read_market_folder(os.path.join(root, "bounding_box_train")) if r.pid > 0]
    return {
        "train": train,
        "query": read_market_folder(os.path.join(root, "query")),
        "gallery": read_market_folder(os.path.join(root, "bounding_box_test")),
    }


def load_csv(csv_path: str, image_root: str) -> list[Record]:
    """Records of a CSV list `pid,path[,camid]` (paths relative to image_root), TriNet's format.

    String pids are mapped to integers in sorted order; a missing camid is -1 (unknown).
    """
    if not os.path.isfile(csv_path):
        raise DatasetError(f"missing CSV list {csv_path}: expected rows 'pid,path[,camid]'")
    records, rows = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) not in (2, 3) or not row[0].strip() or not row[1].strip():
                raise DatasetError(
                    f"{csv_path}:{line_no}: expected 'pid,path[,camid]', got {','.join(row)!r}"
                )
            camid = -1
            if len(row) == 3:
                try:
                    camid = int(row[2])
                except ValueError:
                    raise DatasetError(
                        f"{csv_path}:{line_no}: camid {row[2]!r} is not an integer"
                    ) from None
            rows.append((row[0].strip(), row[1].strip(), camid))
    names = sorted({r[0] for r in rows})
    numeric = all(re.fullmatch(r"-?\d+", n) for n in names)
    pid_of = {n: (int(n) if numeric else i) for i, n in enumerate(names)}
    for pid, path, camid in rows:
        records.append(Record(os.path.join(image_root, path), pid_of[pid], camid))
    return records


def relabel(records: list[Record]) -> list[Record]:
    """Records with pids mapped to 0..N-1 in sorted order (training labels)."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [r._replace(pid=mapping[r.pid]) for r in records]


def _image_problem(path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    try:
        with Image.open(path) as im:  # reads the header only
            if im.format not in ("JPEG", "PNG"):
                return f"{im.format} is not JPEG or PNG"
            width, height = im.size
            if width * height > max_pixels:
                return f"its header claims {width}x{height} pixels, over the limit of {max_pixels}"
            im.load()  # a full decode: catches truncated files that only a header check passes
    except Exception as e:  # noqa: BLE001 - any failure means the image cannot be used
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def drop_unreadable(records: list[Record], threads: int = 8) -> list[Record]:
    """Records whose image decodes within the pixel limit; each other one is reported by path,
    with a count."""
    with ThreadPoolExecutor(threads) as pool:
        problems = list(pool.map(_image_problem, [r.path for r in records]))
    bad = [(r.path, p) for r, p in zip(records, problems) if p is not None]
    for path, problem in bad:
        logging.warning("left out unreadable image %s: %s", path, problem)
    if bad:
        logging.warning("left out %d unreadable or oversized image(s) of %d", len(bad), len(records))
    return [r for r, p in zip(records, problems) if p is None]


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


# ---------------------------------------------------------------------------- a run's data


def synthetic_cache_dir(num_ids: int) -> str:
    """Where the generated synthetic dataset lives between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "reid_tf", f"synthetic-v1-{num_ids}ids")


def ensure_synthetic(folder: str, num_ids: int) -> None:
    """Generate the synthetic dataset into `folder` unless it is already complete there."""
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return
    logging.info("generating the synthetic dataset (%d identities) in %s", num_ids, folder)
    make_synthetic_market(folder, num_ids=num_ids, seed=0)
    with open(done, "w") as f:
        f.write("ok\n")


def load_training_records(cfg: DataConfig) -> list[Record]:
    """The training records of the configured dataset, unreadable images left out."""
    if cfg.dataset == "csv":
        if not cfg.train_csv:
            raise DatasetError("--dataset=csv needs --train_csv=FILE (rows 'pid,path[,camid]')")
        records = load_csv(cfg.train_csv, cfg.data_dir)
    else:
        folder = cfg.data_dir
        if cfg.dataset == "synthetic":
            folder = folder or synthetic_cache_dir(cfg.synthetic_ids)
            ensure_synthetic(folder, cfg.synthetic_ids)
        elif not folder:
            raise DatasetError(f"--dataset={cfg.dataset} needs --data_dir=FOLDER")
        records = load_market1501(folder)["train"]
    if not records:
        raise DatasetError(f"no training images found for --dataset={cfg.dataset} in {cfg.data_dir!r}")
    return drop_unreadable(records)


def split_records(records: list[Record], cfg: DataConfig, seed: int) -> dict:
    """Train records (relabelled) and the validation / train-subset query-gallery sets."""
    train, val_query, val_gallery = split_validation(records, cfg.valid_ids, seed)
    subset = subset_ids(train, cfg.train_eval_ids, seed) if cfg.train_eval_ids else []
    train_query, train_gallery = query_gallery_split(subset, seed)
    return {
        "train": relabel(train),
        "valid": _cameras_for_unknown(val_query, val_gallery),
        "train_eval": _cameras_for_unknown(train_query, train_gallery),
    }


def _cameras_for_unknown(query, gallery):
    """Without cameras (a CSV list without camid), every other image of the identity is a match:
    query and gallery get different pseudo cameras so the same-camera rule removes nothing."""
    if any(r.camid != -1 for r in query + gallery):
        return query, gallery
    return [r._replace(camid=0) for r in query], [r._replace(camid=1) for r in gallery]
