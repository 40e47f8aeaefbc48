"""The query and gallery sets that `tools/eval.py` scores: a dataset's test split, two identity
folders given apart, or a run's own data; embedded by an export."""

from __future__ import annotations

import dataclasses

from reid_tf import config as config_lib
from reid_tf import datasets, evaluate, exported
from reid_tf.errors import ReidError


class EvalError(ReidError, ValueError):
    """What cannot be scored as asked; the message is one line that says what to give instead."""


def data_config(model: exported.Exported, dataset: str = "", data_dir: str = "",
                cuhk03_labels: str | None = None) -> config_lib.DataConfig:
    """The dataset to score: `dataset`/`data_dir`, else the one the export was trained on."""
    trained = model.metadata.get("config", {}).get("data", {})
    cfg = config_lib.RunConfig.from_dict({"data": trained}).data
    labels = cuhk03_labels or cfg.cuhk03_labels
    if dataset:
        return dataclasses.replace(cfg, dataset=dataset, data_dir=data_dir, cuhk03_labels=labels)
    if not trained:
        raise EvalError(f"{model.path} does not record its dataset: give --dataset and --data_dir")
    first = cfg.dataset.split(",")[0]  # a run of several datasets: its first
    cfg = dataclasses.replace(cfg, dataset=first, data_dir=data_dir or cfg.data_dir.split(",")[0],
                              cuhk03_labels=labels)
    where = cfg.data_dir or datasets.synthetic_cache_dir(cfg.synthetic_ids, cfg.synthetic_domain)
    print(f"scoring on the test split of --dataset={cfg.dataset} in {where}, the model's own dataset"
          " (--dataset/--data_dir choose another)")
    return cfg


def test_records(model: exported.Exported, dataset: str = "", data_dir: str = "", cuhk03_labels: str | None = None,
                 query_dir: str = "", gallery_dir: str = "") -> tuple[list, list]:
    """The query and gallery records: two folders of identity folders given apart, else a dataset's
    test split (`data_config`)."""
    if bool(query_dir) != bool(gallery_dir):
        raise EvalError("give both --query_dir and --gallery_dir (each a folder per identity), or neither")
    if query_dir:
        if dataset or data_dir:
            raise EvalError("--query_dir/--gallery_dir replace --dataset/--data_dir: give one or the other")
        query, gallery = datasets.identity_folders.query_and_gallery_folders(query_dir, gallery_dir)
        return datasets.drop_unreadable(query), datasets.drop_unreadable(gallery)
    return datasets.load_test_split(data_config(model, dataset, data_dir, cuhk03_labels))


def embed_split(model: exported.Exported, query: list, gallery: list, batch_size: int = 64,
                flip: bool = False) -> dict:
    """The records, features, identities and cameras of query and gallery."""
    out = {}
    for name, records in (("query", query), ("gallery", gallery)):
        out[f"{name}_records"] = records
        feats, pids, cams = evaluate.embed_records(model.embed, records, model.height, model.width,
                                                   batch_size, flip, model.crop)
        out.update({f"{name}_features": feats, f"{name}_pids": pids, f"{name}_camids": cams})
    return out


def files_of(arrays: dict) -> dict:
    """The query and gallery file names, where the images are known (not from a features file)."""
    if "query_records" not in arrays:
        return {}
    return {f"{n}_files": [r.path for r in arrays[f"{n}_records"]] for n in ("query", "gallery")}
