"""What `python -m reid_tf.export` prints of what it wrote: a line a file, with its size and its
check against the model, or one line for a SavedModel; and the calibration beside it."""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from reid_tf import calibration, exported


def describe(path: str) -> str:
    """What an export wrote, a line a file: its size and, for a converted file, how far its
    embeddings are from the model's on the check images; one line for a SavedModel; then the
    calibration beside it."""
    line = _model_lines(path)
    if os.path.exists(os.path.join(path, calibration.FILE)):
        c = calibration.read(os.path.join(path, calibration.FILE))
        line += f"\n{calibration.FILE}: same person when the Euclidean distance is <= " + ", ".join(
            f"{v:.4f} ({k})" for k, v in c["thresholds"].items() if v is not None)
    return line


def _model_lines(path: str) -> str:
    meta = exported.read_metadata(path)
    checks = meta.get("verification") or {}
    if "files" in meta:  # the tracker's: each file checked in its own runtime
        return "\n".join(_file_line(path, name, checks.get(name)) for name in meta["files"])
    if "file" in meta:
        return _file_line(path, meta["file"], checks)
    size = sum(tf.io.gfile.stat(os.path.join(top, name)).length
               for top, _, names in tf.io.gfile.walk(path) for name in names)
    if meta.get("format") == "search":
        what = f"searches a gallery of {meta['gallery_size']} embeddings, {meta['k']} results a query"
    else:
        what = f"computes in {meta.get('precision', 'float32')}"
    return f"SavedModel: {size / 2**20:.1f} MiB; {what}; signatures {', '.join(_signatures(path))}"


def _file_line(folder: str, name: str, check: dict | None) -> str:
    line = f"{name}: {tf.io.gfile.stat(os.path.join(folder, name)).length / 2**20:.1f} MiB"
    if check:
        line += (f"; against the model on {check['images']} images: largest difference {check['max_abs']:.3g}"
                 f" ({check['relative']:.3g} of the largest value), smallest cosine similarity"
                 f" {check['min_cosine']:.6f}")
    return line


def _signatures(path: str) -> list[str]:
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return sorted(name for name in proto.meta_graphs[0].signature_def if not name.startswith("__"))
