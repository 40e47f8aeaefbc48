"""What every export format shares (the dispatcher, export_lib, imports it; so do the formats, so
none of them imports the dispatcher back): the model rebuilt for export, and its metadata."""

from __future__ import annotations

import keras
import tensorflow as tf

from reid_tf import backbones
from reid_tf import config as config_lib
from reid_tf import model as model_lib
from reid_tf.config import MAX_IMAGE_PIXELS, MAX_IMAGES_PER_REQUEST, PRECISIONS
from reid_tf.versions import ExportError


def copy_in(model: keras.Model, config: config_lib.RunConfig, precision: str = "float32",
            built_from_config: bool = False) -> keras.Model:
    """The model rebuilt from the config with the trained weights, computing in `precision`
    (bfloat16: CPUs with AVX512_BF16 or AMX, TPUs; float16: GPUs) whatever the run trained in.
    Weights and outputs stay float32. A model `built_from_config` that already is such a copy
    (float32, plain variables) is used as it is."""
    if precision not in PRECISIONS:
        raise ExportError(f"--precision={precision}: one of {PRECISIONS}")
    if built_from_config and precision == "float32" and _plain_float32(model):
        return model
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32" if precision == "float32" else f"mixed_{precision}")
    try:
        clone = model_lib.build_run_model(config, backbone_weights="none")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clone.set_weights(model.get_weights())
    return clone


def _plain_float32(model: keras.Model) -> bool:
    """Whether every layer computes in float32 and every variable is a plain one (not a replica's)."""
    return (all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers())
            and not any(isinstance(v.value, tf.distribute.DistributedValues) for v in model.weights))


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
        "resize": ("the original's centre crop: H x 1.25W, the central W columns" if config.data.crop != "none"
                   else "bilinear to input_height x input_width"),
        "step": int(step),
        "config": config.to_dict(),
    }
