"""Images without identity labels (`DATA_DIR/<image>`, or a folder per camera `DATA_DIR/<camera>/<image>`):
a site's footage, for adaptation (`--adapt_to=unlabeled`) only. Every record's pid is -1; its camid
is its camera folder's (in sorted order), or -1."""

from __future__ import annotations

import os

from reid_tf.datasets.identity_folders import _entries, _images
from reid_tf.datasets.records import DatasetError, Record
from reid_tf.datasets.registry import register

LAYOUT = ("images with no identity labels (DATA_DIR/<image>, or DATA_DIR/<camera>/<image>); .jpg, .jpeg or"
          " .png in any case")


@register("unlabeled", LAYOUT, "your own footage, for --adapt_to", test_split=False)
def _unlabeled(folder: str, cfg) -> dict[str, list[Record]]:
    if not os.path.isdir(folder):
        raise DatasetError(f"missing folder {folder}: expected {LAYOUT}")
    cameras = [n for n in _entries(folder) if os.path.isdir(os.path.join(folder, n))]
    if cameras:
        records = [Record(p, -1, i) for i, c in enumerate(cameras) for p in _images(os.path.join(folder, c))]
        if len(cameras) != len(_entries(folder)):
            raise DatasetError(f"{folder} holds both camera folders and files: use one layout ({LAYOUT})")
    else:
        records = [Record(p, -1, -1) for p in _images(folder)]
    return {"train": records, "query": [], "gallery": []}
