"""Exports of a training run's checkpoint under DIR/<version>/, the layout TF Serving watches: a
SavedModel (pixels or JPEG/PNG bytes in, embeddings out), LiteRT, ONNX, the backbone's weights.
Each version is written beside its destination and renamed into place, so a server never sees
a half-written one; its metadata file (`exported.METADATA`) says how to feed it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf import (
    backbones,
    convert,
    data,
    datasets,
    export_common,
    exported,
    search_export,
    signatures,
    tracker_export,
    versions,
)
from reid_tf import calibration as calibration_lib
from reid_tf import config as config_lib
from reid_tf import model as model_lib
from reid_tf import run_dir as run_dir_lib
from reid_tf.config import MAX_IMAGE_PIXELS, MAX_IMAGES_PER_REQUEST
from reid_tf.export_common import copy_in, export_metadata  # noqa: F401 - public here too
from reid_tf.export_summary import describe  # noqa: F401 - public here too
from reid_tf.registry import Registry
from reid_tf.versions import ExportError


def export_saved_model(
    model: keras.Model, config: config_lib.RunConfig, export_dir: str, version: int,
    step: int, overwrite: bool = False, max_images: int = MAX_IMAGES_PER_REQUEST,
    max_pixels: int = MAX_IMAGE_PIXELS, precision: str = "float32", built_from_config: bool = False,
) -> str:
    """Write the model as DIR/<version>/ with `serving_default` (pixels) and `serving_bytes`,
    computing in `precision` (`built_from_config`: as `copy_in`)."""
    clone = copy_in(model, config, precision, built_from_config)

    def write(folder):
        # The asset file must exist while the SavedModel is written: beside it in the staging
        # folder, under a name that no prefix match of the model's folder takes (object stores).
        staged = os.path.join(os.path.dirname(folder), "config-asset")
        tf.io.gfile.makedirs(staged)
        config_path = os.path.join(staged, exported.METADATA)
        embedding_dim = model_lib.embeddings_of(clone.output).shape[-1]
        metadata = export_metadata(config, step, embedding_dim, max_images, max_pixels)
        metadata["precision"] = precision
        run_dir_lib.write_atomic(config_path, json.dumps(metadata, indent=2, sort_keys=True))
        module = signatures.ServingModule(clone, config.data.image_height, config.data.image_width, config_path,
                                max_images, max_pixels, frozen=precision != "float32", crop=config.data.crop)
        # Serving needs no gradients: custom ones (EfficientNet's swish under bfloat16) are not saved.
        tf.saved_model.save(module, folder, signatures={
            "serving_default": module.serve_images, "serving_bytes": module.serve_bytes,
        }, options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))

    return versions.write_version(export_dir, version, overwrite, write)


def export_converted(
    model: keras.Model, config: config_lib.RunConfig, export_dir: str, version: int, step: int,
    fmt: str, quantize: str = "none", check_images: np.ndarray | None = None,
    calibration: np.ndarray | None = None, overwrite: bool = False, built_from_config: bool = False,
) -> tuple[str, dict]:
    """Write DIR/<version>/model.tflite or model.onnx with reid_config.json beside it, once the
    converted model, run in its own runtime on `check_images`, gives the model's embeddings.
    Returns the folder and the measured difference (and the file's size)."""
    if fmt not in convert.FILE_NAMES:
        raise ExportError(f"--format={fmt}: one of {', '.join(convert.FILE_NAMES)}")
    if fmt == "onnx" and quantize != "none":
        raise ExportError("--quantize applies to --format=tflite; quantise ONNX in its own tools"
                          " (onnxruntime.quantization, TensorRT's int8 calibration)")
    clone = copy_in(model, config, built_from_config=built_from_config)
    height, width = config.data.image_height, config.data.image_width
    if check_images is None:  # noise still tells a working model from a broken one
        check_images = np.random.default_rng(0).uniform(0, 255, (8, height, width, 3)).astype(np.float32)
    function = convert.embedding_function(clone, height, width)
    try:
        if fmt == "tflite":
            content = convert.to_tflite(function, quantize, calibration)
            converted = convert.tflite_embed_fn(content)(check_images)
        else:
            content = convert.to_onnx(function)
            converted = convert.onnx_embed_fn(content)(check_images)
        reference = function(tf.constant(check_images))["embeddings"].numpy()
        difference = convert.compare(reference, converted)
        convert.check(difference, quantize, f"the {fmt} model ({quantize})")
    except convert.ConversionError as e:
        raise ExportError(str(e)) from None
    difference["bytes"] = len(content)
    metadata = export_metadata(config, step, reference.shape[-1])
    metadata.update(format=fmt, quantize=quantize, file=convert.FILE_NAMES[fmt], verification={
        **difference, "images": len(check_images)})
    for key in ("max_images_per_request", "max_image_pixels"):  # limits of the TF Serving signatures
        metadata.pop(key)
    metadata["input"] = "images: float32 [batch, H, W, 3], RGB pixels in [0, 255]"

    def write(folder):
        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(os.path.join(folder, convert.FILE_NAMES[fmt]), "wb") as f:
            f.write(content)
        run_dir_lib.write_atomic(os.path.join(folder, exported.METADATA),
                                 json.dumps(metadata, indent=2, sort_keys=True))

    return versions.write_version(export_dir, version, overwrite, write), difference


BACKBONE_FILE = "backbone.weights.h5"


def export_backbone(model: keras.Model, config: config_lib.RunConfig, export_dir: str, version: int,
                    step: int, overwrite: bool = False) -> str:
    """Write DIR/<version>/backbone.weights.h5, the Keras weights of the model's backbone alone,
    laid out as keras.applications' network: `--backbone_weights=PATH` starts another run from it
    (pretrain on one dataset, fine-tune on another)."""
    m, d = config.model, config.data
    shape = (d.image_height, d.image_width, 3)
    metadata = {"format": "backbone", "file": BACKBONE_FILE, "backbone": m.backbone,
                "input_height": d.image_height, "input_width": d.image_width, "step": int(step),
                "use": f"--backbone={m.backbone} --backbone_weights=PATH", "config": config.to_dict()}

    def write(folder):
        tf.io.gfile.makedirs(folder)
        local = os.path.join(tempfile.mkdtemp(prefix="reid_tf-backbone-"), BACKBONE_FILE)
        try:  # h5py writes local files; the copy reaches any TensorFlow file system
            backbones.save_backbone_weights(backbones.backbone_of(model), m.backbone, shape, local)
            tf.io.gfile.copy(local, os.path.join(folder, BACKBONE_FILE), overwrite=True)
        finally:
            shutil.rmtree(os.path.dirname(local), ignore_errors=True)
        run_dir_lib.write_atomic(os.path.join(folder, exported.METADATA),
                                 json.dumps(metadata, indent=2, sort_keys=True))

    return versions.write_version(export_dir, version, overwrite, write)


def checkpoint_path(run_dir: str, step: int | None = None) -> str:
    """The checkpoint prefix of a run (its latest, or that of `step`), or a clear error."""
    folder = os.path.join(run_dir, run_dir_lib.CHECKPOINTS)
    if not tf.io.gfile.isdir(folder):
        raise ExportError(f"no checkpoints folder in {run_dir}: is it a training run's --output_dir?")
    if step is None:
        latest = tf.train.latest_checkpoint(folder)
        if latest is None:
            raise ExportError(f"{folder} holds no complete checkpoint")
        return latest
    state = tf.train.get_checkpoint_state(folder)
    candidates = list(state.all_model_checkpoint_paths) if state else []
    for path in candidates:
        if path.endswith(f"-{step}"):
            if not tf.io.gfile.exists(path + ".index"):
                break
            return path
    raise ExportError(f"{folder} has no complete checkpoint of step {step}")


def run_images(config: config_lib.RunConfig, count: int, data_dir: str | None = None) -> np.ndarray:
    """`count` training images of the run's dataset as evaluation reads them (decoded, resized),
    spread over the identities: calibration for int8, and the export's check."""
    cfg = config.data if not data_dir else dataclasses.replace(config.data, data_dir=data_dir)
    try:
        records = datasets.load_training_records(cfg)
    except datasets.DatasetError as e:
        raise ExportError(f"{e} (the run's dataset gives the export its images: --data_dir=FOLDER)") from None
    chosen = [records[i] for i in np.linspace(0, len(records) - 1, min(count, len(records))).astype(int)]
    batches = data.eval_dataset(chosen, cfg.image_height, cfg.image_width, 64, cfg.crop)
    return np.concatenate([images.numpy() for images, _, _ in batches])


def restore_run_model(run_dir: str, step: int | None = None) -> tuple[keras.Model, config_lib.RunConfig, int]:
    """(model, its config, its step) of a run's checkpoint (the latest, or that of `step`)."""
    try:
        config = run_dir_lib.load_config(run_dir)
    except run_dir_lib.RunDirError as e:
        raise ExportError(str(e)) from None
    path = checkpoint_path(run_dir, step)
    model = model_lib.build_run_model(config, backbone_weights="none")
    step_var = tf.Variable(0, dtype=tf.int64)
    try:
        tf.train.Checkpoint(model=model, step=step_var).read(path).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ExportError(f"checkpoint {path} does not fit the run's config: {str(e)[:200]}") from None
    return model, config, int(step_var.numpy())


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """What one `python -m reid_tf.export` asks of its format, besides the model and its config."""

    export_dir: str
    version: int
    step: int
    overwrite: bool = False
    max_images: int = MAX_IMAGES_PER_REQUEST
    max_pixels: int = MAX_IMAGE_PIXELS
    quantize: str = "none"
    data_dir: str | None = None
    calibration_images: int = 300
    precision: str = "float32"
    index: str | None = None
    k: int = 10
    calibration: dict | None = None  # calibration.for_model: the threshold the export carries


FORMATS: Registry = Registry("export format", "--format", ExportError)


def export_run(run_dir: str, export_dir: str, step: int | None = None, version: int | None = None,
               overwrite: bool = False, max_images: int = MAX_IMAGES_PER_REQUEST,
               max_pixels: int = MAX_IMAGE_PIXELS, fmt: str = "saved_model", quantize: str = "none",
               data_dir: str | None = None, calibration_images: int = 300, precision: str = "float32",
               index: str | None = None, k: int = 10, calibration_file: str | None = None,
               threshold: str = "far=0.001") -> str:
    """Export a training run's checkpoint; returns the version folder. `index` (a gallery index of
    tools/gallery.py) and `k` are --format=search's; `calibration_file` (tools/eval.py --calibrate)
    goes beside the model, its `threshold` into the search's `match` and the tracker's gate."""
    write = FORMATS.lookup(fmt)
    model, config, step_value = restore_run_model(run_dir, step)
    gate = None
    if calibration_file:
        identity = exported.identity_of(export_common.export_metadata(
            config, step_value, model_lib.embeddings_of(model.output).shape[-1]))
        try:
            gate = calibration_lib.for_model(calibration_file, identity, threshold)
        except calibration_lib.CalibrationError as e:
            raise ExportError(str(e)) from None
    request = ExportRequest(export_dir, step_value if version is None else version, step_value, overwrite,
                            max_images, max_pixels, quantize, data_dir, calibration_images, precision, index, k, gate)
    folder = write(model, config, request)
    if calibration_file:
        tf.io.gfile.copy(calibration_file, os.path.join(folder, calibration_lib.FILE), overwrite=True)
    return folder


@FORMATS.register("saved_model", help="for TF Serving")
def _saved_model(model: keras.Model, config: config_lib.RunConfig, r: ExportRequest) -> str:
    if r.quantize != "none":
        raise ExportError("--quantize applies to --format=tflite")
    return export_saved_model(model, config, r.export_dir, r.version, r.step, r.overwrite, r.max_images,
                              r.max_pixels, r.precision, built_from_config=True)


def _converted(fmt: str):
    def write(model: keras.Model, config: config_lib.RunConfig, r: ExportRequest) -> str:
        if r.precision != "float32":
            raise ExportError(f"--precision applies to --format=saved_model; use --quantize for {fmt}")
        try:
            images = run_images(config, r.calibration_images if r.quantize == "int8" else 8, r.data_dir)
        except ExportError:
            if r.quantize == "int8":
                raise
            images = None
            logging.warning("the run's dataset is not here: the export is checked on noise images")
        checks = None if images is None else images[:: max(1, len(images) // 8)][:8]
        if fmt == "tracker":
            return tracker_export.export_tracker(model, config, r.export_dir, r.version, r.step, r.quantize, checks,
                                                 images, r.overwrite, gate=r.calibration)[0]
        return export_converted(model, config, r.export_dir, r.version, r.step, fmt, r.quantize, checks, images,
                                r.overwrite, built_from_config=True)[0]
    return write


FORMATS.register("tflite", _converted("tflite"), help="LiteRT for devices")
FORMATS.register("onnx", _converted("onnx"), help="ONNX Runtime, TensorRT, Triton")


@FORMATS.register("backbone", help="the backbone's Keras weights file, to start another run from"
                  " (--backbone_weights=PATH)")
def _backbone(model: keras.Model, config: config_lib.RunConfig, r: ExportRequest) -> str:
    if r.quantize != "none" or r.precision != "float32":
        raise ExportError("--format=backbone writes the float32 weights: drop --quantize and --precision")
    return export_backbone(model, config, r.export_dir, r.version, r.step, r.overwrite)


FORMATS.register("tracker", _converted("tracker"), help="boxmot's ReID ONNX (NCHW, ImageNet-standardised) with"
                 " its sidecar, a raw-pixel ONNX for DeepStream and a LiteRT file")


@FORMATS.register("search", help="a SavedModel searching --index")
def _search(model: keras.Model, config: config_lib.RunConfig, r: ExportRequest) -> str:
    if not r.index:
        raise ExportError("--format=search needs --index=FOLDER, an index of this model (tools/gallery.py index)")
    return search_export.export_search(model, config, r.index, r.export_dir, r.version, r.step, r.k, r.overwrite,
                                       r.max_images, r.max_pixels, r.calibration)
