"""Layouts named like Market-1501 (PPPP_cC...): Market-1501, DukeMTMC-reID, CUHK03-NP (Zhong et
al.'s new protocol) and the synthetic set. Each is three folders of images; the file name gives
the identity and the camera."""

from __future__ import annotations

import os
import re

from absl import logging

from reid_tf.datasets.records import IMAGE_EXTENSIONS, DatasetError, Record
from reid_tf.datasets.registry import register

# Market: 0002_c1s1_000451_03.jpg, -1_c1s1_000000_00.jpg; Duke: 0005_c2_f0046985.jpg;
# CUHK03-NP: 0001_c1_1.png.
_NAME_PATTERN = re.compile(r"^(-1|\d+)_c(\d+)")
SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAMES = {
    "market1501": "PPPP_cCsS_FFFFFF_NN.jpg (0002_c1s1_000451_03.jpg; -1 junk, 0000 distractors)",
    "duke": "PPPP_cC_fFFFFFFF.jpg (0005_c2_f0046985.jpg)",
    "cuhk03_np": "PPPP_cC_N.png (0001_c1_1.png)",
    "synthetic": "PPPP_cCsS_FFFFFF_NN.jpg, as Market-1501",
}
MARKET_LAYOUT = "bounding_box_train/, query/ and bounding_box_test/ of images named " + NAMES["market1501"]


def layout(name: str) -> str:
    """The folders and file names a layout expects, in words."""
    folders = "bounding_box_train/, query/ and bounding_box_test/"
    if name == "cuhk03_np":
        folders = "detected/ and labeled/ (--cuhk03_labels), each holding " + folders
    return f"{folders} of images named {NAMES[name]}"


def parse_market_name(name: str) -> tuple[int, int] | None:
    """(pid, camid) from a Market-1501 / Duke / CUHK03-NP file name, or None when it does not match."""
    m = _NAME_PATTERN.match(name)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def read_market_folder(folder: str) -> list[Record]:
    """Records of one split folder (e.g. `query/`), sorted by file name; odd names are reported."""
    if not os.path.isdir(folder):
        raise DatasetError(f"missing folder {folder}: expected a Market-1501 layout ({MARKET_LAYOUT})")
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


@register("market1501", layout("market1501"),
          "Zheng et al. 2015, Market-1501-v15.09.15.zip (the authors' page)")
def _market1501(folder: str, cfg) -> dict[str, list[Record]]:
    return load_market1501(folder, "market1501")


@register("duke", layout("duke"), "DukeMTMC-reID (Zheng et al. 2017; withdrawn by its authors in 2019)")
def _duke(folder: str, cfg) -> dict[str, list[Record]]:
    return load_market1501(folder, "duke")


@register("cuhk03_np", layout("cuhk03_np"),
          "CUHK03-NP, the new protocol of Zhong et al. 2017 (their re-ranking repository)")
def _cuhk03_np(folder: str, cfg) -> dict[str, list[Record]]:
    return load_market1501(folder, "cuhk03_np", cfg.cuhk03_labels)


def load_market1501(root: str, name: str = "market1501",
                    cuhk03_labels: str = "detected") -> dict[str, list[Record]]:
    """Train, query and gallery records of a folder in a Market-like layout.

    Training records drop junk (-1) and distractor (0) images; pids are kept as in the files
    (use `relabel` before training). Query and gallery keep everything: evaluation applies
    the protocol's exclusions.
    """
    folder = os.path.join(root, cuhk03_labels) if name == "cuhk03_np" else root
    missing = [sub for sub in SPLITS.values() if not os.path.isdir(os.path.join(folder, sub))]
    if missing:
        where = "missing dataset folder" if not os.path.isdir(root) else f"no {missing[0]}/ in"
        raise DatasetError(f"{where} {folder}: --dataset={name} expects --data_dir={root} to hold"
                           f" {layout(name)}")
    splits = {split: read_market_folder(os.path.join(folder, sub)) for split, sub in SPLITS.items()}
    splits["train"] = [r for r in splits["train"] if r.pid > 0]
    return splits
