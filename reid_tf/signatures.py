"""The SavedModel's signatures for TF Serving: `serving_default` takes float32 RGB pixels at the
model's size, `serving_bytes` JPEG/PNG bytes (checked, decoded and framed as evaluation does);
both return `embeddings` and `embeddings_normalized` and refuse an oversized request."""

from __future__ import annotations

import keras
import tensorflow as tf

from reid_tf import convert
from reid_tf import model as model_lib
from reid_tf.images import checked_image_bytes, load_eval_image


def request_limit(count: tf.Tensor, max_images: int) -> tf.Operation:
    """Every request's work is bounded by max_images images."""
    return tf.debugging.Assert(count <= max_images, [tf.strings.format(
        "too many images in one request: {} > the limit of {}", (count, max_images))])


class ServingModule(tf.Module):
    """The model and its metadata asset, with the two signatures."""

    def __init__(self, model: keras.Model, height: int, width: int, config_path: str,
                 max_images: int, max_pixels: int, frozen: bool = False, crop: str = "none"):
        super().__init__()
        if frozen:  # weights as constants: a reduced-precision graph casts them once, at load
            forward = convert.embedding_function(model, height, width)
            self.forward = forward
        else:
            # The variables alone, not the Keras objects: the save walks every tracked object,
            # and a network's thousands of layer attributes took half an export's time.
            self.model_variables = model_lib.tracked_variables(model)

            def forward(images):
                return {"embeddings": model_lib.embeddings_of(model(images, training=False))}
        self.config_file = tf.saved_model.Asset(config_path)

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, "images")], autograph=False)
        def serve_images(images):
            with tf.control_dependencies([request_limit(tf.shape(images)[0], max_images)]):
                embeddings = tf.cast(forward(images)["embeddings"], tf.float32)
            return {
                "embeddings": embeddings,
                "embeddings_normalized": tf.math.l2_normalize(embeddings, axis=1),
            }

        def decode(contents):
            checked = checked_image_bytes(contents, max_pixels)
            return load_eval_image(checked, height, width, crop)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "image_bytes")], autograph=False)
        def serve_bytes(image_bytes):
            with tf.control_dependencies([request_limit(tf.size(image_bytes), max_images)]):
                pixels = tf.map_fn(decode, image_bytes,
                                   fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
            return serve_images(pixels)

        self.serve_images = serve_images
        self.serve_bytes = serve_bytes
