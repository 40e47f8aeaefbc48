"""The dataset registry: each layout's module registers its name with its loader and a description
of what --data_dir holds, which the trainer, tools/eval.py, --help and the error messages read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from reid_tf.datasets.records import DatasetError, Record
from reid_tf.registry import Registry

Splits = dict[str, list[Record]]  # "train", "query", "gallery"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset layout: load(folder, data_config) -> splits, and what the folder holds."""

    name: str
    load: Callable[[str, object], Splits]
    layout: str  # what --data_dir holds, in words
    source: str  # where the dataset comes from
    test_split: bool = True  # has query/gallery for tools/eval.py
    needs_folder: bool = True  # False: generated or given by another flag


REGISTRY: Registry[DatasetSpec] = Registry("dataset", "--dataset", DatasetError)


def register(name: str, layout: str, source: str, test_split: bool = True, needs_folder: bool = True):
    """Decorator of a loader: adds the dataset `name` to the registry."""
    def add(load: Callable[[str, object], Splits]) -> Callable[[str, object], Splits]:
        REGISTRY.register(name, DatasetSpec(name, load, layout, source, test_split, needs_folder))
        return load
    return add
