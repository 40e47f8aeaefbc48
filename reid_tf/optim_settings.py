"""The optimiser's settings and the scoring's, declared once as every section of config.py (which
imports them into its sections)."""

from __future__ import annotations

from dataclasses import dataclass

from reid_tf import phrases
from reid_tf.settings import ORIGINAL, ConfigError, check_fields, declared, setting

PROTOCOLS = ("market1501", "official", "original", "no_cameras")


@dataclass(frozen=True)
class OptimizerConfig:
    initial_learning_rate: float = setting(1e-4, "Adam's learning rate.", lower=0.0, words=phrases.rate)
    decay_rate: float = setting(0.1, "Exponential decay factor per decay_steps.", lower=0.0, upper=1.0)
    decay_steps: int = setting(10000, "Steps per decay_rate.", lower=1)
    staircase: bool = setting(False, "Decay in steps (every decay_steps) rather than smoothly.")
    lr_schedule: str = setting(
        "exponential", "exponential: by --decay_rate every --decay_steps; piecewise: --lr_values between"
        " --lr_boundaries (--initial_learning_rate unused); cosine: to 0 over --decay_steps.",
        choices=("exponential", "piecewise", "cosine"))
    lr_boundaries: tuple[int, ...] = setting((), "Piecewise schedule: the steps where the rate changes.",
                                             lower=0)
    lr_values: tuple[float, ...] = setting((), "Piecewise schedule: the rates, one more than --lr_boundaries.",
                                           lower=0.0)
    warmup_steps: int = setting(0, "Linear warm-up steps (0 = none).", lower=0,
                                words=lambda v, c: (f"warm-up {v} steps from"
                                                    f" {phrases.number(c.optimizer.warmup_factor)}×") if v else "")
    warmup_factor: float = setting(0.01, "The warm-up starts at this fraction of the scheduled rate.",
                                   lower=0.0, upper=1.0)
    weight_decay: float = setting(0.0, "L2 penalty wd/2*|w|^2 on every trained weight, as PyTorch Adam's"
                                  " weight_decay (BoT: 5e-4).", lower=0.0,
                                  words=lambda v, c: f"weight decay {phrases.number(v)}" if v else "")
    adam_epsilon: float = setting(1e-7, "Adam's epsilon (Keras: 1e-7; TF1's AdamOptimizer, the original's:"
                                  " 1e-8).", lower=0.0, group=ORIGINAL,
                                  words=lambda v, c: f"Adam ε {phrases.number(v)}" if v != 1e-7 else "")

    def validate(self) -> None:
        check_fields(self, declared(OptimizerConfig, "optimizer", "Optimiser", "training"))
        if self.lr_schedule == "piecewise":
            check_piecewise(self)


def check_piecewise(cfg: OptimizerConfig) -> None:
    """The piecewise schedule's rule (config validation and the schedule's builder both ask it)."""
    if len(cfg.lr_values) != len(cfg.lr_boundaries) + 1 or not cfg.lr_boundaries:
        raise ConfigError(f"--lr_schedule=piecewise needs --lr_boundaries (got {len(cfg.lr_boundaries)}) and one"
                          f" more --lr_values (got {len(cfg.lr_values)})")
    if list(cfg.lr_boundaries) != sorted(set(cfg.lr_boundaries)):
        raise ConfigError(f"--lr_boundaries must increase, got {','.join(map(str, cfg.lr_boundaries))}")


@dataclass(frozen=True)
class ScoringConfig:
    protocol: str = setting(
        "market1501", "market1501 (torchreid, fast-reid); official (Market-1501's compute_AP.m); original"
        " (the 2017 code's: no camera filtering, mAP over the whole ranking and mAP_at_200); no_cameras (data"
        " without camera ids: a query leaves only its own file out of its ranking, Hermans et al.'s"
        " diagonal; mAP as market1501's).",
        choices=PROTOCOLS, resumable=True, words=lambda v, c: f"{v} protocol" if v != "market1501" else "")
    rerank_impl: str = setting(
        "zhong", "zhong: Zhong et al.'s k-reciprocal re-ranking; original: the 2017 code's per-probe version"
        " over each probe's top 100, with its bug kept (a neighbour after a removed one goes unchecked).",
        choices=("zhong", "original"), resumable=True)
    k1: int = setting(20, "Re-ranking k1.", lower=1, resumable=True)
    k2: int = setting(6, "Re-ranking k2.", lower=1, resumable=True)
    lambda_value: float = setting(0.3, "Re-ranking weight of the original distance.", lower=0.0, upper=1.0,
                                  resumable=True)

    def validate(self) -> None:
        check_fields(self, declared(ScoringConfig, "scoring", "Scoring", "training"))
