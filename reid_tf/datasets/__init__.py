"""Datasets by name (the registry: `REGISTRY[name]` has its loader and layout), all giving the same
records (path, pid, camid); several datasets joined into one training set; a run's training and
validation records and a dataset's test split.

A dataset is one module that registers its loader (`registry.register`) and one import below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from absl import logging

from reid_tf.datasets import (  # noqa: F401 - each registers its layouts
    csv_list,
    generated,
    identity_folders,
    market,
    msmt17,
    unlabeled,
)
from reid_tf.datasets.generated import ensure_synthetic, synthetic_cache_dir
from reid_tf.datasets.records import DatasetError, Record, drop_unreadable, offset, relabel
from reid_tf.datasets.registry import REGISTRY, DatasetSpec
from reid_tf.datasets.splits import SPLITS, split_validation, subset_ids

if TYPE_CHECKING:  # the settings are read, never built, here: no import of config at run time
    from reid_tf.config import DataConfig

__all__ = ["REGISTRY", "DatasetError", "DatasetSpec", "Record", "dataset_entries", "ensure_synthetic",
           "load_dataset", "load_test_split", "load_training_records", "load_training_sets", "split_records",
           "synthetic_cache_dir"]


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
    """Train, query and gallery records of one registered dataset (`cfg`: its options, e.g. CUHK03-NP's
    label set)."""
    spec = REGISTRY.lookup(name)
    if spec.needs_folder and not folder:
        raise DatasetError(f"--dataset={name} needs --data_dir=FOLDER holding {spec.layout}")
    return spec.load(folder, cfg)


def load_training_sets(cfg: DataConfig) -> list[list[Record]]:
    """Each configured dataset's training records, unreadable images left out, moved to
    identities and cameras of their own (offsets) so that no two datasets share one."""
    sets, pid_offset, camid_offset = [], 0, 0
    for name, folder in dataset_entries(cfg):
        records = load_dataset(name, folder, cfg)["train"]
        if not records:
            raise DatasetError(f"no training images found for --dataset={name} in --data_dir={folder!r}")
        if all(r.pid < 0 for r in records):
            raise DatasetError(f"--dataset={name} (--data_dir={folder}) has no identity labels to train on: adapt"
                               f" to it instead (--adapt_to={name} --adapt_data_dir={folder})")
        records = offset(drop_unreadable(records), pid_offset, camid_offset)
        sets.append(records)
        pid_offset = max(r.pid for r in records) + 1
        camid_offset = max(r.camid for r in records) + 1
    return sets


def load_training_records(cfg: DataConfig) -> list[Record]:
    """The training records of every configured dataset, as one list."""
    return [r for records in load_training_sets(cfg) for r in records]


def split_records(sets: list[list[Record]], cfg: DataConfig, seed: int) -> dict:
    """Train records (relabelled) and the validation / train-subset query-gallery sets, both
    made by --valid_split. The validation identities are held out of one dataset:
    `--valid_dataset`, or the first."""
    names = [name for name, _ in dataset_entries(cfg)]
    if cfg.valid_dataset and cfg.valid_dataset not in names:
        raise DatasetError(f"--valid_dataset={cfg.valid_dataset} is not one of --dataset={cfg.dataset}")
    held = names.index(cfg.valid_dataset) if cfg.valid_dataset else 0
    num_ids = len({r.pid for r in sets[held]})
    kept, val_query, val_gallery = split_validation(
        sets[held], cfg.held_out_ids(num_ids), seed, cfg.valid_split)
    train = [r for i, records in enumerate(sets) for r in (kept if i == held else records)]
    subset = subset_ids(train, cfg.train_eval_ids, seed) if cfg.train_eval_ids else []
    train_query, train_gallery = SPLITS[cfg.valid_split](subset, seed)
    return {
        "train": relabel(train),
        "valid": (val_query, val_gallery),
        "train_eval": (train_query, train_gallery),
    }


def load_test_split(cfg: DataConfig) -> tuple[list[Record], list[Record]]:
    """The query and gallery records of the (first) configured dataset, unreadable ones left out."""
    name, folder = dataset_entries(cfg)[0]
    spec = REGISTRY.get(name)
    if spec is not None and not spec.test_split:
        others = "|".join(n for n, s in REGISTRY.items() if s.test_split and s.needs_folder)
        raise DatasetError(f"--dataset={name} has no query/gallery split: score a dataset that has one"
                           f" (--dataset={others} --data_dir=FOLDER)")
    splits = load_dataset(name, folder, cfg)
    return drop_unreadable(splits["query"]), drop_unreadable(splits["gallery"])
