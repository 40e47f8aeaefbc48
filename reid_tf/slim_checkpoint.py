"""TF1 checkpoints of the 2017 original in: slim's `resnet_v2_50` (the ImageNet `resnet_v2_50.ckpt`, or
a checkpoint its trainer wrote), its head `fc1_add`/`bn1_add`/`fc2_add`, and TF1 Adam's state (the
`/Adam` and `/Adam_1` slots, `beta1_power`, `beta2_power`, `global_step`), read name by name."""

from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf

from reid_tf.errors import ReidError

SLIM_SCOPE = "resnet_v2_50"
# The 2017 head's variables, by the Keras layer and weight that hold them (reid_tf.model's names).
HEAD = {("fc1", "kernel"): "fc1_add/kernel", ("fc2", "kernel"): "fc2_add/kernel",
        **{("fc1_bn", w): f"bn1_add/{w}" for w in ("gamma", "beta", "moving_mean", "moving_variance")}}
_UNIT_PARTS = {"preact_bn": "preact", "0_conv": "shortcut", "1_conv": "conv1", "1_bn": "conv1/BatchNorm",
               "2_conv": "conv2", "2_bn": "conv2/BatchNorm", "3_conv": "conv3"}
_SLIM_WEIGHT = {"kernel": "weights", "bias": "biases"}


class SlimCheckpointError(ReidError, ValueError):
    """A TF1 checkpoint that does not fit the model; the message is one line naming the variable."""


def slim_name(layer: str, weight: str) -> str | None:
    """slim's name of a Keras ResNet50V2 weight (`conv2_block1_1_bn`, `gamma` ->
    `resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/BatchNorm/gamma`); None for another layer."""
    weight = _SLIM_WEIGHT.get(weight, weight)
    if layer == "conv1_conv":
        return f"{SLIM_SCOPE}/conv1/{weight}"
    if layer == "post_bn":
        return f"{SLIM_SCOPE}/postnorm/{weight}"
    match = re.fullmatch(r"conv(\d)_block(\d+)_(\w+)", layer)
    if not match or match.group(3) not in _UNIT_PARTS:
        return None
    block, unit, part = int(match.group(1)) - 1, match.group(2), _UNIT_PARTS[match.group(3)]
    return f"{SLIM_SCOPE}/block{block}/unit_{unit}/bottleneck_v2/{part}/{weight}"


def _weight_name(variable) -> str:
    return variable.path.rsplit("/", 1)[-1]


def is_checkpoint(path: str) -> bool:
    """True where `path` is the prefix of a TF checkpoint (PREFIX.index exists)."""
    return tf.io.gfile.exists(path + ".index")


def reader(prefix: str) -> tf.train.CheckpointReader:
    """The checkpoint's reader, or one line saying it cannot be read."""
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise SlimCheckpointError(f"cannot read the TF1 checkpoint {prefix}: {str(e).splitlines()[0][:160]}") from None


def _pairs(layers, names) -> list[tuple[tf.Variable, str]]:
    return [(v, names(layer.name, _weight_name(v))) for layer in layers for v in layer.weights]


def backbone_pairs(backbone: keras.Model) -> list[tuple[tf.Variable, str]]:
    """(variable, slim name) of every weight of a ResNet50V2 backbone."""
    pairs = _pairs(backbone.layers, slim_name)
    unnamed = [v.path for v, name in pairs if name is None]
    if unnamed or not pairs:
        raise SlimCheckpointError(f"{backbone.name} is not laid out as slim's {SLIM_SCOPE} (first weight without a"
                                  f" slim name: {unnamed[0] if unnamed else 'none'}): use --backbone=resnet50v2_slim")
    return pairs


def model_pairs(model: keras.Model, backbone: keras.Model) -> list[tuple[tf.Variable, str]]:
    """(variable, checkpoint name) of every weight of a run's model: the backbone and the 2017 head."""
    head_layers = [layer for layer in model.layers if layer is not backbone and layer.weights]
    head = _pairs(head_layers, lambda layer, weight: HEAD.get((layer, weight)))
    outside = [v.path for v, name in head if name is None]
    if outside:
        raise SlimCheckpointError(f"the model's {outside[0]} has no counterpart in the 2017 head (fc1_add, bn1_add,"
                                  " fc2_add): the log flagfiles' --head=fc1024 --noembedding_bias reads it")
    return backbone_pairs(backbone) + head


def assign(pairs: list[tuple[tf.Variable, str]], ckpt: tf.train.CheckpointReader, prefix: str) -> None:
    """Every variable from its name in the checkpoint; the first that does not map is named, with
    both shapes where it is there under another shape."""
    shapes = ckpt.get_variable_to_shape_map()
    for variable, name in pairs:
        if name not in shapes:
            raise SlimCheckpointError(f"{prefix} has no {name} (for {variable.path} {tuple(variable.shape)})")
        if tuple(shapes[name]) != tuple(variable.shape):
            raise SlimCheckpointError(f"{prefix}: {name} is {tuple(shapes[name])}, the model's {variable.path} is"
                                      f" {tuple(variable.shape)}")
    for variable, name in pairs:
        variable.assign(ckpt.get_tensor(name).astype(np.float32))


def load_backbone(backbone: keras.Model, prefix: str) -> None:
    """`--backbone_weights=PREFIX`: slim's `resnet_v2_50` from a TF1 checkpoint, moving statistics included."""
    assign(backbone_pairs(backbone), reader(prefix), prefix)


def load_training_state(model: keras.Model, backbone: keras.Model, optimizer: keras.optimizers.Optimizer,
                        step: tf.Variable, prefix: str) -> dict:
    """The model, and where the checkpoint holds them TF1 Adam's moments and step, from a checkpoint
    of the original's trainer; returns what was read (`global_step`, `adam_slots`)."""
    ckpt = reader(prefix)
    pairs = model_pairs(model, backbone)
    assign(pairs, ckpt, prefix)
    shapes = ckpt.get_variable_to_shape_map()
    unused = sorted(set(HEAD.values()) & set(shapes) - {name for _, name in pairs})
    if unused:
        raise SlimCheckpointError(f"{prefix} holds {unused[0]} {tuple(shapes[unused[0]])}, which this model has no"
                                  " place for: the log flagfiles' two-fc head (--head=fc1024) reads it")
    global_step = int(ckpt.get_tensor("global_step")) if "global_step" in shapes else 0
    if "beta1_power" in shapes:
        expected = 0.9 ** (global_step + 1)
        found = float(ckpt.get_tensor("beta1_power"))
        if abs(found - expected) > 1e-5 * expected:
            raise SlimCheckpointError(f"{prefix}: beta1_power {found:.6g} is not 0.9^(global_step + 1) ="
                                      f" {expected:.6g}; Keras' Adam derives it from the step and cannot carry it")
    slots = 0
    trained = {id(v) for v in model.trainable_variables}
    for variable, name in pairs:
        if id(variable) not in trained or f"{name}/Adam" not in shapes:
            continue
        index = optimizer._get_variable_index(variable)
        optimizer._momentums[index].assign(ckpt.get_tensor(f"{name}/Adam"))
        optimizer._velocities[index].assign(ckpt.get_tensor(f"{name}/Adam_1"))
        slots += 1
    optimizer.iterations.assign(global_step)
    step.assign(global_step)
    return {"global_step": global_step, "adam_slots": slots, "variables": len(pairs)}
