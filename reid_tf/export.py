"""SavedModel export for TF Serving: raw pixels or JPEG/PNG bytes in, embeddings out.

`python -m reid_tf.export --output_dir=RUN [--step=N] --export_dir=DIR` exports a checkpoint of a
training run under DIR/<version>/, the layout TF Serving watches. The folder is written beside
its destination and renamed into place, so a server never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import sys
import uuid

import keras
import tensorflow as tf

from reid_tf import config as config_lib
from reid_tf import data
from reid_tf import model as model_lib
from reid_tf import run_dir as run_dir_lib
from reid_tf.datasets import MAX_IMAGE_PIXELS

CONFIG_ASSET = "reid_config.json"


class ExportError(RuntimeError):
    """An export that cannot be done; the message names the folder and what to do."""


MAX_IMAGES_PER_REQUEST = 256


class _ServingModule(tf.Module):
    def __init__(self, model: keras.Model, height: int, width: int, config_path: str,
                 max_images: int, max_pixels: int):
        super().__init__()
        self.model = model
        self.config_file = tf.saved_model.Asset(config_path)

        def at_most(count):  # every request's work is bounded by max_images images
            return tf.debugging.Assert(count <= max_images, [tf.strings.format(
                "too many images in one request: {} > the limit of {}", (count, max_images))])

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, "images")])
        def serve_images(images):
            with tf.control_dependencies([at_most(tf.shape(images)[0])]):
                embeddings = tf.cast(self.model(images, training=False), tf.float32)
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


def export_saved_model(
    model: keras.Model, config: config_lib.RunConfig, export_dir: str, version: int,
    step: int, overwrite: bool = False, max_images: int = MAX_IMAGES_PER_REQUEST,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> str:
    """Write the model as DIR/<version>/ with `serving_default` (pixels) and `serving_bytes`.

    The model is rebuilt in float32 from the config and given the trained weights, so a
    mixed-precision run exports a portable graph. It is written in a `.tmp-` folder beside its
    place (a name TF Serving ignores; what a killed export leaves is removed by the next one).
    """
    final = os.path.join(export_dir, str(int(version)))
    if tf.io.gfile.exists(final) and not overwrite:
        raise ExportError(f"{final} exists: pass --overwrite to replace it, or choose --version")
    tf.io.gfile.makedirs(export_dir)
    run_dir_lib.remove_temporaries(export_dir)
    clone = model_lib.build_run_model(config, backbone_weights="none")
    clone.set_weights(model.get_weights())
    staging = os.path.join(export_dir, f"{run_dir_lib.TEMPORARY}{version}-{uuid.uuid4().hex[:8]}")
    try:
        tf.io.gfile.makedirs(staging)
        config_path = os.path.join(staging, CONFIG_ASSET)
        metadata = export_metadata(config, step, max_images, max_pixels)
        run_dir_lib.write_atomic(config_path, json.dumps(metadata, indent=2, sort_keys=True))
        module = _ServingModule(clone, config.data.image_height, config.data.image_width, config_path,
                                max_images, max_pixels)
        saved = os.path.join(staging, "model")
        tf.saved_model.save(module, saved, signatures={
            "serving_default": module.serve_images, "serving_bytes": module.serve_bytes,
        })
        if tf.io.gfile.exists(final):  # overwrite: move the old version aside first
            _move_folder(final, os.path.join(staging, "old"))
        _move_folder(saved, final)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return final


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


def export_metadata(config: config_lib.RunConfig, step: int, max_images: int = MAX_IMAGES_PER_REQUEST,
                    max_pixels: int = MAX_IMAGE_PIXELS) -> dict:
    """What a server or client needs to know of the model, stored as an asset."""
    return {
        "max_images_per_request": int(max_images),
        "max_image_pixels": int(max_pixels),
        "input_height": config.data.image_height,
        "input_width": config.data.image_width,
        "input": "RGB pixels in [0, 255], float32 (serving_default) or JPEG/PNG bytes (serving_bytes)",
        "embedding_dim": config.model.embedding_dim,
        "backbone": config.model.backbone,
        "preprocessing": "inside the model: " + (
            "caffe (BGR, ImageNet mean)" if config.model.backbone == "resnet50" else "[-1, 1]"),
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


def export_run(run_dir: str, export_dir: str, step: int | None = None, version: int | None = None,
               overwrite: bool = False, max_images: int = MAX_IMAGES_PER_REQUEST,
               max_pixels: int = MAX_IMAGE_PIXELS) -> str:
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
    return export_saved_model(model, config, export_dir, step_value if version is None else version,
                              step_value, overwrite, max_images, max_pixels)


def main(argv):
    del argv
    from reid_tf.flags import FLAGS

    try:
        path = export_run(FLAGS.output_dir, FLAGS.export_dir, FLAGS.step, FLAGS.version,
                          FLAGS.overwrite, FLAGS.max_images_per_request, FLAGS.max_image_pixels)
    except ExportError as e:
        sys.exit(f"error: {e}")
    print(f"exported {path}")


if __name__ == "__main__":
    from absl import app

    from reid_tf.flags import define_export_flags

    define_export_flags()
    app.run(main)
