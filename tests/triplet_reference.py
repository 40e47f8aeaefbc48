"""TensorFlow Addons' batch-hard triplet loss, step for step, and the cases both losses' tests
check against it (tensorflow-addons cannot be imported with Keras 3)."""

import numpy as np
import tensorflow as tf


def addons_triplet_hard_loss(labels, embeddings, margin=1.0, soft=False):
    """TensorFlow Addons' triplet_hard_loss (distance_metric="L2"), step for step, as an oracle:
    tensorflow-addons cannot be imported with Keras 3."""
    embeddings = tf.cast(embeddings, tf.float32)
    labels = tf.reshape(labels, [-1, 1])
    sq = (tf.reduce_sum(tf.square(embeddings), 1, keepdims=True)
          + tf.reduce_sum(tf.square(tf.transpose(embeddings)), 0, keepdims=True)
          - 2.0 * tf.matmul(embeddings, tf.transpose(embeddings)))
    sq = tf.maximum(sq, 0.0)
    error_mask = tf.cast(tf.less_equal(sq, 0.0), tf.float32)
    pdist = tf.sqrt(sq + error_mask * 1e-16) * (1.0 - error_mask)
    n = tf.shape(embeddings)[0]
    pdist = pdist * (tf.ones_like(pdist) - tf.linalg.diag(tf.ones([n])))
    adjacency = tf.equal(labels, tf.transpose(labels))
    adjacency_not = tf.cast(tf.logical_not(adjacency), tf.float32)
    row_max = tf.reduce_max(pdist, 1, keepdims=True)
    hard_neg = tf.reduce_min((pdist - row_max) * adjacency_not, 1, keepdims=True) + row_max
    mask_pos = tf.cast(adjacency, tf.float32) - tf.linalg.diag(tf.ones([n]))
    row_min = tf.reduce_min(pdist, 1, keepdims=True)
    hard_pos = tf.reduce_max((pdist - row_min) * mask_pos, 1, keepdims=True) + row_min
    if soft:
        loss = tf.math.log1p(tf.math.exp(hard_pos - hard_neg))
    else:
        loss = tf.maximum(hard_pos - hard_neg + margin, 0.0)
    return tf.reduce_mean(loss)


def value_and_grad(fn, emb):
    emb = tf.constant(emb, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(emb)
        value = fn(emb)
    return value.numpy(), tape.gradient(value, emb).numpy()


CASES = {
    "random": (np.random.default_rng(0).normal(size=(12, 8)), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]),
    # An anchor with no positive (pid 9) and duplicated embeddings (exact zero distances, ties).
    "singleton_and_duplicates": (
        np.concatenate([np.random.default_rng(1).normal(size=(6, 4))] * 2)[:9],
        [0, 0, 1, 1, 2, 2, 0, 1, 9],
    ),
    "one_identity": (np.random.default_rng(2).normal(size=(5, 3)), [4] * 5),  # no negatives
}
