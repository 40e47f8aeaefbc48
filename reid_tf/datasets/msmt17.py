"""MSMT17 (Wei et al. 2018, 4,101 identities, 15 cameras): images under train/ and test/ (V1) or
mask_train_v2/ and mask_test_v2/ (V2), split by the list files `list_{train,val,query,gallery}.txt`
of lines `DIR/FILE LABEL`; the camera is the file name's third field."""

from __future__ import annotations

import os

from reid_tf.datasets.records import DatasetError, Record
from reid_tf.datasets.registry import register

VERSIONS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
LISTS = {"train": "list_train.txt", "val": "list_val.txt", "query": "list_query.txt",
         "gallery": "list_gallery.txt"}
LAYOUT = ("train/ and test/ (V1) or mask_train_v2/ and mask_test_v2/ (V2) beside list_train.txt,"
          " list_val.txt, list_query.txt and list_gallery.txt of lines 'DIR/FILE LABEL'"
          " (0000/0000_000_01_0303morning_0015_0.jpg 0)")


def read_list(list_path: str, image_dir: str) -> list[Record]:
    """Records of one list file. Labels move up by one, so that no identity is 0 (the
    distractor pid of Market-1501); cameras are 1-based, as in the file names."""
    records = []
    with open(list_path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                relative, label = line.split()
                camid = int(os.path.basename(relative).split("_")[2])
                records.append(Record(os.path.join(image_dir, relative), int(label) + 1, camid))
            except (ValueError, IndexError):
                raise DatasetError(f"{list_path}:{line_no}: expected 'DIR/FILE LABEL' with files named"
                                   f" PPPP_NNN_CC_..., got {line.strip()!r}") from None
    return records


@register("msmt17", "V1: train/, test/; V2: mask_train_v2/, mask_test_v2/; and list_train.txt, list_val.txt,"
          " list_query.txt, list_gallery.txt of lines 'DIR/FILE LABEL' (camera: the file name's third field)",
          "MSMT17 (Wei et al. 2018: 4,101 identities, 15 cameras; by request to the authors)")
def _msmt17(folder: str, cfg) -> dict[str, list[Record]]:
    return load_msmt17(folder, cfg.msmt17_merge_val)


def load_msmt17(root: str, merge_val: bool = True) -> dict[str, list[Record]]:
    """Train, query and gallery records of MSMT17 V1 or V2 (whichever folders `root` holds).
    `merge_val` trains on list_val.txt too, as torchreid and fast-reid do."""
    version = next((v for v, dirs in VERSIONS.items()
                    if all(os.path.isdir(os.path.join(root, d)) for d in dirs)), None)
    missing = [name for name in LISTS.values() if not os.path.isfile(os.path.join(root, name))]
    if version is None or missing:
        what = "no train/ and test/ folders in" if version is None else f"no {missing[0]} in"
        if not os.path.isdir(root):
            what = "missing dataset folder"
        raise DatasetError(f"{what} {root}: --dataset=msmt17 expects --data_dir={root} to hold {LAYOUT}")
    train_dir, test_dir = (os.path.join(root, d) for d in VERSIONS[version])
    splits = {name: read_list(os.path.join(root, file), train_dir if name in ("train", "val") else test_dir)
              for name, file in LISTS.items()}
    val = splits.pop("val")
    if merge_val:
        splits["train"] += val
    return splits
