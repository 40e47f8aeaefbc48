"""Image bytes to model input, the same wherever an image enters: decoding (after a header check
that refuses oversized or non-image bytes undecoded) and the framing to the model's size, a
plain resize or the 2017 original's centre crop; training, evaluation and serving share them."""

from __future__ import annotations

import tensorflow as tf


def decode_image(contents: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes to float32 RGB pixels [h, w, 3] in [0, 255]; grayscale becomes RGB."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.cast(image, tf.float32)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def checked_image_bytes(contents: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """`contents` once its header shows a JPEG or PNG of 1 to max_pixels pixels, else an error.

    The size comes from the header alone (JPEG's SOF via extract_jpeg_shape, PNG's IHDR), so a
    small file that claims a huge image (a decompression bomb) is refused before any decoding.
    """
    head = tf.strings.substr(contents, 0, 24) + b"\0" * 24  # padded: substr past the end fails
    is_png = tf.equal(tf.strings.substr(head, 0, 8), PNG_SIGNATURE)
    is_png = is_png & (tf.strings.length(contents) >= 24) & tf.equal(tf.strings.substr(head, 12, 4), b"IHDR")
    is_jpeg = tf.io.is_jpeg(contents) & tf.logical_not(is_png)
    known = [tf.debugging.Assert(tf.strings.length(contents) > 0, ["image_bytes: an empty string"]),
             tf.debugging.Assert(is_png | is_jpeg, ["image_bytes: not a JPEG or PNG image"])]
    with tf.control_dependencies(known):
        def png_size():  # IHDR: width, then height, 4 bytes each, big-endian
            raw = tf.cast(tf.io.decode_raw(tf.strings.substr(head, 16, 8), tf.uint8), tf.int64)
            width = raw[0] * 2**24 + raw[1] * 2**16 + raw[2] * 2**8 + raw[3]
            height = raw[4] * 2**24 + raw[5] * 2**16 + raw[6] * 2**8 + raw[7]
            return tf.stack([height, width])

        size = tf.cond(is_png, png_size,
                       lambda: tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64))
    height, width = size[0], size[1]
    checks = [
        tf.debugging.Assert(height * width > 0, ["image_bytes: an image of 0 width or height"]),
        tf.debugging.Assert(height * width <= max_pixels, [tf.strings.format(
            "image_bytes: the header claims {}x{} pixels, over the limit of {}",
            (width, height, max_pixels))]),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(contents)


def resize(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Bilinear resize to exactly (height, width); the one resize of evaluation and serving."""
    return tf.image.resize(image, [height, width], method="bilinear")


def _skimage_bilinear_weights(size_in: tf.Tensor, size_out: int) -> tf.Tensor:
    """[size_out, size_in] float64 weights of scikit-image 0.13's order-1 resize along one axis:
    source = (out + 0.5) * in / out - 0.5, pixels beyond the edge taken as 0 (mode='constant')."""
    scale = tf.cast(size_in, tf.float64) / size_out
    source = (tf.range(size_out, dtype=tf.float64) + 0.5) * scale - 0.5
    low = tf.floor(source)
    frac = source - low
    low = tf.cast(low, tf.int32)
    columns = tf.range(size_in)[None, :]
    return (tf.cast(columns == low[:, None], tf.float64) * (1.0 - frac)[:, None]
            + tf.cast(columns == low[:, None] + 1, tf.float64) * frac[:, None])


def original_center_crop(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """The 2017 original's "crop image" (res_data.py `process_image`, from commit 6ec8070): resize
    to height x (width + width // 4) as scikit-image 0.13 did (bilinear, black beyond the edges,
    no anti-aliasing), keep the central `width` columns, truncate to whole values (astype uint8)."""
    shape = tf.shape(image)
    rows = _skimage_bilinear_weights(shape[0], height)
    wide = _skimage_bilinear_weights(shape[1], width + width // 4)
    columns = wide[width // 8: width // 8 + width]
    unit = tf.cast(image, tf.float64) / 255.0
    out = tf.einsum("hr,rwc->hwc", rows, tf.einsum("rkc,wk->rwc", unit, columns))
    return tf.cast(tf.floor(tf.clip_by_value(out, 0.0, 1.0) * 255.0), tf.float32)


def frame(image: tf.Tensor, height: int, width: int, crop: str = "none") -> tf.Tensor:
    """Decoded pixels to (height, width): a plain resize, or the original's centre crop."""
    if crop == "center_1.25w":
        return original_center_crop(image, height, width)
    return resize(image, height, width)


def load_eval_image(contents: tf.Tensor, height: int, width: int, crop: str = "none") -> tf.Tensor:
    """Encoded image to model input, exactly as evaluation and the bytes signature see it."""
    return frame(decode_image(contents), height, width, crop)


