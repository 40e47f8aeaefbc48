"""Export for TF Serving (a SavedModel: raw pixels or JPEG/PNG bytes in, embeddings out), LiteRT
and ONNX (raw pixels in).

`python -m reid_tf.export --output_dir=RUN [--step=N] --export_dir=DIR [--format=tflite|onnx]`
exports a checkpoint of a training run under DIR/<version>/, the layout TF Serving watches. The
folder is written beside its destination and renamed into place, so a server never sees a
half-written version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf import backbones, console, convert, data, datasets
from reid_tf import config as config_lib
from reid_tf import model as model_lib
from reid_tf import run_dir as run_dir_lib
from reid_tf.config import EXPORT_FORMATS, MAX_IMAGE_PIXELS, MAX_IMAGES_PER_REQUEST, PRECISIONS

CONFIG_ASSET = "reid_config.json"


class ExportError(RuntimeError):
    """An export that cannot be done; the message names the folder and what to do."""


class _ServingModule(tf.Module):
    def __init__(self, model: keras.Model, height: int, width: int, config_path: str,
                 max_images: int, max_pixels: int, frozen: bool = False):
        super().__init__()
        if frozen:  # weights as constants: a reduced-precision graph casts them once, at load
            forward = convert.embedding_function(model, height, width)
            self.forward = forward
        else:
            self.model = model

            def forward(images):
                return {"embeddings": model_lib.embeddings_of(self.model(images, training=False))}
        self.config_file = tf.saved_model.Asset(config_path)

        def at_most(count):  # every request's work is bounded by max_images images
            return tf.debugging.Assert(count <= max_images, [tf.strings.format(
                "too many images in one request: {} > the limit of {}", (count, max_images))])

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, "images")])
        def serve_images(images):
            with tf.control_dependencies([at_most(tf.shape(images)[0])]):
                embeddings = tf.cast(forward(images)["embeddings"], tf.float32)
            return {
                "embeddings": embeddings,
                "embeddings_normalized": tf.math.l2_normalize(embeddings, axis=1),
            }

        def decode(contents):
            checked = data.checked_image_bytes(contents, max_pixels)
            return data.load_eval_image(checked, height, width)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "image_bytes")])
        def serve_bytes(image_bytes):
            with tf.control_dependencies([at_most(tf.size(image_bytes))]):
                images = tf.map_fn(decode, image_bytes,
                                   fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
            return serve_images(images)

        self.serve_images = serve_images
        self.serve_bytes = serve_bytes


def _write_version(export_dir: str, version: int, overwrite: bool, write: Callable[[str], None]) -> str:
    """DIR/<version>/ as `write(folder)` fills a folder: built in a `.tmp-` folder beside its place
    (a name TF Serving ignores; what a killed export leaves is removed by the next one), then
    moved into place."""
    final = os.path.join(export_dir, str(int(version)))
    if tf.io.gfile.exists(final) and not overwrite:
        raise ExportError(f"{final} exists: pass --overwrite to replace it, or choose --version")
    tf.io.gfile.makedirs(export_dir)
    run_dir_lib.remove_temporaries(export_dir)
    staging = os.path.join(export_dir, f"{run_dir_lib.TEMPORARY}{version}-{uuid.uuid4().hex[:8]}")
    try:
        tf.io.gfile.makedirs(staging)
        built = os.path.join(staging, "model")
        write(built)
        if tf.io.gfile.exists(final):  # overwrite: move the old version aside first
            _move_folder(final, os.path.join(staging, "old"))
        _move_folder(built, final)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return final




def _copy_in(model: keras.Model, config: config_lib.RunConfig, precision: str = "float32") -> keras.Model:
    """The model rebuilt from the config with the trained weights, computing in `precision`
    (bfloat16: CPUs with AVX512_BF16 or AMX, TPUs; float16: GPUs) whatever the run trained in.
    Weights and outputs stay float32."""
    if precision not in PRECISIONS:
        raise ExportError(f"--precision={precision}: one of {PRECISIONS}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32" if precision == "float32" else f"mixed_{precision}")
    try:
        clone = model_lib.build_run_model(config, backbone_weights="none")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clone.set_weights(model.get_weights())
    return clone


def export_saved_model(
    model: keras.Model, config: config_lib.RunConfig, export_dir: str, version: int,
    step: int, overwrite: bool = False, max_images: int = MAX_IMAGES_PER_REQUEST,
    max_pixels: int = MAX_IMAGE_PIXELS, precision: str = "float32",
) -> str:
    """Write the model as DIR/<version>/ with `serving_default` (pixels) and `serving_bytes`,
    computing in `precision`."""
    clone = _copy_in(model, config, precision)

    def write(folder):
        # The asset file must exist while the SavedModel is written: beside it in the staging
        # folder, under a name that no prefix match of the model's folder takes (object stores).
        staged = os.path.join(os.path.dirname(folder), "config-asset")
        tf.io.gfile.makedirs(staged)
        config_path = os.path.join(staged, CONFIG_ASSET)
        embedding_dim = model_lib.embeddings_of(clone.output).shape[-1]
        metadata = export_metadata(config, step, embedding_dim, max_images, max_pixels)
        metadata["precision"] = precision
        run_dir_lib.write_atomic(config_path, json.dumps(metadata, indent=2, sort_keys=True))
        module = _ServingModule(clone, config.data.image_height, config.data.image_width, config_path,
                                max_images, max_pixels, frozen=precision != "float32")
        # Serving needs no gradients: custom ones (EfficientNet's swish under bfloat16) are not saved.
        tf.saved_model.save(module, folder, signatures={
            "serving_default": module.serve_images, "serving_bytes": module.serve_bytes,
        }, options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))

    return _write_version(export_dir, version, overwrite, write)


def export_converted(
    model: keras.Model, config: config_lib.RunConfig, export_dir: str, version: int, step: int,
    fmt: str, quantize: str = "none", check_images: np.ndarray | None = None,
    calibration: np.ndarray | None = None, overwrite: bool = False,
) -> tuple[str, dict]:
    """Write DIR/<version>/model.tflite or model.onnx with reid_config.json beside it, once the
    converted model, run in its own runtime on `check_images`, gives the model's embeddings.
    Returns the folder and the measured difference (and the file's size)."""
    if fmt not in convert.FILE_NAMES:
        raise ExportError(f"--format={fmt}: one of {', '.join(convert.FILE_NAMES)}")
    if fmt == "onnx" and quantize != "none":
        raise ExportError("--quantize applies to --format=tflite; quantise ONNX in its own tools"
                          " (onnxruntime.quantization, TensorRT's int8 calibration)")
    clone = _copy_in(model, config)
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
        run_dir_lib.write_atomic(os.path.join(folder, CONFIG_ASSET),
                                 json.dumps(metadata, indent=2, sort_keys=True))

    return _write_version(export_dir, version, overwrite, write), difference


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
            model_lib.save_backbone_weights(model_lib.backbone_of(model), m.backbone, shape, local)
            tf.io.gfile.copy(local, os.path.join(folder, BACKBONE_FILE), overwrite=True)
        finally:
            shutil.rmtree(os.path.dirname(local), ignore_errors=True)
        run_dir_lib.write_atomic(os.path.join(folder, CONFIG_ASSET),
                                 json.dumps(metadata, indent=2, sort_keys=True))

    return _write_version(export_dir, version, overwrite, write)


def _move_folder(source: str, destination: str) -> None:
    """Rename a folder: atomic on a local file system. Object stores (gs://, s3://) have no
    folders to rename, so their files move one by one, saved_model.pb last: a server that
    polls the folder finds no model until every file it needs is there."""
    if run_dir_lib.is_local(source):
        os.rename(source, destination)
        return
    files = [os.path.join(root, name) for root, _, names in tf.io.gfile.walk(source) for name in names]
    files.sort(key=lambda path: os.path.basename(path) == "saved_model.pb")
    for path in files:
        target = os.path.join(destination, os.path.relpath(path, source))
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.rename(path, target, overwrite=True)
    tf.io.gfile.rmtree(source)


def export_metadata(config: config_lib.RunConfig, step: int, embedding_dim: int,
                    max_images: int = MAX_IMAGES_PER_REQUEST, max_pixels: int = MAX_IMAGE_PIXELS) -> dict:
    """What a server or client needs to know of the model, stored as an asset."""
    return {
        "max_images_per_request": int(max_images),
        "max_image_pixels": int(max_pixels),
        "input_height": config.data.image_height,
        "input_width": config.data.image_width,
        "input": "RGB pixels in [0, 255], float32 (serving_default) or JPEG/PNG bytes (serving_bytes)",
        "embedding_dim": int(embedding_dim),
        "embedding": ("the head's output" if config.model.neck == "none"
                      else f"{config.model.neck_feat} the BNNeck"),
        "backbone": config.model.backbone,
        "preprocessing": "inside the model: " + backbones.PREPROCESSING_TEXT[
            backbones.preprocessing(config.model.backbone)],
        "resize": "bilinear to input_height x input_width",
        "step": int(step),
        "config": config.to_dict(),
    }


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
    batches = data.eval_dataset(chosen, cfg.image_height, cfg.image_width, batch_size=64)
    return np.concatenate([images.numpy() for images, _, _ in batches])


def export_run(run_dir: str, export_dir: str, step: int | None = None, version: int | None = None,
               overwrite: bool = False, max_images: int = MAX_IMAGES_PER_REQUEST,
               max_pixels: int = MAX_IMAGE_PIXELS, fmt: str = "saved_model", quantize: str = "none",
               data_dir: str | None = None, calibration_images: int = 300, precision: str = "float32") -> str:
    """Export a training run's checkpoint; returns the version folder."""
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
    step_value = int(step_var.numpy())
    version = step_value if version is None else version
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"--format={fmt}: one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "backbone":
        if quantize != "none" or precision != "float32":
            raise ExportError("--format=backbone writes the float32 weights: drop --quantize and --precision")
        return export_backbone(model, config, export_dir, version, step_value, overwrite)
    if fmt == "saved_model":
        if quantize != "none":
            raise ExportError("--quantize applies to --format=tflite")
        return export_saved_model(model, config, export_dir, version, step_value, overwrite, max_images,
                                  max_pixels, precision)
    if precision != "float32":
        raise ExportError(f"--precision applies to --format=saved_model; use --quantize for {fmt}")
    try:
        images = run_images(config, calibration_images if quantize == "int8" else 8, data_dir)
    except ExportError:
        if quantize == "int8":
            raise
        images = None
        logging.warning("the run's dataset is not here: the export is checked on noise images")
    checks = None if images is None else images[:: max(1, len(images) // 8)][:8]
    return export_converted(model, config, export_dir, version, step_value, fmt, quantize, checks, images,
                            overwrite)[0]


def main(argv):
    del argv
    from reid_tf.flags import FLAGS

    console.quiet()
    try:
        path = export_run(FLAGS.output_dir, FLAGS.export_dir, FLAGS.step, FLAGS.version,
                          FLAGS.overwrite, FLAGS.max_images_per_request, FLAGS.max_image_pixels,
                          FLAGS.format, FLAGS.quantize, FLAGS.data_dir, FLAGS.calibration_images,
                          FLAGS.precision)
    except ExportError as e:
        sys.exit(f"error: {e}")
    if FLAGS.format in ("tflite", "onnx"):
        with tf.io.gfile.GFile(os.path.join(path, CONFIG_ASSET)) as f:
            meta = json.load(f)
        v = meta["verification"]
        print(f"{meta['file']}: {v['bytes'] / 2**20:.1f} MiB; against the model on {v['images']} images:"
              f" largest difference {v['max_abs']:.3g} ({v['relative']:.3g} of the largest value),"
              f" smallest cosine similarity {v['min_cosine']:.6f}")
    print(f"exported {path}")


if __name__ == "__main__":
    from absl import app

    from reid_tf.flags import define_export_flags, parse_flags

    define_export_flags()
    app.run(main, flags_parser=parse_flags)
