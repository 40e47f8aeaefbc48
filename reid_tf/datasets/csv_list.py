"""CSV lists `pid,path[,camid]` (the TriNet reference code's format): training records only."""

from __future__ import annotations

import csv
import os
import re

from reid_tf.datasets.records import DatasetError, Record
from reid_tf.datasets.registry import register


@register("csv", "the image root of the list --train_csv=FILE, rows 'pid,path[,camid]' (TriNet's format)",
          "any list", test_split=False, needs_folder=False)
def _csv(folder: str, cfg) -> dict[str, list[Record]]:
    if not cfg.train_csv:
        raise DatasetError("--dataset=csv needs --train_csv=FILE (rows 'pid,path[,camid]')")
    return {"train": load_csv(cfg.train_csv, folder), "query": [], "gallery": []}


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
