"""Unsupervised adaptation to a target's cameras, as Cluster Contrast (Dai et al. 2021) does it: the
target's images clustered into pseudo-identities (reid_tf.clusters), a memory of the clusters'
centroids moved by momentum, an InfoNCE loss of each image against every centroid, P x K batches
of pseudo-identities, and the target clustered again every --cluster_every steps. The target's
identity labels are never read for training: the records it trains on carry pid -1 until a
clustering gives them a pseudo-identity; the true ones go to the clusters' report alone."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf import clusters, datasets, evaluate, hooks, run_dir
from reid_tf import config as config_lib
from reid_tf.datasets.records import Record, drop_unreadable
from reid_tf.model import embeddings_of
from reid_tf.resume import TrainingError


@dataclasses.dataclass
class Target:
    """The target's training images without labels, their true identities for the report only,
    and its query and gallery where its layout has them (for target_mAP)."""

    records: list[Record]
    truth: np.ndarray | None
    query: list[Record]
    gallery: list[Record]


def load_target(config: config_lib.RunConfig) -> Target:
    """The target's images as --adapt_to and --adapt_data_dir give them, unreadable ones left out."""
    a = config.adapt
    cfg = dataclasses.replace(config.data, dataset=a.adapt_to, data_dir=a.adapt_data_dir, valid_dataset="")
    try:
        splits = datasets.load_dataset(a.adapt_to, a.adapt_data_dir, cfg)
        train = drop_unreadable(splits["train"])
    except datasets.DatasetError as e:
        raise TrainingError(f"--adapt_to={a.adapt_to} --adapt_data_dir={a.adapt_data_dir}: {e}") from None
    if len(train) <= a.cluster_min_samples:
        raise TrainingError(f"--adapt_data_dir={a.adapt_data_dir} has {len(train)} readable training images;"
                            f" a cluster needs at least --cluster_min_samples={a.cluster_min_samples}: give the"
                            " target more images")
    truth = np.array([r.pid for r in train]) if all(r.pid >= 0 for r in train) else None
    query, gallery = (drop_unreadable(splits.get(k) or []) for k in ("query", "gallery"))
    return Target([r._replace(pid=-1) for r in train], truth, query, gallery)


class ClusterMemory:
    """The centroids of the current pseudo-identities (L2-normalised rows; the first `count` rows
    hold them) and each target image's pseudo-identity (-1: an outlier), checkpointed with the run
    so that a resumed adaptation goes on with the clusters it had."""

    def __init__(self, images: int, dim: int):
        self.centroids = tf.Variable(tf.zeros([images, dim]), trainable=False, name="cluster_memory")
        self.count = tf.Variable(0, trainable=False, name="cluster_count")
        self.labels = tf.Variable(tf.fill([images], -1), trainable=False, name="pseudo_labels")

    def trackables(self) -> dict:
        return {"cluster_memory": self.centroids, "cluster_count": self.count, "pseudo_labels": self.labels}

    def reset(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Each cluster's centroid from its members' normalised features, as Cluster Contrast starts them."""
        f = _normalise(np.asarray(features, np.float32))
        kept = labels >= 0
        count = int(labels.max()) + 1
        sums = np.zeros((count, f.shape[1]), np.float32)
        np.add.at(sums, labels[kept], f[kept])
        rows = np.zeros(self.centroids.shape, np.float32)
        rows[:count] = _normalise(sums)
        self.centroids.assign(rows)
        self.count.assign(count)
        self.labels.assign(labels.astype(np.int32))

    def loss_fn(self, temperature: float):
        """InfoNCE of each normalised embedding against every centroid, over the global batch."""
        def loss(outputs, labels, gather):
            features = gather(tf.math.l2_normalize(tf.cast(embeddings_of(outputs), tf.float32), axis=1))
            labels = gather(labels)
            centroids = tf.slice(self.centroids, [0, 0], [self.count, -1])
            logits = tf.matmul(features, centroids, transpose_b=True) / temperature
            value = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), labels), tf.float32))
            return value, {"contrastive_loss": value, "memory_accuracy": accuracy,
                           "_features": tf.stop_gradient(features), "_labels": labels}
        return loss

    def updater(self, momentum: float):
        """After each step: each pseudo-identity of the batch moves its centroid to m x itself plus
        (1 - m) x the batch's mean feature of it, then to unit length (Cluster Contrast's update,
        with the identity's K images averaged rather than applied one by one)."""
        def update(stats: dict) -> None:
            ids, slot = tf.unique(stats["_labels"])
            means = tf.math.unsorted_segment_mean(stats["_features"], slot, tf.size(ids))
            moved = tf.math.l2_normalize(momentum * tf.gather(self.centroids, ids) + (1 - momentum) * means, axis=1)
            self.centroids.scatter_update(tf.IndexedSlices(moved, ids))
        return update


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class AdaptHook(hooks.Hook):
    """From step --adapt_after on: cluster the target (again every --cluster_every steps), start the
    memory, and train on the pseudo-identities with the contrastive step. Each clustering's row
    (clusters, outliers, purity, nmi, target_mAP) goes to validation.jsonl."""

    def __init__(self, config: config_lib.RunConfig, target: Target, memory: ClusterMemory, embed, adapt_step,
                 make_iterator, output_dir: str, is_chief: bool):
        self.config, self.target, self.memory, self.embed = config, target, memory, embed
        self.adapt_step, self.make_iterator, self.is_chief = adapt_step, make_iterator, is_chief
        self.path = os.path.join(output_dir, run_dir.VALIDATIONS)

    def before_train(self, loop: hooks.Loop) -> None:
        if loop.current < self.config.adapt.adapt_after:
            return
        if int(self.memory.count.numpy()) == 0:
            self.recluster(loop)
        else:  # resumed: the checkpoint's clusters
            self.switch(loop)

    def after_step(self, loop: hooks.Loop) -> None:
        since = loop.current - self.config.adapt.adapt_after
        if since >= 0 and since % self.config.adapt.cluster_every == 0 and loop.current < loop.max_steps:
            self.recluster(loop)

    def after_train(self, loop: hooks.Loop) -> None:
        if loop.stopped_by is None and self.is_chief and self.target.query and self.target.gallery:
            row = {"step": loop.current, "target_mAP": self.target_map()}
            run_dir.append_row(self.path, row)
            logging.info("step %d: target mAP %.4f", loop.current, row["target_mAP"])

    def target_map(self) -> float:
        """mAP of the target's own query against its gallery (its labels: scoring only)."""
        d = self.config.data
        q, g = (evaluate.embed_records(self.embed, r, d.image_height, d.image_width, crop=d.crop)
                for r in (self.target.query, self.target.gallery))
        return round(evaluate.score(q[0], g[0], q[1], g[1], q[2], g[2], self.config.scoring)["mAP"], 6)

    def recluster(self, loop: hooks.Loop) -> None:
        a, d = self.config.adapt, self.config.data
        features = evaluate.embed_records(self.embed, self.target.records, d.image_height, d.image_width,
                                          crop=d.crop)[0]
        try:
            settings = clusters.ClusterSettings(a.cluster_eps, a.cluster_min_samples, a.cluster_k1,
                                                camera_centred=a.cluster_camera_centred)
            labels = clusters.pseudo_labels(features, settings, np.array([r.camid for r in self.target.records]))
        except clusters.ClusteringError as e:
            raise TrainingError(f"--adapt_data_dir={a.adapt_data_dir}: {e}") from None
        found = int(labels.max()) + 1
        if found == 0 and int(self.memory.count.numpy()):
            logging.warning("step %d: the clustering found no cluster (every image an outlier at --cluster_eps=%g):"
                            " the previous pseudo-identities are kept", loop.current, a.cluster_eps)
        elif found < d.return_id_num:
            raise TrainingError(
                f"step {loop.current}: the target's clustering found {found} pseudo-identities"
                f" ({int((labels < 0).sum())} outliers of {len(labels)} images), fewer than P={d.return_id_num}"
                f" (--return_id_num){' (a collapse into one)' if found == 1 else ''}: change --cluster_eps"
                f" (now {a.cluster_eps}) or --cluster_min_samples, or lower --return_id_num; the run resumes"
                " from its last checkpoint")
        else:
            self.memory.reset(features, labels)
        self.record(loop.current, self.memory.labels.numpy())
        self.switch(loop)

    def switch(self, loop: hooks.Loop) -> None:
        labels = self.memory.labels.numpy()
        records = [r._replace(pid=int(y)) for r, y in zip(self.target.records, labels) if y >= 0]
        loop.train_step, loop.iterator = self.adapt_step, self.make_iterator(records, loop.current)

    def record(self, step: int, labels: np.ndarray) -> None:
        """The clustering's row: its counts, and against the true identities where the target has them."""
        if not self.is_chief:
            return
        row = {"step": step, **clusters.report(labels, self.target.truth)}
        if self.target.query and self.target.gallery:
            row["target_mAP"] = self.target_map()
        run_dir.append_row(self.path, row)
        logging.info("step %d: the target clustered into %s", step, ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                                               if k != "step"))
