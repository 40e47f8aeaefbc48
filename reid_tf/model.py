"""The embedding model: raw RGB pixels [0, 255] -> backbone -> pooling -> head -> embeddings."""

from __future__ import annotations

import keras
import tensorflow as tf

from reid_tf import backbones
from reid_tf.backbones import (  # noqa: F401 - the model's backbone pieces, named here too
    BackboneError,
    FusedBatchNormalization,
    WeightsUnavailableError,
    backbone_of,
    build_backbone,
    plain_backbone,
    rebuilt_backbone,
    save_backbone_weights,
    small_backbone,
)
from reid_tf.config import HEAD_INITS, HEADS, NECK_FEATS, NECKS, OUTPUT_ACTIVATIONS, POOLINGS, TRAINABLE


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
        if self.mode == "torch":  # DenseNet, OSNet (torchreid): [0, 1], ImageNet mean and std
            mean = tf.constant([0.485, 0.456, 0.406], self.compute_dtype)
            std = tf.constant([0.229, 0.224, 0.225], self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "none":  # the network normalises inside itself
            return x
        return x / 127.5 - 1.0  # "tf" mode: [-1, 1]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


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
    x = PixelPreprocessing(backbones.preprocessing(backbone), name="preprocessing")(inputs)
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
    inner = backbone_of(model)
    return [v for layer in model.layers if layer is not inner for v in layer.trainable_weights]


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
