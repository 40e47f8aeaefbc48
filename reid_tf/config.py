"""A run's settings, each declared once (name, type, default, choices, help, group, the report's
words): the absl flags, config.json, the validation rules and tools/report.py come from here.

The defaults are today's correct behaviour. The 2017 original's quirks (group "The 2017
original") are settings too, each off by default; the log's flagfiles turn them on.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from reid_tf import adapt_settings, phrases
from reid_tf.constants import DISTRACTOR_PID, JUNK_PID, MAX_IMAGE_PIXELS, MAX_IMAGES_PER_REQUEST  # noqa: F401
from reid_tf.optim_settings import PROTOCOLS, OptimizerConfig, ScoringConfig  # noqa: F401 - sections, named here too
from reid_tf.settings import ORIGINAL, ConfigError, Declared, check_fields, declared, from_flag_lines, setting  # noqa: F401

HEADS = ("fc1024", "fc", "fc512", "none")
MIXED_PRECISION = ("none", "bfloat16", "float16")
MININGS = ("batch_hard", "batch_hardest")
CLUSTERS = ("tf_config", "slurm", "kubernetes")  # where `python -m reid_tf.train --cluster` finds workers
# How `python -m reid_tf.export` writes (its formats are export_lib.FORMATS): options of an export.
PRECISIONS = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "float16", "dynamic_range", "int8")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting(
        "market1501", "Dataset layout of --data_dir: {choices}; several comma-separated"
        " (market1501,msmt17) train on their union, identities and cameras kept apart.",
        choices=phrases.dataset_names, check=(phrases.datasets_ok, "dataset names, comma-separated"),
        words=lambda v, c: " + ".join(f"synthetic ({c.data.synthetic_ids} ids)" if n == "synthetic" else n
                                      for n in v.split(",")))
    data_dir: str = setting("", "Dataset folder (the layout of --dataset, or the image root of --train_csv);"
                            " one per dataset, comma-separated. With --dataset=synthetic, empty means a"
                            " cache folder.", resumable=True)
    valid_dataset: str = setting("", "With several datasets: the one validation identities are held out"
                                 " of (default: the first).")
    cuhk03_labels: str = setting("detected", "CUHK03-NP: the detected or the hand-labeled boxes.",
                                 choices=("detected", "labeled"))
    msmt17_merge_val: bool = setting(True, "MSMT17: train on list_val.txt's images too, as torchreid and"
                                     " fast-reid do.")
    train_csv: str = setting("", "CSV list 'pid,path[,camid]' for --dataset=csv.")
    image_height: int = setting(224, "Input height.", lower=32, column="model",
                                words=lambda v, c: f"{v}×{c.data.image_width}")
    image_width: int = setting(112, "Input width.", lower=32)
    augment: str = setting(
        "basic", "Training augmentation: none; basic (random crop 1.125, flip); enhanced (+ colour"
        " jitter, random erasing); bot (BoT's); original_e50be2b / original_d26b97d: what the 2017 code was"
        " written to do (crop-resize, hue, flip, brightness, each given to fixed batch slots drawn once per"
        " run; p 0.1 and deltas 0.5 before 7.12, p 0.5 and deltas 0.1 from commit d26b97d), which it never"
        " ran: it fed the tf.cond's output, so TF pruned the augmentation (the log flagfiles use none).",
        choices=phrases.augmentation_names, column="model",
        words=lambda v, c: f"{v} augmentation" if v != "none" else "no augmentation")
    original_ops: tuple[str, ...] = setting(
        ("crop", "hue", "flip", "brightness"), "With --augment=original_*: which of my_preprocess_train's ops"
        " may be given to a slot (the others never are): ablations of the original's augmentation.",
        choices=("crop", "hue", "flip", "brightness"), group=ORIGINAL,
        words=lambda v, c: "" if len(v) == 4 or not c.data.augment.startswith("original") else
        f"only {', '.join(v)}")
    crop: str = setting(
        "none", "center_1.25w: the original's 'crop image', at training and at every evaluation: resize"
        " to H x 1.25W, keep the central W columns (exports do it too).", choices=("none", "center_1.25w"),
        group=ORIGINAL, column="model", words=lambda v, c: "centre crop of a 1.25× wide resize" if v != "none"
                                                             else "")
    return_id_num: int = setting(20, "P: identities per batch.", lower=2,
                                 words=lambda v, c: f"P={v} × K={c.data.image_num_every_id}")
    image_num_every_id: int = setting(4, "K: images per identity (>= 2, or there are no positives).")
    valid_ids: int = setting(50, "Training identities held out for validation (0: none).", lower=0)
    train_eval_ids: int = setting(50, "Training identities scored for the train-set mAP (0: none).", lower=0)
    train_eval_final_only: bool = setting(
        False, "Score the train-set mAP only at the end of the run, as the original did (once, after"
        " training), not at every validation.", group=ORIGINAL)
    synthetic_ids: int = setting(200, "Identities of the generated synthetic dataset.", lower=4)
    synthetic_domain: str = setting(
        "default", "The synthetic dataset's domain: {choices}. Each draws its own people and cameras (light,"
        " colour cast, backgrounds, resolution, blur, camera count, clothing palette): a domain shift.",
        choices=phrases.domain_names, words=lambda v, c: "" if v == "default" else f"{v} domain")
    valid_split: str = setting(
        "per_camera", "How held-out identities become queries and gallery: per_camera (one query per"
        " identity and camera, the rest gallery); original (res_data.py's: one query, a second with"
        " probability 0.5, at most 40 gallery images, cameras ignored).", choices=("per_camera", "original"),
        group=ORIGINAL, words=lambda v, c: "original validation split" if v == "original" else "")
    valid_fraction: float = setting(
        0.0, "When > 0: hold out ceil(fraction x identities) for validation instead of --valid_ids (the"
        " original's test_size: 0.04, 'big valid' 0.08).", lower=0.0, upper=0.99, group=ORIGINAL,
        words=lambda v, c: f"valid {phrases.number(v)} of the ids" if v else "")

    def validate(self) -> None:
        check_fields(self, SETTINGS["data"])
        if self.image_num_every_id < 2:
            raise ConfigError(f"--image_num_every_id={self.image_num_every_id}: batch-hard mining needs K >= 2"
                              " images per identity in a batch, or no anchor has a positive")

    def held_out_ids(self, num_ids: int) -> int:
        """How many of `num_ids` identities validation holds out: --valid_fraction's ceiling (as
        scikit-learn's train_test_split counted the original's test_size), or --valid_ids."""
        return math.ceil(self.valid_fraction * num_ids) if self.valid_fraction > 0 else self.valid_ids


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = setting("resnet50", "Backbone network: {choices}.", choices=phrases.backbone_names,
                            words=lambda v, c: f"{v} ({phrases.weights(c.model)})")
    backbone_weights: str = setting("imagenet", "imagenet, none, or a weights file (a run's --format=backbone"
                                    " export, or tools/convert_torchreid.py's conversion of a PyTorch checkpoint),"
                                    " or the prefix of a TF1 checkpoint of slim's resnet_v2_50 (the original's).")
    backbone_init: str = setting("keras", "The initialisers of a backbone trained from scratch: keras (Keras'"
                                 " defaults), or torchreid (Kaiming normal, fan-out, as torchreid and torchvision"
                                 " initialise OSNet and ResNet); OSNet and resnet50_torch only.",
                                 choices=("keras", "torchreid"),
                                 words=lambda v, c: "torchreid init" if v == "torchreid" else "")
    head_weights: str = setting("", "With --head=fc512: a weights file of its fc and BN (tools/convert_torchreid.py"
                                " --head_output), so a torchreid checkpoint embeds as it did in torchreid.")
    pooling: str = setting("avg", "Pooling after the backbone; none = flatten.", choices=("avg", "max", "none"),
                           words=lambda v, c: {"avg": "avg pool", "max": "max pool",
                                               "none": "no pool (flatten)"}[v])
    head: str = setting("fc1024", "fc1024: fc1(1024)-BN-ReLU-fc2(D); fc: one fc(D); fc512: OSNet's own"
                        " fc(512)-BN-ReLU, whose 512-d output is the embedding; none: the pooled feature"
                        " (BoT).", choices=HEADS, words=phrases.head)
    embedding_dim: int = setting(128, "D, the embedding size.", lower=1)
    output_activation: str = setting("none", "Activation on the embedding.", choices=("none", "softmax"),
                                     words=lambda v, c: "softmax output" if v == "softmax" else "")
    dropout: float = setting(0.0, "Dropout rate before the last fc.", lower=0.0, upper=0.99,
                             words=lambda v, c: f"dropout {phrases.number(v)}" if v else "")
    head_init: str = setting("truncated_normal", "Initialiser of the head's fc kernels (truncated normal cut"
                             " at 2 sigma, as TF1's).", choices=("truncated_normal", "keras_default"),
                             words=phrases.head_init)
    fc1_init_stddev: float = setting(0.001, "Stddev of fc1's truncated-normal init (the single fc of"
                                     " --head=fc).", lower=0.0)
    fc2_init_stddev: float = setting(0.001, "Stddev of fc2's truncated-normal init.", lower=0.0)
    trainable: str = setting("all", "all: fine-tune the backbone too.", choices=("all", "head"),
                             words=lambda v, c: "fine-tune all" if v == "all" else "train the head only")
    neck: str = setting("none", "bnneck: a BatchNorm (shift frozen at 0) after the embedding; the triplet"
                        " loss sees the feature before it, the ID loss the one after (BoT).",
                        choices=("none", "bnneck"), words=lambda v, c: f"BNNeck ({c.model.neck_feat})"
                        if v == "bnneck" else "")
    neck_feat: str = setting("after", "With --neck=bnneck: the feature evaluation and exports output.",
                             choices=("before", "after"))
    last_stride: int = setting(2, "Stride of the ResNet's last downsampling (BoT: 1, a 2x larger map).",
                               choices=(1, 2), words=lambda v, c: "last stride 1" if v == 1 else "")
    pixel_range: str = setting(
        "backbone", "backbone: pixels get the backbone's own preprocessing; unit: [0, 1] fed as they are,"
        " as the original fed slim's resnet_v2_50 (whose weights expect [-1, 1]).",
        choices=("backbone", "unit"), group=ORIGINAL, words=lambda v, c: "input [0, 1]" if v == "unit" else "")
    backbone_bn: str = setting(
        "train", "The backbone's batch norm when fine-tuned: train (batch statistics, moving ones"
        " updated); frozen (inference mode, gamma/beta trained: the original); train_no_update (batch"
        " statistics, moving ones never updated: the original's 7.16-7.18 bug).",
        choices=("train", "frozen", "train_no_update"), group=ORIGINAL,
        words=lambda v, c: {"train": "", "frozen": "backbone BN frozen",
                            "train_no_update": "backbone BN on batch stats, never updated"}[v])
    head_bn: str = setting(
        "train", "The head's batch norm: train (Keras'); inference_init (always its initial statistics,"
        " mean 0 / variance 1: the original until 7.11 18:14); batch_no_update (batch statistics in"
        " training, moving ones never updated, so evaluation uses 0 / 1: the original from then on).",
        choices=("train", "inference_init", "batch_no_update"), group=ORIGINAL,
        words=lambda v, c: {"train": "", "inference_init": "head BN at its initial statistics",
                            "batch_no_update": "head BN never updated"}[v] if c.model.head == "fc1024" else "")
    embedding_bias: bool = setting(True, "The last fc has a bias (the original's had none).", group=ORIGINAL,
                                   words=lambda v, c: "" if v or c.model.head == "none" else "no fc bias")

    def validate(self) -> None:
        check_fields(self, SETTINGS["model"])
        if self.neck == "none" and self.neck_feat == "before":
            raise ConfigError("--neck_feat=before needs --neck=bnneck (without a neck there is no after)")
        if self.last_stride != 2 and self.backbone == "small":
            raise ConfigError("--last_stride=1 does not apply to small: use --last_stride=2")
        if self.backbone_init == "torchreid" and not phrases.torch_named(self.backbone):
            raise ConfigError(f"--backbone_init=torchreid applies to OSNet and resnet50_torch, not {self.backbone}")
        if self.head_weights and self.head != "fc512":
            raise ConfigError("--head_weights is the fc512 head's: use it with --head=fc512")


@dataclass(frozen=True)
class LossConfig:
    mining: str = setting("batch_hard", "Triplet mining.", choices=MININGS,
                          words=lambda v, c: v.replace("_", "-"))
    margin: str = setting("soft", "soft, or a hinge margin >= 0.", check=(phrases.margin_ok, "soft or a number >= 0"),
                          words=lambda v, c: "soft margin" if v == "soft" else f"margin {v}")
    id_loss_weight: float = setting(
        0.0, "Weight of the cross-entropy ID loss (0 = off; BoT: 1).", lower=0.0,
        words=lambda v, c: (f"ID loss ×{phrases.number(v)}"
                            + (f" (label smoothing {phrases.number(c.loss.label_smoothing)})"
                               if c.loss.label_smoothing else "")) if v else "")
    label_smoothing: float = setting(0.0, "Label smoothing of the ID loss (BoT: 0.1).", lower=0.0, upper=0.99)
    center_loss_weight: float = setting(0.0, "Weight of the center loss (0 = off; BoT: 5e-4).", lower=0.0,
                                        words=lambda v, c: f"center loss ×{phrases.number(v)}" if v else "")
    center_learning_rate: float = setting(0.5, "SGD learning rate of the centres (BoT: 0.5).", lower=0.0)

    def validate(self) -> None:
        check_fields(self, SETTINGS["loss"])


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = setting(20001, "Train until this step.", lower=0, resumable=True)
    checkpoint_every: int = setting(5000, "Steps between checkpoints.", lower=1, resumable=True)
    keep_checkpoints: int = setting(5, "Checkpoints kept in the run folder (the newest; each is the model"
                                    " and Adam's state, 310 MB for ResNet50).", lower=1, resumable=True)
    eval_every: int = setting(5000, "Steps between validations.", lower=1, resumable=True)
    eval_rerank: bool = setting(False, "Also score validation with re-ranking.", resumable=True,
                                words=lambda v, c: (f"re-ranking ({c.scoring.rerank_impl}, k1 {c.scoring.k1},"
                                                    f" k2 {c.scoring.k2}, λ {phrases.number(c.scoring.lambda_value)})")
                                if v else "")
    eval_before_training: bool = setting(False, "Validate once before the first step.", resumable=True)
    projector: bool = setting(False, "At the end, write the validation embeddings for TensorBoard's Embedding"
                              " Projector (OUTPUT_DIR/tensorboard/projector).", resumable=True)
    log_every: int = setting(100, "Steps between console lines, summaries and train_log.jsonl's lines.", lower=1,
                             resumable=True)
    replay_batches: str = setting(
        "", "A .npz of batches to train on instead of the dataset: images [steps, P*K, H, W, 3] float32 pixels"
        " 0-255 and pids [steps, P*K]; batch i is the step i after the one the run starts from, with no"
        " augmentation or crop. A replayed run reads no dataset: no validation, no export.", resumable=True)
    init_checkpoint: str = setting("", "Warm start: model weights from another run's folder or checkpoint.",
                                   resumable=True, words=lambda v, c: f"train after {phrases.source_name(v)}" if v
                                   else "")
    init_checkpoint_full: bool = setting(
        False, "With --init_checkpoint: restore Adam's state and the step too, as the original's TF1 Saver"
        " did (the learning-rate schedule goes on from that step).", group=ORIGINAL, resumable=True,
        words=lambda v, c: "optimiser and step restored" if v and c.train.init_checkpoint else "")
    seed: int = setting(0, "Random seed.")
    mixed_precision: str = setting("none", "Compute dtype of the model (the loss stays float32).",
                                   choices=MIXED_PRECISION, words=lambda v, c: f"mixed {v}" if v != "none" else "")
    jit_compile: bool = setting(False, "Compile the train step with XLA.")
    allow_tf32: bool = setting(True, "Let GPUs that have TF32 use it for float32 matrix products (off: exact"
                               " float32, as a 2017 GPU computed).", group=ORIGINAL,
                               words=lambda v, c: "" if v else "TF32 off")

    def validate(self) -> None:
        check_fields(self, SETTINGS["train"])
        if self.init_checkpoint_full and not self.init_checkpoint:
            raise ConfigError("--init_checkpoint_full needs --init_checkpoint=RUN_OR_CHECKPOINT")


SECTIONS = {"data": (DataConfig, "Data", "training"), "model": (ModelConfig, "Model", "model"),
            "loss": (LossConfig, "Loss", "loss"), "optimizer": (OptimizerConfig, "Optimiser", "training"),
            "train": (TrainConfig, "Run", "training"), "scoring": (ScoringConfig, "Scoring", "training"),
            "adapt": (adapt_settings.AdaptConfig, adapt_settings.GROUP, "training")}
SETTINGS: dict[str, list[Declared]] = {
    name: declared(cls, name, group, column) for name, (cls, group, column) in SECTIONS.items()}
ALL_SETTINGS = [s for section in SETTINGS.values() for s in section]
RESUMABLE_FIELDS = frozenset(s.key for s in ALL_SETTINGS if s.resumable)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    adapt: adapt_settings.AdaptConfig = field(default_factory=adapt_settings.AdaptConfig)

    def validate(self) -> RunConfig:
        """The config itself once every declared bound and every rule holds; else one ConfigError."""
        for name in SETTINGS:
            getattr(self, name).validate()
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A config from config.json; settings it lacks (an older run's) take their defaults."""
        kwargs = {}
        for name, (section, _, _) in SECTIONS.items():
            known = {f.name for f in fields(section)}
            values = {k: tuple(v) if isinstance(v, list) else v  # JSON has lists, configs tuples
                      for k, v in d.get(name, {}).items() if k in known}
            kwargs[name] = section(**values)
        return cls(**kwargs)

    @classmethod
    def from_flag_lines(cls, lines: list[str]) -> RunConfig:
        """The config that flag lines set (settings.flagfile_lines' output, then overrides; the last wins)."""
        return cls(**{name: section(**from_flag_lines(SETTINGS[name], lines))
                      for name, (section, _, _) in SECTIONS.items()})


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
