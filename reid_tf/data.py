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

from reid_tf.augment import AUGMENTATIONS, ORIGINAL_AUGMENTATIONS, ORIGINAL_OPS, augment_image, original_slot_ops
from reid_tf.datasets import DatasetError, Record
from reid_tf.images import decode_image, load_eval_image

# The pipeline's functions branch only on Python values or through tf.cond: AutoGraph's source
# rewrite, which tf.data applies by default, would cost seconds at every process's first run.
_plain = tf.autograph.experimental.do_not_convert


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
        .map(_plain(lambda i: tf.cast(i, tf.int32)))
        .batch(p, drop_remainder=True)
        .enumerate()
    )
    return ids.map(_plain(lambda i, b: sample(tf.cast(i, tf.int32), b)))


def train_dataset(
    records: Sequence[Record], p: int, k: int, height: int, width: int,
    augment: str = "basic", seed: int = 0, num_shards: int = 1, shard: int = 0,
    batch_size: int | None = None, crop: str = "none", original_ops: tuple[str, ...] = ORIGINAL_OPS,
) -> tf.data.Dataset:
    """Endless (images [B, H, W, 3] float32, pids [B] int32) batches of P ids x K images.

    With `num_shards` > 1 (one per worker), every shard draws the same global P x K index
    stream and decodes only its own slice of each global batch, in `batch_size` pieces (one per
    replica); the slices of all shards, in shard order, are the single-shard batch exactly,
    augmentation included, since each image's random seed is its global position.
    """
    AUGMENTATIONS.lookup(augment)
    share = p * k // num_shards
    batch_size = batch_size or share
    if share * num_shards != p * k or share % batch_size:
        raise ValueError(f"the batch P*K={p * k} does not split into {num_shards} shards"
                         f" of batches of {batch_size}")
    paths = tf.constant([r.path for r in records])
    labels = tf.constant([r.pid for r in records], tf.int32)
    first = shard * share
    slot_ops = tf.constant(original_slot_ops(augment, p * k, seed, original_ops) if augment in ORIGINAL_AUGMENTATIONS
                           else np.zeros((p * k, len(ORIGINAL_OPS)), bool))

    def own_slice(batch_number, indices):
        positions = batch_number * p * k + first + tf.range(share, dtype=tf.int64)
        return positions, indices[first:first + share]

    def load(position, index):
        image = decode_image(tf.io.read_file(tf.gather(paths, index)))
        seed_pair = tf.stack([tf.cast(seed, tf.int64) + 1_000_003, position])
        ops = tf.gather(slot_ops, position % (p * k))  # the batch slot's ops, fixed for the run
        return augment_image(image, height, width, augment, seed_pair, crop, ops), tf.gather(labels, index)

    return (
        pk_index_batches([r.pid for r in records], p, k, seed)
        .enumerate()
        .map(_plain(own_slice))
        .unbatch()
        .map(_plain(load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def eval_dataset(
    records: Sequence[Record], height: int, width: int, batch_size: int = 64, crop: str = "none"
) -> tf.data.Dataset:
    """(images, pids, camids) batches of every record once, in order, the last batch partial."""
    paths = tf.constant([r.path for r in records], tf.string)
    pids = tf.constant([r.pid for r in records], tf.int32)
    camids = tf.constant([r.camid for r in records], tf.int32)
    return (
        tf.data.Dataset.from_tensor_slices((paths, pids, camids))
        .map(
            _plain(lambda path, pid, cam: (load_eval_image(tf.io.read_file(path), height, width, crop), pid, cam)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
