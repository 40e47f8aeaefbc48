"""Batch norm on TensorFlow's fused kernel, the layer every backbone's batch norm becomes, and the
base of the batch norms that carry a mode (--backbone_bn, --head_bn)."""

from __future__ import annotations

import keras
import tensorflow as tf


class ModedBatchNormalization(keras.layers.BatchNormalization):
    """A batch norm with a training `mode` (its flag's value), kept in its config."""

    def __init__(self, mode: str = "train", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable("reid_tf")
class FusedBatchNormalization(ModedBatchNormalization):
    """BatchNormalization of 4-D inputs by TF's fused kernel (one pass each way; oneDNN, cuDNN).

    Keras 3 computes batch norm op by op (moments, then scale and shift, with casts under mixed
    precision): measured here, that is 3.5x slower and most of a ResNet50 train step on a CPU.
    Same weights and results; other cases fall back to the Keras computation. `mode` is the
    backbone's --backbone_bn: train, frozen (always inference mode) or train_no_update (batch
    statistics in training, the moving ones left as they are).
    """

    def call(self, inputs, training=None, mask=None):
        if self.mode == "frozen":
            training = False
        if (mask is not None or self.renorm or self.synchronized or not (self.scale and self.center)
                or len(inputs.shape) != 4 or self.axis not in (-1, 3)):
            return super().call(inputs, training=training, mask=mask)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            if self.mode == "train_no_update":
                return tf.cast(y, self.compute_dtype)
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
