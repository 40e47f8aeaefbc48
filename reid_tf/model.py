"""The embedding model: raw RGB pixels [0, 255] -> backbone -> pooling -> head -> embeddings."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from reid_tf import backbones
from reid_tf.backbones import backbone_of, build_backbone  # noqa: F401 - public here too (reid_tf.model.build_backbone)
from reid_tf.config import ModelConfig, RunConfig
from reid_tf.constants import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD
from reid_tf.fused_bn import ModedBatchNormalization


@keras.saving.register_keras_serializable("reid_tf")
class PixelPreprocessing(keras.layers.Layer):
    """The backbone's own normalisation of [0, 255] RGB pixels, inside the model ("unit": the
    original's [0, 1], whatever the backbone)."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x):
        x = tf.cast(x, self.compute_dtype)
        if self.mode == "caffe":  # keras.applications.resnet50: RGB->BGR, ImageNet mean removed
            mean = tf.constant(CAFFE_MEAN_BGR, self.compute_dtype)
            return x[..., ::-1] - mean
        if self.mode == "torch":  # DenseNet, OSNet (torchreid): [0, 1], ImageNet mean and std
            mean = tf.constant(IMAGENET_MEAN, self.compute_dtype)
            std = tf.constant(IMAGENET_STD, self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "none":  # the network normalises inside itself
            return x
        return x / 127.5 - 1.0  # "tf" mode: [-1, 1]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable("reid_tf")
class HeadBatchNormalization(ModedBatchNormalization):
    """The head's batch norm, in mode --head_bn: train (Keras'), inference_init (always the
    moving statistics, which then never leave 0 and 1), or batch_no_update (batch statistics in
    training, the moving ones never updated: the original's tf.layers.batch_normalization whose
    update ops nothing ran)."""

    def call(self, inputs, training=None, mask=None):
        if self.mode == "inference_init":
            training = False
        if self.mode != "batch_no_update" or not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        x = keras.ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, mask)
        out = keras.ops.batch_normalization(x, mean, variance, self.axis, offset=self.beta, scale=self.gamma,
                                            epsilon=self.epsilon)
        return keras.ops.cast(out, self.compute_dtype)


def _initializer(config: ModelConfig, stddev: float, seed: int | None):
    if config.head_init == "truncated_normal":  # Keras' cuts at 2 sigma, as TF1's
        return keras.initializers.TruncatedNormal(stddev=stddev, seed=seed)
    return "glorot_uniform"  # the Keras default


def build_model(input_shape: tuple[int, int, int] = (224, 112, 3), config: ModelConfig | None = None,
                seed: int | None = None, **settings) -> keras.Model:
    """Pixels [batch, H, W, 3] in [0, 255] -> float32 embeddings [batch, embedding_dim], as the
    model settings (`config`, or its defaults, with `settings` replacing some) describe.

    `trainable="head"` freezes the backbone, whose BatchNorm then runs in inference mode;
    `head="fc512"` is OSNet's own fc (Linear 512, BatchNorm1d, ReLU), whose output is the
    embedding (`embedding_dim` unused). The
    head's BatchNorm is synchronised across replicas, so a distributed batch is normalised as
    one. With `neck="bnneck"` the model returns {"embeddings": the `neck_feat` feature,
    "features": before the neck, "neck": after it} (see `embeddings_of`).
    """
    m = dataclasses.replace(config or ModelConfig(), **settings)
    m.validate()
    base = build_backbone(m.backbone, m.backbone_weights, input_shape, m.last_stride, m.backbone_bn, m.backbone_init)
    base.trainable = m.trainable == "all"
    inputs = keras.Input(input_shape, name="images")
    mode = "unit" if m.pixel_range == "unit" else backbones.preprocessing(m.backbone)
    x = PixelPreprocessing(mode, name="preprocessing")(inputs)
    x = base(x, training=None if m.trainable == "all" else False)
    x = {"avg": keras.layers.GlobalAveragePooling2D(name="avg_pool"),
         "max": keras.layers.GlobalMaxPooling2D(name="max_pool"),
         "none": keras.layers.Flatten(name="flatten")}[m.pooling](x)

    def seeded(i):
        return None if seed is None else seed + i

    if m.head in ("fc1024", "fc512"):
        width, bn = (1024, {}) if m.head == "fc1024" else (512, {"momentum": 0.9, "epsilon": 1e-5})
        x = keras.layers.Dense(width, use_bias=m.head == "fc512", name="fc1",
                               kernel_initializer=_initializer(m, m.fc1_init_stddev, seeded(0)))(x)
        x = HeadBatchNormalization(m.head_bn, synchronized=True, name="fc1_bn", **bn)(x)
        x = keras.layers.ReLU(name="fc1_relu")(x)
    if m.dropout > 0:
        x = keras.layers.Dropout(m.dropout, seed=seed, name="dropout")(x)
    if m.head in ("none", "fc512"):  # the pooled feature (BoT), or OSNet's fc512 output, is the embedding
        x = keras.layers.Activation("linear", dtype="float32", name="embedding")(x)
    else:
        last, stddev = ("fc1", m.fc1_init_stddev) if m.head == "fc" else ("fc2", m.fc2_init_stddev)
        x = keras.layers.Dense(m.embedding_dim, use_bias=m.embedding_bias, dtype="float32", name=last,
                               kernel_initializer=_initializer(m, stddev, seeded(1)))(x)
    if m.output_activation == "softmax":
        x = keras.layers.Softmax(dtype="float32", name="softmax")(x)
    if m.neck == "none":
        return _with_head_weights(keras.Model(inputs, x, name=f"reid_{m.backbone}"), m)
    # BoT's BNNeck: a BatchNorm whose shift is frozen at 0 (no beta at all: center=False).
    # Momentum and epsilon as PyTorch's BatchNorm1d, which BoT uses.
    after = keras.layers.BatchNormalization(center=False, momentum=0.9, epsilon=1e-5, synchronized=True,
                                            dtype="float32", name="bnneck")(x)
    outputs = {"embeddings": after if m.neck_feat == "after" else x, "features": x, "neck": after}
    return _with_head_weights(keras.Model(inputs, outputs, name=f"reid_{m.backbone}"), m)


def _with_head_weights(model: keras.Model, m: ModelConfig) -> keras.Model:
    if m.head_weights:
        from reid_tf import torch_zoo

        torch_zoo.load_head_weights(model, m.head_weights)
    return model


def embeddings_of(outputs) -> tf.Tensor:
    """The embeddings of a model's outputs, whichever the model (plain, or with a neck)."""
    return outputs["embeddings"] if isinstance(outputs, dict) else outputs


def build_id_classifier(num_classes: int, seed: int | None = None) -> keras.layers.Layer:
    """BoT's training-only identity classifier: a bias-free linear layer, weights N(0, 0.001^2)."""
    return keras.layers.Dense(
        num_classes, use_bias=False, dtype="float32", name="id_classifier",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.001, seed=seed))


def build_run_model(config: RunConfig, backbone_weights: str | None = None) -> keras.Model:
    """The model a run's config describes: the one builder of training, export and evaluation.
    `backbone_weights="none"` leaves the weights to a checkpoint."""
    m = config.model if backbone_weights is None else dataclasses.replace(
        config.model, backbone_weights=backbone_weights)
    return build_model((config.data.image_height, config.data.image_width, 3), m, config.train.seed)


def activation_maps(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """torchreid's activation maps: per image, the sum over channels of the squared last feature
    map of the backbone (its channel-wise squared L2 norm), L2-normalised over positions."""
    features = backbone_of(model)(model.get_layer("preprocessing")(images), training=False)
    maps = tf.reduce_sum(tf.square(tf.cast(features, tf.float32)), axis=-1)
    flat = tf.reshape(maps, [tf.shape(maps)[0], -1])
    return tf.reshape(tf.math.l2_normalize(flat, axis=1), tf.shape(maps)).numpy()


def tracked_variables(model: keras.Model) -> list[tf.Variable]:
    """The model's variables as TensorFlow tracks them, in the model's order: what an export saves
    (a tf.Module holding them saves far faster than one holding the Keras layers) and reads back."""
    return [v.value for v in model.weights]
