"""The train step and what it minimises: the batch-hard triplet loss, plus BoT's training-only
identity head (an ID classifier, center-loss centres) and weight decay when configured."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

from reid_tf import config as config_lib
from reid_tf import optim
from reid_tf.losses import batch_hard_triplet_loss, batch_stats, center_loss, identity_accuracy, identity_loss
from reid_tf.model import build_id_classifier, embeddings_of


@dataclasses.dataclass
class IdentityHead:
    """What BoT adds to training only: an identity classifier on the neck features and the
    centres of the center loss, with their SGD. Left out of exports and evaluation."""

    classifier: keras.layers.Layer | None = None
    centers: tf.Variable | None = None
    center_optimizer: keras.optimizers.Optimizer | None = None

    def trackables(self) -> dict:
        """Its checkpointed objects (none when the ID and center losses are off)."""
        named = {"id_classifier": self.classifier, "centers": self.centers,
                 "center_optimizer": self.center_optimizer}
        return {k: v for k, v in named.items() if v is not None}

    def trainable_variables(self) -> list:
        """The variables the main optimiser trains beside the model's (the classifier's)."""
        return self.classifier.trainable_variables if self.classifier is not None else []


def build_identity_head(loss_cfg: config_lib.LossConfig, num_classes: int, feature_dim: int,
                        seed: int) -> IdentityHead:
    """The classifier and centres a loss configuration needs; build inside the strategy's scope."""
    head = IdentityHead()
    if loss_cfg.id_loss_weight > 0:
        head.classifier = build_id_classifier(num_classes, seed)
        head.classifier.build((None, feature_dim))
    if loss_cfg.center_loss_weight > 0:  # BoT: torch.randn centres, SGD(lr 0.5) on them
        head.centers = tf.Variable(tf.random.stateless_normal([num_classes, feature_dim], [seed, 17]),
                                   name="centers")
        head.center_optimizer = optim.SummedGradientsSGD(loss_cfg.center_learning_rate, name="center_sgd")
        head.center_optimizer.build([head.centers])
    return head


def total_loss(
    outputs, pids: tf.Tensor, loss_cfg: config_lib.LossConfig, head: IdentityHead, weight_decay: float,
    variables: list, gather: Callable[[tf.Tensor], tf.Tensor],
) -> tuple[tf.Tensor, dict]:
    """(loss, statistics) of one replica's model outputs, every term over the global batch
    (`gather` collects the replicas' shares). The triplet and center losses see the features
    before the neck, the ID loss the ones after it; weight decay is an L2 term wd/2 |w|^2 in the
    loss, as PyTorch's Adam(weight_decay) that BoT uses."""
    margin = loss_cfg.margin if loss_cfg.margin == "soft" else float(loss_cfg.margin)
    features = outputs["features"] if isinstance(outputs, dict) else outputs
    all_features, all_pids = gather(features), gather(pids)
    loss = batch_hard_triplet_loss(all_features, all_pids, margin, loss_cfg.mining)
    stats = batch_stats(all_features, all_pids, margin)
    if head.classifier is not None or head.centers is not None or weight_decay > 0:
        stats["triplet_loss"] = loss
    if head.classifier is not None:
        neck = outputs["neck"] if isinstance(outputs, dict) else features
        logits = head.classifier(gather(neck))
        stats["id_loss"] = identity_loss(logits, all_pids, loss_cfg.label_smoothing)
        stats["id_accuracy"] = identity_accuracy(logits, all_pids)
        loss += loss_cfg.id_loss_weight * stats["id_loss"]
    if head.centers is not None:
        stats["center_loss"] = center_loss(all_features, all_pids, head.centers)
        loss += loss_cfg.center_loss_weight * stats["center_loss"]
    if weight_decay > 0:
        stats["weight_decay_loss"] = 0.5 * weight_decay * tf.add_n(
            [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables])
        loss += stats["weight_decay_loss"]
    return loss, stats


def make_train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
    loss_cfg: config_lib.LossConfig, jit_compile: bool, head: IdentityHead | None = None,
    weight_decay: float = 0.0, keep_embeddings: bool = False, loss_fn: Callable | None = None,
    after_update: Callable[[dict], None] | None = None,
):
    """A tf.function running one step on the next global batch of a distributed iterator.

    Returns (total loss, statistics); the total is the triplet loss alone unless the ID loss,
    the center loss or weight decay are on. The statistics hold the learning rate the step used,
    and with `keep_embeddings` the global batch's train-mode embeddings (a replay's trace).
    `loss_fn(outputs, labels, gather)` replaces those losses (adaptation's contrastive loss), and
    `after_update(stats)` runs once per step in cross-replica context after the weights moved; the
    statistics whose names start with "_" reach it only.
    """
    head = head or IdentityHead()
    variables = model.trainable_variables + head.trainable_variables()

    def replica_step(images, pids):
        ctx = tf.distribute.get_replica_context()

        def gather(x):  # batch-hard mining needs the whole batch: every replica's share
            # tf.identity places the iterator's tensor on the replica's device: the multi-worker
            # all_gather refuses a tensor without one ("destinations can not be empty").
            return ctx.all_gather(tf.identity(x), axis=0)

        with tf.GradientTape(persistent=head.centers is not None) as tape:
            outputs = model(images, training=True)
            loss, stats = (loss_fn(outputs, pids, gather) if loss_fn else
                           total_loss(outputs, pids, loss_cfg, head, weight_decay, variables, gather))
            # Each replica holds the global loss; the sum of the replicas' gradients is its gradient.
            scaled = loss / ctx.num_replicas_in_sync
            if head.centers is not None:
                center_share = stats["center_loss"] / ctx.num_replicas_in_sync
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = optimizer.scale_loss(scaled)
        # A weight no loss reaches (the BNNeck's scale without an ID loss) gets a zero gradient.
        grads = [tf.zeros(v.shape, tf.float32) if g is None else g
                 for g, v in zip(tape.gradient(scaled, variables), variables)]
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        stats["learning_rate"] = tf.identity(optimizer.learning_rate)  # read before the update moves the step
        if keep_embeddings:
            stats["embeddings"] = gather(embeddings_of(outputs))
        # A NaN step spoils the weights in memory only: the loop stops before any save.
        optimizer.apply_gradients(zip(grads, variables))
        if head.centers is not None:
            _move_centers(head, tape.gradient(center_share, head.centers), ctx)
        return loss, stats

    def global_step(images, pids):
        loss, stats = strategy.run(replica_step, args=(images, pids))
        first = strategy.experimental_local_results  # every replica holds the same global values
        stats = {k: first(v)[0] for k, v in stats.items()}
        if after_update:
            after_update(stats)
        return first(loss)[0], {k: v for k, v in stats.items() if not k.startswith("_")}

    return _on_iterator(global_step, jit_compile)


def _move_centers(head: IdentityHead, center_grad: tf.Tensor, ctx) -> None:
    """BoT moves the centres by the gradient of the unweighted center loss (it divides the centres'
    gradient by the loss weight), with their own SGD."""
    center_grad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, center_grad)
    head.center_optimizer.apply_gradients([(center_grad, head.centers)])


def _on_iterator(global_step: Callable, jit_compile: bool):
    """The step as a tf.function of the iterator, which stays outside XLA's compilation of the rest
    (the optimiser update included). The step has no tensor-dependent Python control flow:
    AutoGraph's source rewrite of it and of every Keras layer it calls would only cost time (about
    6 % of a tiny run's: 10.2 s -> 9.6 s)."""
    compiled_step = tf.function(global_step, jit_compile=True, autograph=False) if jit_compile else global_step

    @tf.function(autograph=False)
    def train_step(iterator):
        images, pids = next(iterator)
        return compiled_step(images, pids)

    return train_step
