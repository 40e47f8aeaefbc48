"""The experiment table of run folders, as the original log's "train note" table: each run's model,
training and loss in words from its config.json, its result from validation.jsonl, its note;
what differs from a baseline run in bold. Also as JSON, and as curves from TensorBoard's events."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import tensorflow as tf
from absl import logging

from reid_tf import config as config_lib
from reid_tf import evaluate, run_dir


@dataclasses.dataclass
class Run:
    """What the report knows of one run folder."""

    path: str
    name: str
    started: str  # ISO 8601
    config: config_lib.RunConfig
    note: str
    validations: list[dict]
    last_step: int | None
    status: str  # finished | running | stopped | not finished
    stop_reason: str = ""
    first_step: dict | None = None  # the losses of step 1

    @property
    def best(self) -> dict | None:
        scored = [r for r in self.validations if "mAP" in r]
        return max(scored, key=lambda r: r["mAP"]) if scored else None  # the first of equal maxima

    @property
    def parent(self) -> str:
        """The run a warm start began from, as 'NAME' or 'NAME step N'."""
        source = self.config.train.init_checkpoint
        if not source:
            return ""
        source = source.rstrip("/")
        prefix, _, number = os.path.basename(source).rpartition("-")
        if prefix == "ckpt" and number.isdigit():  # RUN/checkpoints/ckpt-N
            folder = os.path.dirname(source)
            folder = os.path.dirname(folder) if os.path.basename(folder) == run_dir.CHECKPOINTS else folder
            return f"{os.path.basename(folder)} step {number}"
        return os.path.basename(source)


def find_runs(paths: list[str]) -> list[str]:
    """Run folders (holding config.json) among `paths` and their sub-folders; others named, skipped."""
    found = []
    for path in paths:
        if tf.io.gfile.exists(os.path.join(path, run_dir.CONFIG)):
            found.append(path)
            continue
        if not tf.io.gfile.isdir(path):
            logging.warning("%s: not a folder, skipped", path)
            continue
        for child in sorted(tf.io.gfile.listdir(path)):
            sub = os.path.join(path, child.rstrip("/"))
            if not tf.io.gfile.isdir(sub) or child.startswith("."):
                continue
            if tf.io.gfile.exists(os.path.join(sub, run_dir.CONFIG)):
                found.append(sub)
            else:
                logging.warning("%s: not a run folder (no %s), skipped", sub, run_dir.CONFIG)
    return found


def _last_checkpoint_step(path: str) -> int | None:
    state = tf.train.get_checkpoint_state(os.path.join(path, run_dir.CHECKPOINTS))
    if not state or not state.model_checkpoint_path:
        return None
    return int(state.model_checkpoint_path.rsplit("-", 1)[1])


def load_run(path: str) -> Run | None:
    """The run in `path`, or None (said in one line) when its config cannot be read."""
    try:
        config = run_dir.load_config(path)
    except run_dir.RunDirError as e:
        logging.warning("%s: skipped (%s)", path, e)
        return None
    validations = run_dir.read_validations(os.path.join(path, run_dir.VALIDATIONS))
    steps = [s for s in (_last_checkpoint_step(path), *(r.get("step") for r in validations)) if s is not None]
    last_step = max(steps, default=None)
    started = (run_dir.read_text(os.path.join(path, run_dir.STARTED)) or "").strip()
    if not started:  # a run from before started.txt: its config's time
        mtime = tf.io.gfile.stat(os.path.join(path, run_dir.CONFIG)).mtime_nsec / 1e9
        started = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).isoformat(timespec="seconds")
    stop_reason = (run_dir.read_text(os.path.join(path, run_dir.STOPPED)) or "").strip()
    if run_dir.lock_is_live(path):
        status = "running"
    elif stop_reason:
        status = "stopped"
    elif last_step is not None and last_step >= config.train.max_steps:
        status = "finished"
    else:
        status = "not finished"
    note = (run_dir.read_text(os.path.join(path, run_dir.NOTE)) or "").strip()
    return Run(path, os.path.basename(os.path.normpath(path)), started, config, note, validations,
               last_step, status, stop_reason, run_dir.read_first_step(path))


def load_runs(paths: list[str]) -> list[Run]:
    """Every run found under `paths`, ordered by start time."""
    runs = [r for r in (load_run(p) for p in find_runs(paths)) if r is not None]
    return sorted(runs, key=lambda r: (r.started, r.name))


def never_started(run: Run) -> bool:
    """A folder a failed start left (offline, no dataset): no step, no validation, no trainer."""
    return run.last_step is None and not run.validations and run.status != "running"


# ---------------------------------------------------------------------------- runs in words


def _number(x: float) -> str:
    return f"{x:g}"


def describe_model(c: config_lib.RunConfig) -> dict[str, str]:
    """The model in the log's words, one phrase per aspect (compared aspect by aspect)."""
    m, d = c.model, c.data
    weights = m.backbone_weights if m.backbone_weights in ("imagenet", "none") else os.path.basename(
        m.backbone_weights)
    head = {"fc1024": f"fc1(1024)-BN-ReLU-fc2({m.embedding_dim})", "fc": f"fc({m.embedding_dim})",
            "none": "pooled feature"}[m.head]
    parts = {
        "backbone": f"{m.backbone} ({'from scratch' if weights == 'none' else weights})",
        "last_stride": "last stride 1" if m.last_stride == 1 else "",
        "pooling": {"avg": "avg pool", "max": "max pool", "none": "no pool (flatten)"}[m.pooling],
        "head": head,
        "dropout": f"dropout {_number(m.dropout)}" if m.dropout else "",
        "output_activation": "softmax output" if m.output_activation == "softmax" else "",
        "neck": f"BNNeck ({m.neck_feat})" if m.neck == "bnneck" else "",
        "head_init": ("head init N(0, " + _number(m.head_init_stddev) + ")"
                      if m.head_init == "truncated_normal" else "Keras head init"),
        "trainable": "fine-tune all" if m.trainable == "all" else "train the head only",
        "input": f"{d.image_height}×{d.image_width}",
        "augment": f"{d.augment} augmentation" if d.augment != "none" else "no augmentation",
    }
    return {k: v for k, v in parts.items() if v}


def describe_training(c: config_lib.RunConfig, parent: str = "") -> dict[str, str]:
    """Optimiser, schedule, batch and warm start in words."""
    o, d, t = c.optimizer, c.data, c.train
    if o.lr_schedule == "piecewise":
        rate = f"Adam {' → '.join(_number(v) for v in o.lr_values)} at steps " + ", ".join(
            str(b) for b in o.lr_boundaries)
    elif o.lr_schedule == "cosine":
        rate = f"Adam {_number(o.initial_learning_rate)}, cosine to 0 over {o.decay_steps} steps"
    elif o.decay_rate == 1.0:
        rate = f"Adam {_number(o.initial_learning_rate)}, constant"
    else:
        rate = (f"Adam {_number(o.initial_learning_rate)}, decay {_number(o.decay_rate)} every"
                f" {o.decay_steps} steps" + (" (staircase)" if o.staircase else ""))
    parts = {
        "rate": rate,
        "warmup": (f"warm-up {o.warmup_steps} steps from {_number(o.warmup_factor)}×"
                   if o.warmup_steps else ""),
        "weight_decay": f"weight decay {_number(o.weight_decay)}" if o.weight_decay else "",
        "batch": f"P={d.return_id_num} × K={d.image_num_every_id}",
        "dataset": " + ".join(f"synthetic ({d.synthetic_ids} ids)" if name == "synthetic" else name
                              for name in d.dataset.split(",")),
        "precision": f"mixed {t.mixed_precision}" if t.mixed_precision != "none" else "",
        "parent": f"train after {parent}" if parent else "",
    }
    return {k: v for k, v in parts.items() if v}


def describe_loss(c: config_lib.RunConfig) -> dict[str, str]:
    """Triplet mining and margin, and the extra losses."""
    loss = c.loss
    parts = {
        "mining": loss.mining.replace("_", "-"),
        "margin": "soft margin" if loss.margin == "soft" else f"margin {loss.margin}",
        "id_loss": (f"ID loss ×{_number(loss.id_loss_weight)}"
                    + (f" (label smoothing {_number(loss.label_smoothing)})" if loss.label_smoothing else "")
                    if loss.id_loss_weight else ""),
        "center_loss": f"center loss ×{_number(loss.center_loss_weight)}" if loss.center_loss_weight else "",
    }
    return {k: v for k, v in parts.items() if v}


def describe_result(run: Run) -> str:
    """Best validation mAP and its step, with rank-1, train mAP and re-ranked mAP, the embeddings'
    norm and the first step's loss, and the state. A run whose last validation shows collapsed
    embeddings says so first: its mAP is that of a model that no longer tells people apart."""
    best = run.best
    last_row = run.validations[-1] if run.validations else {}
    collapsed = evaluate.is_collapsed(last_row)
    if best is None:
        text = "no validation"
    else:
        text = f"step {best['step']}, mAP {best['mAP']:.3f}"
        extras = [f"{label} {best[key]:.3f}" for key, label in
                  (("rank1", "rank-1"), ("train_mAP", "train"), ("mAP_rerank", "re-ranked"))
                  if key in best]
        text += f" ({', '.join(extras)})" if extras else ""
        if "embedding_norm" in best:
            text += f"; norm {best['embedding_norm']:.3g}"
    if collapsed:
        text = f"**collapsed** at step {last_row['step']}: {collapsed}; best {text}"
    if run.first_step:
        text += f"; first loss {run.first_step['loss']:.3f}"
        if "triplet_loss" in run.first_step:
            text += f" (triplet {run.first_step['triplet_loss']:.3f})"
    last = f"last step {run.last_step}" if run.last_step is not None else "no step yet"
    state = {"finished": "", "running": ", running", "not finished": ", not finished",
             "stopped": ", stopped: " + _first_words(run.stop_reason)}[run.status]
    return f"{text}; {last}{state}"


def _first_words(reason: str) -> str:
    return reason if len(reason) <= 60 else reason[:57] + "..."


# ---------------------------------------------------------------------------- outputs


def _cell(parts: dict[str, str], baseline: dict[str, str] | None) -> str:
    """Phrases joined by commas; those that differ from the baseline's in bold."""
    def show(key, text):
        differs = baseline is not None and baseline.get(key) != text
        text = text.replace("|", "\\|")
        return f"**{text}**" if differs else text

    removed = [f"**no {key.replace('_', ' ')}**" for key in (baseline or {}) if key not in parts]
    return ", ".join([show(k, v) for k, v in parts.items()] + removed)


def rows(runs: list[Run]) -> list[dict]:
    """One plain dict per run: the table's cells in words and the numbers behind them."""
    out = []
    for run in runs:
        best = run.best
        out.append({
            "date": run.started[:10], "started": run.started, "run": run.name, "path": run.path,
            "model": describe_model(run.config), "training": describe_training(run.config, run.parent),
            "loss": describe_loss(run.config), "result": describe_result(run), "note": run.note,
            "status": run.status, "stop_reason": run.stop_reason, "last_step": run.last_step,
            "best": best, "parent": run.parent, "validations": run.validations,
            "first_step": run.first_step, "collapsed": evaluate.is_collapsed(run.validations[-1])
            if run.validations else "",
            "config": run.config.to_dict(),
        })
    return out


def markdown(runs: list[Run], baseline: str | None = None, reference: dict[str, str] | None = None) -> str:
    """The table in GitHub markdown; `baseline` (a run's name or path; default: the first run)
    is the run the others are compared with; `reference` (run name -> text), when given, fills a
    column beside the result (the original log's result, say)."""
    idle = [r.name for r in runs if never_started(r)]
    table = rows([r for r in runs if not never_started(r)])
    footer = f"\nnever started: {len(idle)} folder(s) ({', '.join(idle)})\n" if idle else ""
    if not table:
        return "No runs found.\n" + footer
    base = next((r for r in table if baseline in (r["run"], r["path"], os.path.normpath(r["path"]))),
                None) if baseline else table[0]
    if base is None:
        raise ValueError(f"--baseline={baseline} is none of the runs found")
    columns = ["date", "run", "model", "training", "loss", "result"] + (["reference"] if reference else [])
    lines = ["| " + " | ".join(columns + ["note"]) + " |", "|" + "---|" * (len(columns) + 1)]
    for r in table:
        compared = None if r is base else base
        cells = [r["date"], f"`{r['run']}`" + (" (baseline)" if r is base else ""),
                 _cell(r["model"], compared and compared["model"]),
                 _cell(r["training"], compared and compared["training"]),
                 _cell(r["loss"], compared and compared["loss"]),
                 r["result"]] + ([reference.get(r["run"], "")] if reference else []) + [
                 r["note"].replace("|", "\\|").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + footer


def to_json(runs: list[Run]) -> str:
    """The same data for a notebook or a spreadsheet."""
    return json.dumps(rows(runs), indent=1, sort_keys=True) + "\n"


def scalar_curves(run: Run, folder: str, tags: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of scalar summaries in the run's TensorBoard folder, read by
    TensorBoard's own event reader."""
    from tensorboard.backend.event_processing import event_accumulator

    path = os.path.join(run.path, run_dir.TENSORBOARD, folder)
    if not tf.io.gfile.isdir(path):
        return {}
    events = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0,
                                                                     event_accumulator.SCALARS: 0})
    events.Reload()
    available = set(events.Tags().get("tensors", []))
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in tags if tag in available}


def plot(runs: list[Run], path: str) -> None:
    """Validation mAP (train mAP dashed) and the triplet loss against step, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6))
    colours = plt.get_cmap("tab20" if len(runs) > 10 else "tab10")
    for i, run in enumerate(runs):
        colour = colours(i % colours.N)
        for key, style in (("mAP", "-"), ("train_mAP", "--")):
            points = [(r["step"], r[key]) for r in run.validations if key in r]
            if points:
                left.plot(*zip(*points), style, color=colour, marker=".",
                          label=run.name if key == "mAP" else None)
        losses = scalar_curves(run, "train", ("triplet_loss", "loss"))
        series = losses.get("triplet_loss") or losses.get("loss")
        if series:
            right.plot(*zip(*series), color=colour, label=run.name)
    left.set(xlabel="step", ylabel="mAP", title="validation mAP (train mAP dashed)", ylim=(0, 1))
    right.set(xlabel="step", ylabel="loss", title="triplet loss (batch-hard)")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    fig.legend(*left.get_legend_handles_labels(), loc="lower center", ncol=min(len(runs), 5),
               fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(runs) - 1) // 5), 1, 1))
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
