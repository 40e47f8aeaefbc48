"""Training augmentation of decoded pixels (float32 RGB in [0, 255]): the library's levels (basic,
enhanced: colour jitter and random erasing; bot: BoT's), and the 2017 original's
my_preprocess_train in its two versions, whose ops were given to fixed batch slots."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reid_tf import constants
from reid_tf.images import frame, resize
from reid_tf.registry import Registry

IMAGENET_MEAN = tuple(255 * m for m in constants.IMAGENET_MEAN)  # RGB, [0, 255]: BoT's random-erasing fill
BOT_PADDING = 10  # BoT pads 10 px at 256x128; scaled with the input height
CROP_MARGIN = 1.125  # "crop image": resize 12.5% larger, then crop back (TriNet: 288x144 -> 256x128)


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


# my_preprocess_train (vgg_preprocessing.py) of the 2017 original: each op's probability of being
# given to a batch slot, and the hue and brightness deltas (on [0, 1] pixels), by commit.
ORIGINAL_AUGMENTATIONS = {
    "original_e50be2b": {"crop": 0.1, "hue": 0.1, "flip": 0.5, "brightness": 0.1, "hue_delta": 0.5,
                         "brightness_delta": 0.5},
    "original_d26b97d": {"crop": 0.5, "hue": 0.5, "flip": 0.5, "brightness": 0.5, "hue_delta": 0.1,
                         "brightness_delta": 0.1},
}
ORIGINAL_OPS = ("crop", "hue", "flip", "brightness")
ORIGINAL_RESIZE_RATIO = 1.2


def original_slot_ops(augment: str, batch: int, seed: int, ops: tuple[str, ...] = ORIGINAL_OPS) -> np.ndarray:
    """bool [batch, 4]: which of crop, hue, flip, brightness each batch slot gets for the whole run
    (of `ops`; the others none). The original drew this once, when it built its graph (numpy, per
    slot), not per image."""
    p = ORIGINAL_AUGMENTATIONS[augment]
    draws = np.random.default_rng([seed, 2017]).uniform(size=(batch, len(ORIGINAL_OPS)))
    return (draws < np.array([p[op] for op in ORIGINAL_OPS])) & np.isin(ORIGINAL_OPS, ops)


def _legacy_resize(image: tf.Tensor, height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
    """TF1's tf.image.resize_images: bilinear, no half-pixel offset."""
    return tf.compat.v1.image.resize_bilinear(image[None], tf.stack([height, width]),
                                              half_pixel_centers=False)[0]


def original_augment(image: tf.Tensor, height: int, width: int, ops: tf.Tensor, augment: str,
                     seed: tf.Tensor) -> tf.Tensor:
    """my_preprocess_train on framed pixels [height, width, 3] in [0, 255]: the ops the slot was
    given (`ops`, bool [4]), each with its per-step random draw, in the original's order."""
    p = ORIGINAL_AUGMENTATIONS[augment]
    seeds = tf.random.experimental.stateless_split(seed, 8)
    big_h, big_w = int(height * ORIGINAL_RESIZE_RATIO), int(width * ORIGINAL_RESIZE_RATIO)

    def crop(x):  # resize up, a crop of random size (output + 1 .. enlarged - 1) and place
        size_h = tf.random.stateless_uniform([], seeds[0], height + 1, big_h, tf.int32)
        size_w = tf.random.stateless_uniform([], seeds[1], width + 1, big_w, tf.int32)
        top = tf.random.stateless_uniform([], seeds[2], 0, big_h - size_h + 1, tf.int32)
        left = tf.random.stateless_uniform([], seeds[3], 0, big_w - size_w + 1, tf.int32)
        return _legacy_resize(x, big_h, big_w)[top:top + size_h, left:left + size_w]

    def hue(x):
        delta = tf.random.stateless_uniform([], seeds[4], -p["hue_delta"], p["hue_delta"])
        return tf.image.adjust_hue(x / 255.0, delta) * 255.0

    def flip(x):
        return tf.image.stateless_random_flip_left_right(x, seeds[5])

    def brightness(x):  # unclipped, as TF1's random_brightness
        return x + 255.0 * tf.random.stateless_uniform([], seeds[6], -p["brightness_delta"],
                                                       p["brightness_delta"])

    for i, op in enumerate((crop, hue, flip, brightness)):
        image = tf.cond(ops[i], lambda op=op, x=image: op(x), lambda x=image: x)
    return tf.ensure_shape(_legacy_resize(image, height, width), [height, width, 3])


AUGMENTATIONS: Registry = Registry("augmentation", "--augment")


def augment_image(image: tf.Tensor, height: int, width: int, augment: str, seed: tf.Tensor,
                  crop: str = "none", ops: tf.Tensor | None = None) -> tf.Tensor:
    """Train-time transform of decoded pixels to (height, width) at an augmentation level, after
    the framing `crop`; the original's levels apply the batch slot's `ops` (`original_slot_ops`)."""
    return AUGMENTATIONS.lookup(augment)(image, height, width, seed, crop, ops)


@AUGMENTATIONS.register("none")
def _framed(image, height, width, seed, crop, ops):
    return frame(image, height, width, crop)


def _original(augment: str):
    def run(image, height, width, seed, crop, ops):
        return original_augment(frame(image, height, width, crop), height, width, ops, augment, seed)
    return run


def _modern(augment: str):
    def run(image, height, width, seed, crop, ops):
        if crop != "none":
            image = frame(image, height, width, crop)
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
    return run


for _name in ("basic", "enhanced", "bot"):
    AUGMENTATIONS.register(_name, _modern(_name))
for _name in ORIGINAL_AUGMENTATIONS:
    AUGMENTATIONS.register(_name, _original(_name))
