"""The embedding model: raw RGB pixels [0, 255] -> backbone -> pooling -> head -> embeddings."""

from __future__ import annotations

import os
import re

import keras
import tensorflow as tf

BACKBONES = ("resnet50", "resnet50v2", "small")
POOLINGS = ("avg", "max", "none")
HEADS = ("fc1024", "fc", "none")
NECKS = ("none", "bnneck")
NECK_FEATS = ("before", "after")
LAST_STRIDES = (1, 2)
OUTPUT_ACTIVATIONS = ("none", "softmax")
HEAD_INITS = ("truncated_normal", "keras_default")
TRAINABLE = ("all", "head")


class WeightsUnavailableError(RuntimeError):
    """Backbone weights could not be had (offline, or a bad file)."""


@keras.saving.register_keras_serializable("reid_tf")
class PixelPreprocessing(keras.layers.Layer):
    """The backbone's own normalisation of [0, 255] RGB pixels, inside the model."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x):
        x = tf.cast(x, self.compute_dtype)
        if self.mode == "caffe":  # keras.applications.resnet50: RGB->BGR, ImageNet mean removed
            mean = tf.constant([103.939, 116.779, 123.68], self.compute_dtype)
            return x[..., ::-1] - mean
        return x / 127.5 - 1.0  # "tf" mode: [-1, 1]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable("reid_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization of 4-D inputs by TF's fused kernel (one pass each way; oneDNN, cuDNN).

    Keras 3 computes batch norm op by op (moments, then scale and shift, with casts under mixed
    precision): measured here, that is 3.5x slower and most of a ResNet50 train step on a CPU.
    Same weights and results; other cases fall back to the Keras computation.
    """

    def call(self, inputs, training=None, mask=None):
        if (mask is not None or self.renorm or self.synchronized or not (self.scale and self.center)
                or len(inputs.shape) != 4 or self.axis not in (-1, 3)):
            return super().call(inputs, training=training, mask=mask)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            # The kernel returns the Bessel-corrected variance; Keras averages the biased one.
            n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
            variance = variance * (n - 1.0) / n
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, is_training=False)
        return tf.cast(y, self.compute_dtype)


def rebuilt_backbone(model: keras.Model, last_stride: int = 2) -> keras.Model:
    """A copy of a ResNet whose BatchNormalization layers use the fused kernel, and whose last
    downsampling has stride `last_stride` (BoT's "last stride 1": a feature map twice as tall
    and wide; the weights are the same, since only strides change)."""
    final = tuple(model.output.shape[1:3])
    last = {layer.name for layer in model.layers if tuple(getattr(layer, "strides", (1, 1))) == (2, 2)
            and tuple(layer.output.shape[1:3]) == final}

    def clone(layer):
        cls = FusedBatchNormalization if type(layer) is keras.layers.BatchNormalization else type(layer)
        config = layer.get_config()
        if layer.name in last:
            config["strides"] = (last_stride, last_stride)
        return cls.from_config(config)

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def small_backbone(input_shape: tuple[int, int, int]) -> keras.Model:
    """A 4-stage CNN (conv-BN-ReLU x2, pool): learns the synthetic data on a CPU in minutes."""
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128, 256):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = FusedBatchNormalization()(x)
            x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    return keras.Model(inputs, x, name="small")


def build_backbone(name: str, weights: str, input_shape: tuple[int, int, int],
                   last_stride: int = 2) -> keras.Model:
    """A headless backbone returning its last feature map; weights: imagenet, none or a path."""
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
    if last_stride not in LAST_STRIDES:
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    if last_stride != 2 and name == "small":
        raise ValueError("last_stride=1 applies to the ResNet backbones, not --backbone=small")
    if min(input_shape[:2]) < 32:
        raise ValueError(f"input {input_shape[0]}x{input_shape[1]} is too small: need >= 32 px")
    imagenet = weights == "imagenet"
    if name == "small":
        if imagenet:
            raise WeightsUnavailableError(
                "the small backbone has no ImageNet weights: use --backbone_weights=none|PATH"
            )
        backbone = small_backbone(input_shape)
    else:
        ctor = keras.applications.ResNet50 if name == "resnet50" else keras.applications.ResNet50V2
        try:
            backbone = ctor(include_top=False, weights="imagenet" if imagenet else None,
                            input_shape=input_shape)
        except Exception as e:  # noqa: BLE001 - Keras raises plain Exception on a failed download
            if not imagenet:
                raise
            url = re.search(r"https?://\S+?\.h5", str(e))
            source = f" from {url.group(0)}" if url else f" ({str(e).splitlines()[0][:120]})"
            raise WeightsUnavailableError(
                f"could not download the ImageNet weights of {name}{source}; offline? use"
                " --backbone_weights=none|PATH (a .weights.h5 of the backbone: see the README)"
            ) from None
    if weights not in ("imagenet", "none"):
        if not os.path.isfile(weights):
            raise WeightsUnavailableError(
                f"backbone weights file {weights} not found: use --backbone_weights=none|PATH"
            )
        try:
            backbone.load_weights(weights)
        except Exception as e:  # noqa: BLE001
            raise WeightsUnavailableError(
                f"cannot load backbone weights {weights} into {name}: {str(e).splitlines()[0][:200]}"
            ) from None
    return backbone if name == "small" else rebuilt_backbone(backbone, last_stride)


def _head_initializer(head_init: str, stddev: float, seed: int | None):
    if head_init == "truncated_normal":
        return keras.initializers.TruncatedNormal(stddev=stddev, seed=seed)
    return "glorot_uniform"  # the Keras default


def build_model(
    input_shape: tuple[int, int, int] = (224, 112, 3),
    backbone: str = "resnet50",
    backbone_weights: str = "imagenet",
    pooling: str = "avg",
    head: str = "fc1024",
    embedding_dim: int = 128,
    output_activation: str = "none",
    dropout: float = 0.0,
    head_init: str = "truncated_normal",
    head_init_stddev: float = 0.001,
    trainable: str = "all",
    seed: int | None = None,
    neck: str = "none",
    neck_feat: str = "after",
    last_stride: int = 2,
) -> keras.Model:
    """Pixels [batch, H, W, 3] in [0, 255] -> float32 embeddings [batch, embedding_dim].

    `trainable="head"` freezes the backbone, whose BatchNorm then runs in inference mode.
    The head's BatchNorm is synchronised across replicas so that a distributed batch is
    normalised as one batch. `head="none"` makes the pooled feature the embedding (BoT).
    With `neck="bnneck"` the model returns {"embeddings": the `neck_feat` feature, "features":
    before the neck, "neck": after it} (see `embeddings_of`).
    """
    for value, allowed, name in (
        (pooling, POOLINGS, "pooling"), (head, HEADS, "head"), (trainable, TRAINABLE, "trainable"),
        (output_activation, OUTPUT_ACTIVATIONS, "output_activation"), (head_init, HEAD_INITS, "head_init"),
        (neck, NECKS, "neck"), (neck_feat, NECK_FEATS, "neck_feat"),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")

    base = build_backbone(backbone, backbone_weights, input_shape, last_stride)
    base.trainable = trainable == "all"
    inputs = keras.Input(input_shape, name="images")
    mode = "caffe" if backbone == "resnet50" else "tf"
    x = PixelPreprocessing(mode, name="preprocessing")(inputs)
    x = base(x, training=None if trainable == "all" else False)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)

    def init(i):
        return _head_initializer(head_init, head_init_stddev, None if seed is None else seed + i)

    if head == "fc1024":
        x = keras.layers.Dense(1024, use_bias=False, kernel_initializer=init(0), name="fc1")(x)
        x = keras.layers.BatchNormalization(synchronized=True, name="fc1_bn")(x)
        x = keras.layers.ReLU(name="fc1_relu")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, seed=seed, name="dropout")(x)
    if head == "none":
        x = keras.layers.Activation("linear", dtype="float32", name="embedding")(x)
    else:
        last = "fc2" if head == "fc1024" else "fc1"
        x = keras.layers.Dense(embedding_dim, kernel_initializer=init(1), dtype="float32", name=last)(x)
    if output_activation == "softmax":
        x = keras.layers.Softmax(dtype="float32", name="softmax")(x)
    if neck == "none":
        return keras.Model(inputs, x, name=f"reid_{backbone}")
    # BoT's BNNeck: a BatchNorm whose shift is frozen at 0 (no beta at all: center=False).
    # Momentum and epsilon as PyTorch's BatchNorm1d, which BoT uses.
    after = keras.layers.BatchNormalization(center=False, momentum=0.9, epsilon=1e-5, synchronized=True,
                                            dtype="float32", name="bnneck")(x)
    outputs = {"embeddings": after if neck_feat == "after" else x, "features": x, "neck": after}
    return keras.Model(inputs, outputs, name=f"reid_{backbone}")


def embeddings_of(outputs) -> tf.Tensor:
    """The embeddings of a model's outputs, whichever the model (plain, or with a neck)."""
    return outputs["embeddings"] if isinstance(outputs, dict) else outputs


def build_id_classifier(num_classes: int, seed: int | None = None) -> keras.layers.Layer:
    """BoT's training-only identity classifier: a bias-free linear layer, weights N(0, 0.001^2)."""
    return keras.layers.Dense(
        num_classes, use_bias=False, dtype="float32", name="id_classifier",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.001, seed=seed))


def head_variables(model: keras.Model) -> list:
    """Trainable variables outside the backbone (the layers this project adds)."""
    backbone_names = set(BACKBONES)
    return [
        v for layer in model.layers if layer.name not in backbone_names for v in layer.trainable_weights
    ]


def build_run_model(config, backbone_weights: str | None = None) -> keras.Model:
    """The model a run's config (a `config.RunConfig`) describes: the one builder of training,
    export and evaluation. `backbone_weights="none"` leaves the weights to a checkpoint."""
    m, d = config.model, config.data
    return build_model(
        (d.image_height, d.image_width, 3), backbone=m.backbone,
        backbone_weights=m.backbone_weights if backbone_weights is None else backbone_weights,
        pooling=m.pooling, head=m.head, embedding_dim=m.embedding_dim,
        output_activation=m.output_activation, dropout=m.dropout, head_init=m.head_init,
        head_init_stddev=m.head_init_stddev, trainable=m.trainable, seed=config.train.seed,
        neck=m.neck, neck_feat=m.neck_feat, last_stride=m.last_stride,
    )
