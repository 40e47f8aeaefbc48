"""What a train step minimises: the batch-hard triplet loss, plus BoT's training-only identity
head (an ID classifier, center-loss centres) and weight decay when configured."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

from reid_tf import config as config_lib
from reid_tf import optim
from reid_tf.losses import batch_hard_triplet_loss, batch_stats, center_loss, identity_accuracy, identity_loss
from reid_tf.model import build_id_classifier


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
