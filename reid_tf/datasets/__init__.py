"""Datasets: one parser per published layout, all giving the same records (path, pid, camid);
several datasets joined into one training set; a run's training and validation records and a
dataset's test split.

| --dataset | layout |
|---|---|
| market1501, duke, cuhk03_np, synthetic | three folders of images named PPPP_cC... (`market.py`) |
| msmt17 | image folders and list files, V1 or V2 (`msmt17.py`) |
| csv | a list `pid,path[,camid]` (`csv_list.py`), training only |
"""

from __future__ import annotations

import os

from absl import logging

from reid_tf.config import DataConfig
from reid_tf.datasets.csv_list import load_csv
from reid_tf.datasets.market import MARKET_LAYOUT, load_market1501, parse_market_name, read_market_folder
from reid_tf.datasets.msmt17 import load_msmt17
from reid_tf.datasets.records import (
    DISTRACTOR_PID,
    IMAGE_EXTENSIONS,
    JUNK_PID,
    DatasetError,
    Record,
    drop_unreadable,
    offset,
    relabel,
)
from reid_tf.datasets.splits import cameras_for_unknown, query_gallery_split, split_validation, subset_ids
from reid_tf.synthetic import make_synthetic_market

__all__ = ["DISTRACTOR_PID", "IMAGE_EXTENSIONS", "JUNK_PID", "MARKET_LAYOUT", "DatasetError", "Record",
           "drop_unreadable", "load_csv", "load_market1501", "load_msmt17", "parse_market_name",
           "read_market_folder", "relabel", "split_validation", "query_gallery_split", "subset_ids",
           "dataset_entries", "load_dataset", "load_training_sets", "load_training_records", "split_records",
           "load_test_split", "synthetic_cache_dir", "ensure_synthetic"]


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


def dataset_entries(cfg: DataConfig) -> list[tuple[str, str]]:
    """(dataset, folder) pairs of `--dataset=A,B --data_dir=X,Y`, in order."""
    names = [n.strip() for n in cfg.dataset.split(",")]
    folders = [f.strip() for f in cfg.data_dir.split(",")] if cfg.data_dir else [""] * len(names)
    if len(folders) != len(names):
        raise DatasetError(
            f"--dataset names {len(names)} dataset(s) ({cfg.dataset}) but --data_dir gives {len(folders)}"
            f" folder(s) ({cfg.data_dir}): give one folder per dataset, comma-separated, in the same order")
    if len(set(names)) != len(names) and "csv" not in names:
        logging.warning("--dataset=%s names a dataset twice: its identities count twice", cfg.dataset)
    return list(zip(names, folders))


def load_dataset(name: str, folder: str, cfg: DataConfig) -> dict[str, list[Record]]:
    """Train, query and gallery records of one dataset (a CSV list has training records only)."""
    if name == "csv":
        if not cfg.train_csv:
            raise DatasetError("--dataset=csv needs --train_csv=FILE (rows 'pid,path[,camid]')")
        return {"train": load_csv(cfg.train_csv, folder), "query": [], "gallery": []}
    if name == "synthetic":
        folder = folder or synthetic_cache_dir(cfg.synthetic_ids)
        ensure_synthetic(folder, cfg.synthetic_ids)
    elif not folder:
        raise DatasetError(f"--dataset={name} needs --data_dir=FOLDER (see the README's datasets table)")
    if name == "msmt17":
        return load_msmt17(folder, cfg.msmt17_merge_val)
    if name in ("market1501", "duke", "cuhk03_np", "synthetic"):
        return load_market1501(folder, name, cfg.cuhk03_labels)
    raise DatasetError(f"--dataset={name}: one of market1501, duke, cuhk03_np, msmt17, csv, synthetic")


def load_training_sets(cfg: DataConfig) -> list[list[Record]]:
    """Each configured dataset's training records, unreadable images left out, moved to
    identities and cameras of their own (offsets) so that no two datasets share one."""
    sets, pid_offset, camid_offset = [], 0, 0
    for name, folder in dataset_entries(cfg):
        records = load_dataset(name, folder, cfg)["train"]
        if not records:
            raise DatasetError(f"no training images found for --dataset={name} in --data_dir={folder!r}")
        records = offset(drop_unreadable(records), pid_offset, camid_offset)
        sets.append(records)
        pid_offset = max(r.pid for r in records) + 1
        camid_offset = max(r.camid for r in records) + 1
    return sets


def load_training_records(cfg: DataConfig) -> list[Record]:
    """The training records of every configured dataset, as one list."""
    return [r for records in load_training_sets(cfg) for r in records]


def split_records(sets: list[list[Record]], cfg: DataConfig, seed: int) -> dict:
    """Train records (relabelled) and the validation / train-subset query-gallery sets. The
    validation identities are held out of one dataset: `--valid_dataset`, or the first."""
    names = [name for name, _ in dataset_entries(cfg)]
    if cfg.valid_dataset and cfg.valid_dataset not in names:
        raise DatasetError(f"--valid_dataset={cfg.valid_dataset} is not one of --dataset={cfg.dataset}")
    held = names.index(cfg.valid_dataset) if cfg.valid_dataset else 0
    kept, val_query, val_gallery = split_validation(sets[held], cfg.valid_ids, seed)
    train = [r for i, records in enumerate(sets) for r in (kept if i == held else records)]
    subset = subset_ids(train, cfg.train_eval_ids, seed) if cfg.train_eval_ids else []
    train_query, train_gallery = query_gallery_split(subset, seed)
    return {
        "train": relabel(train),
        "valid": cameras_for_unknown(val_query, val_gallery),
        "train_eval": cameras_for_unknown(train_query, train_gallery),
    }


def load_test_split(cfg: DataConfig) -> tuple[list[Record], list[Record]]:
    """The query and gallery records of the (first) configured dataset, unreadable ones left out."""
    name, folder = dataset_entries(cfg)[0]
    if name == "csv":
        raise DatasetError("--dataset=csv has no query/gallery split: score a dataset that has one"
                           " (--dataset=market1501|duke|cuhk03_np|msmt17 --data_dir=FOLDER)")
    splits = load_dataset(name, folder, cfg)
    return drop_unreadable(splits["query"]), drop_unreadable(splits["gallery"])
