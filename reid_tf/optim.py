"""Optimisers and learning-rate schedules of a run: Adam (and SGD for BoT's centres) over
gradients the train step has already summed across replicas, on Keras' own schedules."""

from __future__ import annotations

import keras
import tensorflow as tf

from reid_tf import config as config_lib
from reid_tf.optim_settings import check_piecewise


class _SummedGradients:
    """For gradients the step has already summed over replicas.

    Keras' LossScaleOptimizer applies its inner optimiser inside a cross-replica cond, where the
    inner optimiser's own gradient all-reduce mismatches shapes under MirroredStrategy (Keras
    3.x). So the step all-reduces the gradients itself, before the loss-scale check (which then
    agrees on every replica), and the optimiser reduces nothing more. The two-replica tests
    would catch a double reduction (the gradient times the replica count).
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class SummedGradientsAdam(_SummedGradients, keras.optimizers.Adam):
    """Adam for replica-summed gradients."""


class SummedGradientsSGD(_SummedGradients, keras.optimizers.SGD):
    """SGD for replica-summed gradients (BoT's centre update)."""


@keras.saving.register_keras_serializable("reid_tf")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` times a factor rising linearly from `start_factor` at step 0 to 1 at
    `warmup_steps` (BoT's WarmupMultiStepLR, "linear")."""

    def __init__(self, schedule, warmup_steps: int, start_factor: float = 0.01):
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor

    def __call__(self, step):
        progress = tf.minimum(tf.cast(step, tf.float32) / float(self.warmup_steps), 1.0)
        factor = self.start_factor + (1.0 - self.start_factor) * progress
        return self.schedule(step) * factor

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "warmup_steps": self.warmup_steps, "start_factor": self.start_factor}

    @classmethod
    def from_config(cls, config):
        config = dict(config, schedule=keras.optimizers.schedules.deserialize(config["schedule"]))
        return cls(**config)


def learning_rate_schedule(cfg: config_lib.OptimizerConfig):
    """The configured Keras schedule of the learning rate by step, warm-up included."""
    if cfg.lr_schedule == "exponential":
        schedule = keras.optimizers.schedules.ExponentialDecay(
            cfg.initial_learning_rate, cfg.decay_steps, cfg.decay_rate, staircase=cfg.staircase)
    elif cfg.lr_schedule == "piecewise":
        check_piecewise(cfg)  # a ConfigError, a ValueError
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(b) for b in cfg.lr_boundaries], [float(v) for v in cfg.lr_values])
    elif cfg.lr_schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(cfg.initial_learning_rate, cfg.decay_steps)
    else:
        raise ValueError(f"lr_schedule {cfg.lr_schedule!r}: exponential, piecewise or cosine")
    if cfg.warmup_steps > 0:
        schedule = LinearWarmup(schedule, cfg.warmup_steps, cfg.warmup_factor)
    return schedule


def build_optimizer(cfg: config_lib.OptimizerConfig, mixed_precision: str) -> keras.optimizers.Optimizer:
    """Adam on the configured schedule; loss scaling under float16. Give it summed gradients."""
    optimizer = SummedGradientsAdam(learning_rate_schedule(cfg), epsilon=cfg.adam_epsilon, name="adam")
    if mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
