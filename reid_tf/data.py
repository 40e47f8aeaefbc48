"""tf.data pipelines: P x K identity batches for training, ordered batches for evaluation.

Images come out as float32 pixels in [0, 255]; normalisation belongs to the model, so an
exported model takes raw pixels. All randomness is stateless and keyed by (seed, position),
so a stream is reproducible and parallel decoding cannot change it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf.config import AUGMENTATIONS
from reid_tf.datasets import DatasetError, Record

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, [0, 255]: BoT's random-erasing fill
BOT_PADDING = 10  # BoT pads 10 px at 256x128; scaled with the input height
CROP_MARGIN = 1.125  # "crop image": resize 12.5% larger, then crop back (TriNet: 288x144 -> 256x128)


def pk_index_batches(pids: Sequence[int], p: int, k: int, seed: int) -> tf.data.Dataset:
    """An endless stream of int32 [P*K] record indices: P distinct identities, K images each.

    Identities are drawn epoch by epoch from a fresh permutation (the remainder of P dropped),
    so each is visited about equally often. An identity with fewer than K images is padded by
    repeating its own images evenly: shuffle, tile, cut.
    """
    pids = np.asarray(pids)
    order = np.argsort(pids, kind="stable")
    unique, starts, counts = np.unique(pids[order], return_index=True, return_counts=True)
    if p < 1 or k < 1:
        raise DatasetError(f"P={p} and K={k} must be at least 1")
    if len(unique) < p:
        raise DatasetError(
            f"P={p} identities per batch (--return_id_num) but the training set has only"
            f" {len(unique)} identities with images; lower --return_id_num"
        )
    short = int((counts < k).sum())
    if short:
        logging.info("%d of %d identities have fewer than K=%d images: their own images repeat in a batch",
                     short, len(unique), k)
    members = tf.constant(order, tf.int32)
    starts = tf.constant(starts, tf.int32)
    counts = tf.constant(counts, tf.int32)
    max_count = int(counts.numpy().max())
    num_ids = len(unique)

    def sample(batch_index, ids):
        rand = tf.random.stateless_uniform([p, max_count], seed=tf.stack([seed, batch_index]))
        count = tf.gather(counts, ids)
        valid = tf.range(max_count)[None, :] < count[:, None]
        # Each row: a random permutation of the identity's own images first, padding after.
        perm = tf.argsort(tf.where(valid, rand, 2.0), axis=1, stable=True)
        slot = tf.range(k)[None, :] % count[:, None]  # tile the permutation, cut at K
        offsets = tf.gather(perm, slot, batch_dims=1) + tf.gather(starts, ids)[:, None]
        return tf.reshape(tf.gather(members, offsets), [p * k])

    ids = (
        tf.data.Dataset.range(num_ids)
        .shuffle(num_ids, seed=seed, reshuffle_each_iteration=True)
        .take(num_ids // p * p)
        .repeat()
        .map(lambda i: tf.cast(i, tf.int32))
        .batch(p, drop_remainder=True)
        .enumerate()
    )
    return ids.map(lambda i, b: sample(tf.cast(i, tf.int32), b))


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


def load_eval_image(contents: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Encoded image to model input, exactly as evaluation and the bytes signature see it."""
    return resize(decode_image(contents), height, width)


# RGB <-> YIQ (NTSC): a hue shift is a rotation of the (I, Q) plane, a 3x3 linear map of RGB.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_LUMA = _RGB_TO_YIQ[0]


def _color_jitter(image: tf.Tensor, seed: tf.Tensor, brightness: float = 0.2,
                  contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.05) -> tf.Tensor:
    """Random brightness, contrast, saturation and hue as one affine map of each pixel's RGB.

    Ranges as torchvision's ColorJitter(0.2, 0.2, 0.2, 0.05): brightness adds up to +-0.2 of full
    scale, contrast scales about each channel's mean, saturation blends with the luma, and hue
    rotates the chroma plane of YIQ by up to +-0.05 of a turn. Composed into one 3x3 matrix and
    offset, the image is read twice (the channel means, the map), not once per adjustment
    through HSV; the map clips once at the end.
    """
    u = tf.random.stateless_uniform([4], seed=seed, minval=-1.0, maxval=1.0)
    delta = brightness * 255.0 * u[0]
    c, s = 1.0 + contrast * u[1], 1.0 + saturation * u[2]
    angle = 2.0 * np.pi * hue * u[3]
    # hue_map = YIQ_TO_RGB @ R(angle) @ RGB_TO_YIQ = A + cos * B + sin * C, A, B, C constants.
    keep, plane = np.diag([1.0, 0.0, 0.0]), np.diag([0.0, 1.0, 1.0])
    turn = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    a, b, t = (tf.constant(_YIQ_TO_RGB @ m @ _RGB_TO_YIQ, tf.float32) for m in (keep, plane, turn))
    hue_map = a + tf.cos(angle) * b + tf.sin(angle) * t
    gray = tf.constant(np.ones([3, 1]) * _LUMA[None], tf.float32)
    matrix = hue_map @ (s * tf.eye(3) + (1.0 - s) * gray)
    mean = tf.reduce_mean(image, axis=[0, 1])
    offset = tf.linalg.matvec(matrix, (1.0 - c) * mean + delta)
    pixels = tf.reshape(image, [-1, 3]) @ tf.transpose(matrix * c) + offset
    return tf.reshape(tf.clip_by_value(pixels, 0.0, 255.0), tf.shape(image))


def random_erasing(
    image: tf.Tensor, seed: tf.Tensor, probability: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4), aspect: tuple[float, float] = (0.3, 1 / 0.3),
    fill: tuple[float, float, float] | None = None,
) -> tf.Tensor:
    """Zhong et al. 2017 random erasing: a random rectangle filled with uniform noise, or with
    the constant RGB `fill` (BoT: the ImageNet mean). Noise is drawn for the rectangle only."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    u = tf.random.stateless_uniform([5], seed=seed)
    target = (area[0] + (area[1] - area[0]) * u[0]) * h_f * w_f
    log_aspect = np.log(aspect[0]) + (np.log(aspect[1]) - np.log(aspect[0])) * u[1]
    ratio = tf.exp(log_aspect)
    eh = tf.minimum(tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32), height)
    ew = tf.minimum(tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32), width)
    top = tf.cast(u[2] * tf.cast(height - eh + 1, tf.float32), tf.int32)
    left = tf.cast(u[3] * tf.cast(width - ew + 1, tf.float32), tf.int32)

    def erase():  # the patch set in by slicing: one copy of the image, no mask
        if fill is None:
            patch = tf.random.stateless_uniform([eh, ew, 3], seed=seed[::-1], maxval=255.0)
        else:
            patch = tf.broadcast_to(tf.constant(fill, image.dtype), [eh, ew, 3])
        band = image[top:top + eh]
        band = tf.concat([band[:, :left], patch, band[:, left + ew:]], axis=1)
        return tf.concat([image[:top], band, image[top + eh:]], axis=0)

    return tf.cond(u[4] < probability, erase, lambda: tf.identity(image))


def augment_image(image: tf.Tensor, height: int, width: int, augment: str, seed: tf.Tensor) -> tf.Tensor:
    """Train-time transform of decoded pixels to (height, width) at an augmentation level."""
    if augment == "none":
        return resize(image, height, width)
    seeds = tf.random.experimental.stateless_split(seed, 8)
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[0])
    if augment == "bot":  # BoT: resize, flip, pad 10 with zeros, random crop, erase p=0.5
        pad = max(1, round(BOT_PADDING * height / 256))
        image = tf.pad(resize(image, height, width), [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, [height, width, 3], seed=seeds[1])
        return random_erasing(image, seeds[6], fill=IMAGENET_MEAN)
    big_h, big_w = round(height * CROP_MARGIN), round(width * CROP_MARGIN)
    image = tf.image.stateless_random_crop(resize(image, big_h, big_w), [height, width, 3], seed=seeds[1])
    if augment == "enhanced":
        image = _color_jitter(image, seeds[2])
        image = random_erasing(image, seeds[6])
    return image


def train_dataset(
    records: Sequence[Record], p: int, k: int, height: int, width: int,
    augment: str = "basic", seed: int = 0, num_shards: int = 1, shard: int = 0,
    batch_size: int | None = None,
) -> tf.data.Dataset:
    """Endless (images [B, H, W, 3] float32, pids [B] int32) batches of P ids x K images.

    With `num_shards` > 1 (one per worker), every shard draws the same global P x K index
    stream and decodes only its own slice of each global batch, in `batch_size` pieces (one per
    replica); the slices of all shards, in shard order, are the single-shard batch exactly,
    augmentation included, since each image's random seed is its global position.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    share = p * k // num_shards
    batch_size = batch_size or share
    if share * num_shards != p * k or share % batch_size:
        raise ValueError(f"the batch P*K={p * k} does not split into {num_shards} shards"
                         f" of batches of {batch_size}")
    paths = tf.constant([r.path for r in records])
    labels = tf.constant([r.pid for r in records], tf.int32)
    first = shard * share

    def own_slice(batch_number, indices):
        positions = batch_number * p * k + first + tf.range(share, dtype=tf.int64)
        return positions, indices[first:first + share]

    def load(position, index):
        image = decode_image(tf.io.read_file(tf.gather(paths, index)))
        seed_pair = tf.stack([tf.cast(seed, tf.int64) + 1_000_003, position])
        return augment_image(image, height, width, augment, seed_pair), tf.gather(labels, index)

    return (
        pk_index_batches([r.pid for r in records], p, k, seed)
        .enumerate()
        .map(own_slice)
        .unbatch()
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def eval_dataset(
    records: Sequence[Record], height: int, width: int, batch_size: int = 64
) -> tf.data.Dataset:
    """(images, pids, camids) batches of every record once, in order, the last batch partial."""
    paths = tf.constant([r.path for r in records], tf.string)
    pids = tf.constant([r.pid for r in records], tf.int32)
    camids = tf.constant([r.camid for r in records], tf.int32)
    return (
        tf.data.Dataset.from_tensor_slices((paths, pids, camids))
        .map(
            lambda path, pid, cam: (load_eval_image(tf.io.read_file(path), height, width), pid, cam),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
