"""An export's contract, in one place: where a run's newest export is, what its metadata file says,
and any format opened as one embed function of pixels with the framing its model was trained
on. Scoring, the gallery tool and the benchmarks open exports here and know no format.

Formats: a SavedModel folder (TF Serving's), `model.tflite` (LiteRT), `model.onnx`, a tracker
ONNX (`<backbone>.onnx`, NCHW ImageNet-standardised input), each beside `reid_config.json`; the
Keras model itself comes back from a float32 SavedModel (`keras_model`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from reid_tf.errors import ReidError

METADATA = "reid_config.json"  # beside every export's model (in assets/ for a SavedModel)
RUN_EXPORTS = "export"  # a training run's own exports: RUN/export/<step>/


class ExportedModelError(ReidError, RuntimeError):
    """An export that cannot be found or opened; the message names the path and what to do."""


def find(path: str) -> str:
    """The exported model `path` names: a model itself, a version folder, or a training run's
    folder (its newest export/<step>/)."""
    exports = os.path.join(path, RUN_EXPORTS)
    if tf.io.gfile.exists(os.path.join(path, "config.json")) and tf.io.gfile.isdir(exports):
        versions = sorted((int(v.rstrip("/")) for v in tf.io.gfile.listdir(exports) if v.rstrip("/").isdigit()),
                          reverse=True)
        if not versions:
            raise ExportedModelError(f"{path} is a run folder without an export: export it first"
                                     " (python -m reid_tf.export --output_dir=RUN --export_dir=DIR)")
        return os.path.join(exports, str(versions[0]))
    if not tf.io.gfile.exists(path):
        raise ExportedModelError(f"{path} not found: --model takes an export or a training run's folder")
    return path


def read_metadata(path: str) -> dict:
    """The metadata an export carries (input size, framing, the run's configuration), {} if none."""
    folder = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
    for candidate in (os.path.join(folder, "assets", METADATA), os.path.join(folder, METADATA)):
        if tf.io.gfile.exists(candidate):
            with tf.io.gfile.GFile(candidate) as f:
                return json.load(f)
    return {}


@dataclasses.dataclass
class Exported:
    """An opened export: `embed(pixels [N, H, W, 3] float32 RGB in [0, 255]) -> [N, D]` float32,
    for images framed as `crop` at `height` x `width` (`images.frame`)."""

    path: str
    format: str
    metadata: dict
    embed: Callable[[np.ndarray], np.ndarray]
    height: int
    width: int
    crop: str = "none"

    @property
    def identity(self) -> str:
        """What tells this model from another (gallery indexes record it)."""
        return identity_of(self.metadata)


def identity_of(meta: dict) -> str:
    """A model's identity from its metadata: its run's configuration, step and embedding size, the
    same for every format exported from one checkpoint."""
    return json.dumps({k: meta.get(k) for k in ("backbone", "step", "embedding_dim", "input_height", "input_width",
                                                  "config")}, sort_keys=True)


def _size_and_crop(meta: dict, path: str) -> tuple[int, int, str]:
    if "input_height" not in meta:
        raise ExportedModelError(f"{path}: no {METADATA} beside it gives its input size")
    crop = meta.get("config", {}).get("data", {}).get("crop", "none")
    return int(meta["input_height"]), int(meta["input_width"]), crop


def _saved_model(path: str, meta: dict) -> Exported:
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1]["images"]

    def embed(images):
        return signature(images=tf.convert_to_tensor(images, tf.float32))["embeddings"].numpy()

    embed.loaded = loaded  # keep the SavedModel alive with the function
    crop = meta.get("config", {}).get("data", {}).get("crop", "none")
    return Exported(path, "saved_model", meta, embed, int(spec.shape[1]), int(spec.shape[2]), crop)


def open_export(path: str, threads: int | None = None) -> Exported:
    """Any exported model (a SavedModel folder, a .tflite or .onnx file, or the version folder
    holding one) as an `Exported`."""
    from reid_tf import convert

    path = find(path)
    if tf.io.gfile.isdir(path) and tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return _saved_model(path, read_metadata(path))
    if tf.io.gfile.isdir(path):
        inside = sorted(os.path.join(path, n) for n in tf.io.gfile.listdir(path)
                        if n.endswith((".tflite", ".onnx")) and not n.endswith("_raw255.onnx"))
        inside.sort(key=lambda p: not p.endswith(".onnx"))  # a tracker's ONNX before its LiteRT file
        if not inside:
            raise ExportedModelError(f"{path} holds no saved_model.pb, .tflite or .onnx model")
        path = inside[0]
    suffix = os.path.splitext(path)[1]
    if suffix not in (".tflite", ".onnx") or not tf.io.gfile.exists(path):
        raise ExportedModelError(f"{path}: not an exported model (a SavedModel folder, .tflite or .onnx)")
    meta = read_metadata(path)
    height, width, crop = _size_and_crop(meta, path)
    tracker = meta.get("format") == "tracker"
    try:
        if suffix == ".tflite":
            run, fmt = convert.tflite_embed_fn(path, threads), "tflite"
        elif tracker:
            from reid_tf.runtimes import tracker_onnx_run

            run, fmt = tracker_onnx_run(path, threads), "tracker"
        else:
            run, fmt = convert.onnx_embed_fn(path, threads), "onnx"
    except convert.ConversionError as e:
        raise ExportedModelError(str(e)) from None

    def embed(images):
        images = np.asarray(images, np.float32)
        if tracker:  # the tracker's input: ImageNet-standardised, NCHW for ONNX, NHWC for LiteRT
            from reid_tf.runtimes import standardised

            images = standardised(images) if suffix == ".onnx" else standardised(images).transpose(0, 2, 3, 1)
        return np.asarray(run(images), np.float32)

    return Exported(path, fmt, meta, embed, height, width, crop)


def keras_model(path: str):
    """The Keras model inside a float32 SavedModel export (rebuilt from the configuration it
    carries, its weights read from the SavedModel's variables), for what needs more than the
    embeddings: activation maps. LiteRT, ONNX and reduced-precision (frozen) exports have none."""
    from reid_tf import config as config_lib
    from reid_tf import model as model_lib

    path = find(path)
    variables = os.path.join(path, "variables", "variables")
    meta = read_metadata(path)
    frozen = meta.get("precision", "float32") != "float32"
    if not tf.io.gfile.exists(variables + ".index") or "config" not in meta or frozen:
        raise ExportedModelError(
            f"{path} does not carry the Keras model (only a float32 SavedModel export does; LiteRT,"
            " ONNX and bfloat16/float16 exports do not): point --model at one")
    model = model_lib.build_run_model(config_lib.RunConfig.from_dict(meta["config"]), backbone_weights="none")
    saved = {name for name, _ in tf.train.list_variables(variables)}
    if any(name.startswith("model_variables/") for name in saved):  # signatures.ServingModule's list
        checkpoint = tf.train.Checkpoint(model_variables=model_lib.tracked_variables(model))
    else:  # exports before it tracked the Keras model itself
        checkpoint = tf.train.Checkpoint(model=model)
    checkpoint.read(variables).expect_partial().assert_existing_objects_matched()
    return model
