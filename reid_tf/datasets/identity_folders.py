"""A folder per identity (`DATA_DIR/<identity>/<image>`, the layout of Keras'
`image_dataset_from_directory` and torchvision's `ImageFolder`), cameras optional as
`DATA_DIR/<identity>/<camera>/<image>`: a user's own data. Without cameras every record's camid is
-1, which only `--protocol=no_cameras` (or the original's) scores."""

from __future__ import annotations

import os
import re

from absl import logging

from reid_tf.datasets.records import IMAGE_EXTENSIONS, DatasetError, Record
from reid_tf.datasets.registry import register

LAYOUT = ("a folder per identity holding its images (DATA_DIR/<identity>/<image>), or a folder per camera"
          " inside it (DATA_DIR/<identity>/<camera>/<image>); .jpg, .jpeg or .png in any case")


def _entries(folder: str) -> list[str]:
    """The folder's names, hidden ones (.DS_Store, .ipynb_checkpoints) left out, sorted."""
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _images(folder: str) -> list[str]:
    """The image files of a leaf folder; anything else in it is refused, named."""
    names = _entries(folder)
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) or not name.lower().endswith(IMAGE_EXTENSIONS):
            kind = "a folder" if os.path.isdir(path) else "a stray file"
            raise DatasetError(f"{path} is {kind} where images ({', '.join(IMAGE_EXTENSIONS)}) are expected:"
                               f" move it out of {folder} (the layout: {LAYOUT})")
    if not names:
        raise DatasetError(f"{folder} has no images: put the identity's images there or remove the folder")
    return [os.path.join(folder, n) for n in names]


def _numbered(names: list[str]) -> dict[str, int]:
    """Names to ints: their own value where every name is a number (0001 -> 1), else the sorted order."""
    numeric = all(re.fullmatch(r"\d+", n) for n in names)
    return {n: (int(n) if numeric else i) for i, n in enumerate(sorted(names))}


def _layout(root: str) -> tuple[list[str], dict[str, list[str]]]:
    """The identity names of `root` and, per identity that has them, its camera folders; a stray
    file or a mix of the two layouts is refused, named."""
    if not os.path.isdir(root):
        raise DatasetError(f"missing folder {root}: expected {LAYOUT}")
    names = _entries(root)
    stray = [n for n in names if not os.path.isdir(os.path.join(root, n))]
    if stray:
        raise DatasetError(f"{os.path.join(root, stray[0])} is a file where a folder per identity is expected"
                           f" ({len(stray)} such file(s)): move it out of {root}")
    if not names:
        raise DatasetError(f"{root} has no identity folders: expected {LAYOUT}")
    cameras = {n: [c for c in _entries(os.path.join(root, n)) if os.path.isdir(os.path.join(root, n, c))]
               for n in names}
    cameras = {n: c for n, c in cameras.items() if c}
    if cameras and len(cameras) != len(names):
        plain = sorted(set(names) - set(cameras))[0]
        raise DatasetError(f"{os.path.join(root, plain)} holds images but {os.path.join(root, min(cameras))}"
                           " holds camera folders: use one layout for every identity")
    return names, cameras


def _read(root: str, names: list[str], cameras: dict[str, list[str]], pid_of: dict[str, int],
          cam_of: dict[str, int]) -> list[Record]:
    records = []
    for name in names:
        folder = os.path.join(root, name)
        if name in cameras:
            records += [Record(p, pid_of[name], cam_of[c]) for c in _entries(folder)
                        for p in _images(os.path.join(folder, c))]
        else:
            records += [Record(p, pid_of[name], -1) for p in _images(folder)]
    return records


def read_identity_folders(*roots: str) -> list[list[Record]]:
    """Records of each DATA_DIR/<identity>/[<camera>/]<image>, by identity name then file name; a
    name is the same identity (and camera) in every root."""
    layouts = [_layout(root) for root in roots]
    pid_of = _numbered(sorted({n for names, _ in layouts for n in names}))
    cam_of = _numbered(sorted({c for _, cams in layouts for cs in cams.values() for c in cs}))
    return [_read(root, *layout, pid_of, cam_of) for root, layout in zip(roots, layouts)]


def query_gallery(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """Every identity's first image per camera (by file name) a query, the rest the gallery; an
    identity with one image has nothing to find, so it stays in the gallery (a distractor)."""
    counts: dict[int, int] = {}
    for r in records:
        counts[r.pid] = counts.get(r.pid, 0) + 1
    single = sorted({r.pid for r in records if counts[r.pid] == 1})
    if single:
        logging.warning("%d identit%s with one image kept for the gallery only (pids %s)", len(single),
                        "y" if len(single) == 1 else "ies", ", ".join(map(str, single[:10]))
                        + (" ..." if len(single) > 10 else ""))
    seen: set[tuple[int, int]] = set()
    query, gallery = [], []
    for r in records:
        first = counts[r.pid] > 1 and (r.pid, r.camid) not in seen
        seen.add((r.pid, r.camid))
        (query if first else gallery).append(r)
    return query, gallery


@register("folders", LAYOUT, "your own data", needs_folder=True)
def _folders(folder: str, cfg) -> dict[str, list[Record]]:
    records = read_identity_folders(folder)[0]
    query, gallery = query_gallery(records)
    return {"train": records, "query": query, "gallery": gallery}


def query_and_gallery_folders(query_dir: str, gallery_dir: str) -> tuple[list[Record], list[Record]]:
    """A query folder and a gallery folder given apart, both in this layout; an identity (a camera)
    is the same in both when its folder has the same name."""
    query, gallery = read_identity_folders(query_dir, gallery_dir)
    return query, gallery
