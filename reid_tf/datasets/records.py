"""What every dataset layout gives: records (path, pid, camid), the one error type, and the check
that leaves unreadable images out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from absl import logging
from PIL import Image

from reid_tf.constants import DISTRACTOR_PID, JUNK_PID, MAX_IMAGE_PIXELS  # noqa: F401 - named here too
from reid_tf.errors import ReidError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DatasetError(ReidError, ValueError):
    """Bad dataset input; the message is one line naming the file or folder and what to do."""


class Record(NamedTuple):
    path: str
    pid: int
    camid: int


def relabel(records: list[Record]) -> list[Record]:
    """Records with pids mapped to 0..N-1 in sorted order (training labels)."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [r._replace(pid=mapping[r.pid]) for r in records]


def offset(records: list[Record], pid_offset: int, camid_offset: int) -> list[Record]:
    """Records moved to identities and cameras of their own, beside another dataset's."""
    return [r._replace(pid=r.pid + pid_offset, camid=r.camid + camid_offset) for r in records]


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
