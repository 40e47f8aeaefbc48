"""What a run says of its steps: the console's losses and pace (with an ETA), and train_log.jsonl,
a row every --log_every steps with the step's loss at full float32 precision, learning rate and
global step (a replayed run's rows are compared with another trainer's, step by step)."""

from __future__ import annotations

import io
import math
import os

import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf import config as config_lib
from reid_tf import distribute, run_dir


class Pace:
    """The train step's own pace, for the console's ETA and the summary: its first call in a process
    (tracing, graph optimisation) is left out, and so is everything between steps (validation,
    checkpoints), which the timer does not cover."""

    def __init__(self, batch: int, max_steps: int):
        self.batch, self.max_steps, self.traced = batch, max_steps, False
        self.window, self.total = [0, 0.0], [0, 0.0]  # [steps, seconds]

    def add(self, seconds: float) -> None:
        if not self.traced:
            self.traced = True
            return
        for acc in (self.window, self.total):
            acc[0] += 1
            acc[1] += seconds

    def report(self, current: int) -> tuple[float | None, str]:
        """(images/s since the last report, the console's words for it), and a new window."""
        steps, seconds = self.window
        self.window = [0, 0.0]
        if not steps:
            return None, "first step (tracing)"
        return steps * self.batch / seconds, (f"{steps * self.batch / seconds:.1f} images/s  ETA"
                                              f" {duration((self.max_steps - current) * seconds / steps)}")

    def images_per_second(self) -> float | None:
        steps, seconds = self.total
        return round(steps * self.batch / seconds, 2) if steps else None


def losses_line(loss: float, stats: dict) -> str:
    """The step's losses, labelled: the triplet loss alone, the total and its parts, or an
    adaptation's contrastive loss and how often the memory's nearest centroid is the batch's own."""
    if "contrastive_loss" in stats:
        return f"contrastive loss {loss:.4f}  memory acc {float(stats['memory_accuracy']):.3f}"
    if "triplet_loss" not in stats:
        return f"triplet loss {loss:.4f}"
    parts = [f"{label} {float(stats[key]):.4f}" for key, label in (
        ("triplet_loss", "triplet"), ("id_loss", "id"), ("center_loss", "center"),
        ("weight_decay_loss", "weight decay")) if key in stats]
    accuracy = f"  id acc {float(stats['id_accuracy']):.3f}" if "id_accuracy" in stats else ""
    return f"total loss {loss:.4f} ({', '.join(parts)}){accuracy}"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TrainLog:
    """train_log.jsonl of a run (the chief's): rows a resumed run will write again are cut on start."""

    def __init__(self, output_dir: str, start: int, is_chief: bool):
        self.path = os.path.join(output_dir, run_dir.TRAIN_LOG) if is_chief else None
        if self.path:
            run_dir.repair_rows(self.path, start)

    def add(self, step: int, loss: float, learning_rate: float, stats: dict) -> None:
        """The row of the step that ended at `step` (its global step, as TF1's, is `step - 1`)."""
        if self.path:
            row = {"step": step, "global_step": step - 1, "loss": loss, "learning_rate": learning_rate,
                   **{k: float(v) for k, v in stats.items() if math.isfinite(float(v))}}
            run_dir.append_row(self.path, row)


class StepReport:
    """All a run says of a step: first_step.json, the console line and TensorBoard, train_log.jsonl,
    and a replay's trace of embeddings."""

    def __init__(self, config: config_lib.RunConfig, output_dir: str, role: distribute.Role, start: int):
        t, d = config.train, config.data
        self.t, self.output_dir, self.role, self.start = t, output_dir, role, start
        self.pace = Pace(d.return_id_num * d.image_num_every_id, t.max_steps)
        self.log = TrainLog(output_dir, start, role.is_chief)
        self.writer = (tf.summary.create_file_writer(os.path.join(output_dir, run_dir.TENSORBOARD, "train"))
                       if role.is_chief else tf.summary.create_noop_writer())
        self.trace: list = []

    def __call__(self, current: int, loss: float, stats: dict) -> None:
        t, lr = self.t, float(stats.pop("learning_rate"))
        if "embeddings" in stats:
            self.trace.append((current - 1, stats.pop("embeddings").numpy()))
        if current == self.start + 1 and self.role.is_chief and run_dir.read_first_step(self.output_dir) is None:
            # this run's first step (not a resumption's): how far the initial model is from trained
            run_dir.record_first_step(self.output_dir, {"step": current, "loss": round(loss, 6), **{
                k: round(float(stats[k]), 6) for k in ("triplet_loss", "id_loss") if k in stats}})
        if current % t.log_every == 0 or current == t.max_steps:
            self.log.add(current, loss, lr, stats)
        if current % t.log_every == 0 or current in (self.start + 2, t.max_steps):
            images_per_s, line = self.pace.report(current)
            logging.info("step %d/%d  %s  lr %.3g  %s", current, t.max_steps, losses_line(loss, stats),
                         lr, line)
            with self.writer.as_default():
                for key, value in {"loss": loss, "learning_rate": lr, **stats}.items():
                    tf.summary.scalar(key, value, step=current)
                if images_per_s:
                    tf.summary.scalar("images_per_second", images_per_s, step=current)

    def close(self) -> None:
        """Write a replay's trace: the global step and train-mode embeddings of each step it took."""
        if self.trace and self.role.is_chief:
            steps, embeddings = zip(*self.trace)
            buffer = io.BytesIO()  # a zip writer seeks, which object stores' files cannot
            np.savez(buffer, global_step=np.array(steps, np.int64), train_embeddings=np.stack(embeddings))
            with tf.io.gfile.GFile(os.path.join(self.output_dir, run_dir.REPLAY_TRACE), "wb") as f:
                f.write(buffer.getvalue())
