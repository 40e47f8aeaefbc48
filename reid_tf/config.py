"""A run's settings as frozen dataclasses, written to and read from `config.json`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

# Limits of the work one request or image may demand (serving, training and evaluation alike).
# Far above any person crop: an image whose header claims more pixels is refused undecoded, so a
# small file cannot demand gigabytes.
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGES_PER_REQUEST = 256
# The choices of each setting (flags.py offers them; the modules that act on them check them).
DATASETS = ("market1501", "duke", "cuhk03_np", "msmt17", "csv", "synthetic")
CUHK03_LABELS = ("detected", "labeled")
AUGMENTATIONS = ("none", "basic", "enhanced", "bot")
BACKBONES = ("resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
             "mobilenet_v3_small", "mobilenet_v3_large", "efficientnetv2_b0", "efficientnetv2_b1",
             "efficientnetv2_b2", "efficientnetv2_b3", "efficientnetv2_s", "convnext_tiny", "convnext_small",
             "densenet121", "osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "small")
POOLINGS = ("avg", "max", "none")
HEADS = ("fc1024", "fc", "none")
NECKS = ("none", "bnneck")
NECK_FEATS = ("before", "after")
LAST_STRIDES = (1, 2)
OUTPUT_ACTIVATIONS = ("none", "softmax")
HEAD_INITS = ("truncated_normal", "keras_default")
TRAINABLE = ("all", "head")
MININGS = ("batch_hard", "batch_hardest")
LR_SCHEDULES = ("exponential", "piecewise", "cosine")
MIXED_PRECISION = ("none", "bfloat16", "float16")
PRECISIONS = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "float16", "dynamic_range", "int8")
PROTOCOLS = ("market1501", "official")
CLUSTERS = ("tf_config", "slurm", "kubernetes")
# What `python -m reid_tf.export --format` writes: a SavedModel for TF Serving, LiteRT, ONNX, or
# the backbone's weights alone (to start another run from).
EXPORT_FORMATS = ("saved_model", "tflite", "onnx", "backbone")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "market1501"  # one of DATASETS, or several comma-separated (trained as one)
    data_dir: str = ""  # one folder per dataset, comma-separated
    train_csv: str = ""
    image_height: int = 224
    image_width: int = 112
    augment: str = "basic"  # none | basic | enhanced | bot
    return_id_num: int = 20  # P
    image_num_every_id: int = 4  # K
    valid_ids: int = 50
    train_eval_ids: int = 50
    synthetic_ids: int = 200  # identities of the generated dataset (--dataset=synthetic)
    valid_dataset: str = ""  # the dataset validation identities are held out of (default: the first)
    cuhk03_labels: str = "detected"  # CUHK03-NP: detected | labeled boxes
    msmt17_merge_val: bool = True  # MSMT17: train on list_val.txt too (torchreid, fast-reid)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"  # one of BACKBONES
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
    keep_checkpoints: int = 5  # the newest N checkpoints are kept
    eval_every: int = 5000
    eval_rerank: bool = False
    eval_before_training: bool = False
    projector: bool = False  # write the final validation embeddings for TensorBoard's projector
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
        "train.keep_checkpoints",
        "train.eval_every",
        "train.eval_rerank",
        "train.eval_before_training",
        "train.projector",
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
