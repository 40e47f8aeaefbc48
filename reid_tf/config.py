"""A run's settings as frozen dataclasses, written to and read from `config.json`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "market1501"  # market1501 | duke | csv | synthetic
    data_dir: str = ""
    train_csv: str = ""
    image_height: int = 224
    image_width: int = 112
    augment: str = "basic"  # none | basic | enhanced | bot
    return_id_num: int = 20  # P
    image_num_every_id: int = 4  # K
    valid_ids: int = 50
    train_eval_ids: int = 50
    synthetic_ids: int = 200  # identities of the generated dataset (--dataset=synthetic)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"  # resnet50 | resnet50v2 | small
    backbone_weights: str = "imagenet"  # imagenet | none | PATH
    pooling: str = "avg"  # avg | max | none
    head: str = "fc1024"  # fc1024 | fc | none (the pooled feature is the embedding)
    embedding_dim: int = 128
    output_activation: str = "none"  # none | softmax
    dropout: float = 0.0
    head_init: str = "truncated_normal"  # truncated_normal | keras_default
    head_init_stddev: float = 0.001
    trainable: str = "all"  # all | head
    neck: str = "none"  # none | bnneck (BoT: a BatchNorm with its shift frozen at 0)
    neck_feat: str = "after"  # before | after the neck: what evaluation and exports output
    last_stride: int = 2  # 1 | 2: stride of the ResNet's last downsampling (BoT: 1)


@dataclass(frozen=True)
class LossConfig:
    margin: str = "soft"  # soft | a float
    mining: str = "batch_hard"  # batch_hard | batch_hardest
    id_loss_weight: float = 0.0  # cross-entropy over the training identities (0 = off)
    label_smoothing: float = 0.0  # of the ID loss (BoT: 0.1)
    center_loss_weight: float = 0.0  # center loss on the features before the neck (BoT: 5e-4)
    center_learning_rate: float = 0.5  # SGD on the centres, as BoT (gradient of the unweighted loss)


@dataclass(frozen=True)
class OptimizerConfig:
    initial_learning_rate: float = 1e-4
    decay_rate: float = 0.1
    decay_steps: int = 10000
    staircase: bool = False
    lr_schedule: str = "exponential"  # exponential | piecewise | cosine
    lr_boundaries: tuple[int, ...] = ()  # piecewise: steps where the rate changes
    lr_values: tuple[float, ...] = ()  # piecewise: the rates, one more than boundaries
    warmup_steps: int = 0  # linear warm-up over these steps ...
    warmup_factor: float = 0.01  # ... from this fraction of the scheduled rate (BoT: 0.01)
    weight_decay: float = 0.0  # L2 penalty wd/2 * |w|^2 on every trained weight (BoT: 5e-4)


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 20001
    checkpoint_every: int = 5000
    eval_every: int = 5000
    eval_rerank: bool = False
    eval_before_training: bool = False
    log_every: int = 100
    init_checkpoint: str = ""
    seed: int = 0
    mixed_precision: str = "none"  # none | bfloat16 | float16
    jit_compile: bool = False


# Fields that may differ when a run resumes: they change how long or how loudly it runs,
# not what it computes.
RESUMABLE_FIELDS = frozenset(
    {
        "train.max_steps",
        "train.checkpoint_every",
        "train.eval_every",
        "train.eval_rerank",
        "train.eval_before_training",
        "train.log_every",
        "train.init_checkpoint",
        "data.data_dir",
    }
)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        kwargs = {}
        for name, section in _SECTIONS.items():
            known = {f.name for f in dataclasses.fields(section)}
            values = {k: tuple(v) if isinstance(v, list) else v  # JSON has lists, configs tuples
                      for k, v in d.get(name, {}).items() if k in known}
            kwargs[name] = section(**values)
        return cls(**kwargs)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig,
             "optimizer": OptimizerConfig, "train": TrainConfig}


def config_json(config: RunConfig) -> str:
    """The text of config.json: sorted keys, indented, one trailing newline."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"


def guarded_settings(config: RunConfig) -> dict:
    """The settings a resumed run, and every worker of a run, must share."""
    return {f"{section}.{key}": value for section, values in config.to_dict().items()
            for key, value in values.items() if f"{section}.{key}" not in RESUMABLE_FIELDS}


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """Settings that differ between two runs, ignoring those a resumed run may change."""
    before, after = guarded_settings(old), guarded_settings(new)
    return [f"{name}: {before.get(name)!r} -> {value!r}" for name, value in after.items()
            if before.get(name) != value]
