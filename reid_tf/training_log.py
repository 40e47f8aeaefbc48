"""The 2017 training log's re-run, as data: every run (a log row, the revised note's 7.19 row, BoT,
or a control: a row's flagfile with named overrides), every conclusion of the log with the run it
is judged against and how, and each run's compact summary (benchmarks/rerun_log.py writes them,
tools/report.py --training_log reads them)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re

FEATURES = "standin_features"  # the stand-in's raw features, before any row
WITHDRAWN = ("resnet_IDE", "resnet_maxpool", "resnet_256")  # "(code has bug!!)" / replaced, b19bb52
NEVER_RAN = {"--augment", "--original_ops"}  # the 2017 code pruned its augmentation: it never ran


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of the re-run: `flagfile` (flags/NAME.cfg) with `overrides`; `parent` is the run
    (of the same seed) it starts from."""

    name: str
    flagfile: str
    date: str = ""
    result: str = ""  # the log's result, in its words
    overrides: tuple[str, ...] = ()
    parent: str = ""
    what: str = ""  # a control: what it changes, in words

    @property
    def is_control(self) -> bool:
        return "+" in self.name

    @property
    def never_ran(self) -> bool:
        """A control that varies only what the 2017 code never ran: the corrected set drops it."""
        changed = {o.split("=", 1)[0] for o in self.overrides}
        return bool(changed) and changed <= NEVER_RAN


def _row(name: str, date: str, result: str, parent: str = "") -> Run:
    return Run(name, name, date, result, parent=parent)


def _control(name: str, flagfile: str, what: str, *overrides: str, parent: str = "") -> Run:
    return Run(name, flagfile, overrides=overrides, parent=parent, what=what)


RUNS = (
    _row("resnet", "7.10", "step 20000, mAP 0.52"),
    _row("resnet_softmax", "7.11", "output festures trend to 0"),
    _row("resnet_no_pool", "7.11", "output festures trend to 0"),
    _row("resnet_finetuning", "7.11", "step 15000, mAP 0.88"),
    _row("resnet_finetuning_hardest", "7.11", "step 25000, mAP 0.89", parent="resnet_finetuning"),
    _row("resnet_noprocess", "7.11", "step 30000, mAP 0.92 (train 0.97)"),
    _row("resnet_enhance", "7.12", "step 25000, mAP 0.92 (train 0.98)"),
    _row("resnet_enhance_rerank", "7.13", "step 30000, mAP 0.89 (train 0.98)"),
    _row("resnet_fc", "7.14", "step 15000, mAP 0.78"),
    _row("resnet_IDE", "7.16", "step 5000, mAP 0.4????"),
    _row("resnet_maxpool", "7.16", "step 30000, mAP 0.18???? (revised: code has bug!!)"),
    _row("resnet_256", "7.17", "step 5000, mAP 0.41???? (revised: code has bug!!)"),
    _row("resnet_100", "7.18", "step 40000, mAP 0.87 (train 0.988)"),
    _row("resnet_IDE_719", "7.19", "step 25000, mAP 0.86 (the revised note's row)"),
    Run("resnet_bot", "resnet_bot", "BoT", "Market-1501: mAP 0.859, rank-1 0.945 (Luo et al.)",
        overrides=("--backbone=resnet50v2",), what="the stand-in is a ResNet-50 v2, as the log's"),
    _control("resnet+decay_0.5", "resnet", "the baseline at decay 0.5, as softmax, no pool and fine-tuning",
             "--decay_rate=0.5"),
    _control("resnet_finetuning_hardest+batch_hard", "resnet_finetuning_hardest",
             "the same continuation with batch-hard mining", "--mining=batch_hard", parent="resnet_finetuning"),
    _control("resnet_fc+two_fc", "resnet_fc", "the two-fc head of that day at the single fc's lr 1e-6",
             "--head=fc1024", "--fc1_init_stddev=0.0315", "--fc2_init_stddev=0.044", "--head_bn=batch_no_update"),
    _control("resnet_fc+two_fc_own_lr", "resnet_fc", "the two-fc head of that day at its own lr 1e-4, where it"
             " can move",
             "--head=fc1024", "--fc1_init_stddev=0.0315", "--fc2_init_stddev=0.044", "--head_bn=batch_no_update",
             "--initial_learning_rate=1e-4"),
    _control("resnet_enhance+colour_only", "resnet_enhance", "only the hue and brightness ops",
             "--original_ops=hue,brightness"),
    _control("resnet_enhance+crop_only", "resnet_enhance", "only the crop-resize op", "--original_ops=crop"),
    _control("resnet_maxpool+max_pool_only", "resnet_maxpool", "max pooling alone, the backbone BN fixed",
             "--dropout=0", "--backbone_bn=frozen"),
    _control("resnet_maxpool+dropout_only", "resnet_maxpool", "dropout alone, the backbone BN fixed",
             "--pooling=avg", "--backbone_bn=frozen"),
)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One conclusion of the log and how it is judged: `metric` of `row` at `step` against
    `compared_with` at `compared_step` (the same seed's run where `paired`), in `direction` (+1: the
    row higher, -1: lower, 0: no difference). `against` names a constant instead of a run."""

    row: str
    conclusion: str
    compared_with: str | None
    step: int
    direction: int
    metric: str = "mAP"
    compared_step: int | None = None
    compared_metric: str | None = None
    against: float | None = None
    paired: bool = False  # kept for the record: the rule pairs every comparison whose arms share seeds
    note: str = ""
    relative_to: int | None = None  # each seed's figure divided by its own at this step (a shrinkage ratio)


CLAIMS = (
    Claim("resnet", "baseline (the head learns on frozen ImageNet features)", "resnet", 200, +1, compared_step=0,
          paired=True),
    Claim("resnet_softmax", "softmax is worse", "resnet+decay_0.5", 200, -1),
    Claim("resnet_softmax", "output festures trend to 0", "resnet+decay_0.5", 200, -1, metric="embedding_norm"),
    Claim("resnet_no_pool", "delete global pool is worse", "resnet+decay_0.5", 200, -1),
    Claim("resnet_no_pool", "output festures trend to 0", "resnet+decay_0.5", 200, -1, metric="embedding_norm",
          relative_to=0, note="judged on the shrinkage, each seed's norm at step 200 over its own at step 0, not"
          " on the level, which the pooling sets from the start"),
    Claim("resnet_finetuning", "fine turning resnet is pefect", "resnet+decay_0.5", 200, +1),
    Claim("resnet_finetuning_hardest", "batch hardest triplet loss seems no much help",
          "resnet_finetuning_hardest+batch_hard", 250, 0, paired=True),
    Claim("resnet_noprocess", "no data enhancement seems ok, maybe train data set is big enough",
          "resnet_finetuning", 200, 0, note="the head BN's mode differs: 7.11 evening's code"),
    Claim("resnet_enhance", "update data enhancement seams good", "resnet_noprocess", 250, +1),
    Claim("resnet_enhance+colour_only", "(control) the colour ops alone help", "resnet_noprocess", 250, +1),
    Claim("resnet_enhance+crop_only", "(control) the crop alone helps", "resnet_noprocess", 250, +1),
    Claim("resnet_enhance_rerank", "re-ranking is helpful", "resnet_enhance_rerank", 300, +1,
          compared_metric="mAP", metric="mAP_rerank", paired=True),
    Claim("resnet_fc", "one fc is not good", "resnet_fc+two_fc", 150, -1),
    Claim("resnet_fc", "fc init should small enough so loss near 0.7", None, 1, 0, metric="first_loss",
          against=0.6931471805599453),
    Claim("resnet_IDE", "big image seems not good", "resnet_enhance_rerank", 50, -1),
    Claim("resnet_maxpool", "dropout is worse", "resnet_enhance_rerank", 300, -1),
    Claim("resnet_maxpool+dropout_only", "(control) dropout is worse", "resnet_enhance_rerank", 300, -1),
    Claim("resnet_maxpool+max_pool_only", "(control) max pooling is worse", "resnet_enhance_rerank", 300, -1),
    Claim("resnet_256", "big output dim is bad", "resnet_enhance_rerank", 50, -1),
    Claim("resnet_100", "dicrease output dim seems just so so", "resnet_enhance_rerank", 300, 0),
    Claim("resnet_IDE_719", "increase image size seems just so so", "resnet_enhance_rerank", 250, 0,
          note="also decay 0.3 against 0.5"),
    Claim("resnet_IDE_719", "(b19bb52) 7.16's 0.4 came from its code's bug, not from the larger images: the same"
          " size with the backbone's batch norm fixed trains", "resnet_IDE", 50, +1,
          note="the two rows differ in the backbone batch norm's setting, not in the size (and in re-ranking's"
               " parameters, which the plain mAP compared does not use): the revised note's \"(code has bug!!)\""),
)


def five_seed_runs() -> set[str]:
    """The baseline and every run a conclusion is judged against: five seeds, the others three."""
    return {"resnet"} | {c.compared_with for c in CLAIMS if c.compared_with and c.compared_with != c.row}


def cpu_kind() -> str:
    """This CPU's model name and widest vector instructions: oneDNN's and Eigen's sums, and so the
    last bits of a trained network, depend on them (a run reproduces bit for bit on the same kind)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine()
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in present]
    return f"{name.group(1).strip() if name else platform.machine()} ({' '.join(isa) or platform.machine()})"


def software() -> dict[str, str]:
    """The installed TensorFlow's and Keras's versions: another release may compute other last bits."""
    import keras  # here, not at the top: reading the log's data needs no TensorFlow
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def write_summary(run_dir: str, name: str, seed: int, path: str, standin: str | None = None) -> None:
    """A run's compact summary: its validation lines, first-step losses, effective flags and seed, the
    fingerprint of the stand-in weights it started from (None: it started from none), the CPU and
    TensorFlow's and Keras's versions."""
    from reid_tf import run_dir as run_dir_lib

    with open(os.path.join(run_dir, run_dir_lib.FLAGS_FILE), encoding="utf-8") as f:
        flags = [line.strip() for line in f if line.strip()]
    summary = {"run": name, "seed": seed, "flags": flags, "first_step": run_dir_lib.read_first_step(run_dir),
               "validations": run_dir_lib.read_validations(os.path.join(run_dir, run_dir_lib.VALIDATIONS)),
               "train_images": _train_images(run_dir), "standin": standin, "cpu": cpu_kind(),
               **software()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def _train_images(run_dir: str) -> int | None:
    """How many images the run trained on (its dataset's training split, less the held-out ids)."""
    from reid_tf import datasets
    from reid_tf import run_dir as run_dir_lib

    config = run_dir_lib.load_config(run_dir)
    try:
        splits = datasets.split_records(datasets.load_training_sets(config.data), config.data, config.train.seed)
    except datasets.DatasetError:
        return None
    return len(splits["train"])


def read_summaries(folder: str) -> dict[str, dict[int, dict]]:
    """{run name: {seed: summary}} of a summaries folder."""
    out: dict[str, dict[int, dict]] = {}
    runs = os.path.join(folder, "runs")
    for file in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        if file.endswith(".json"):
            with open(os.path.join(runs, file), encoding="utf-8") as f:
                s = json.load(f)
            out.setdefault(s["run"], {})[int(s["seed"])] = s
    return out
