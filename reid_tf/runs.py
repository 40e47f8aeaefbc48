"""Run folders as the report reads them: config, validation rows, first step, state, note; and
the scalar curves of their TensorBoard events."""

from __future__ import annotations

import dataclasses
import datetime
import os

import tensorflow as tf
from absl import logging

from reid_tf import config as config_lib
from reid_tf import run_dir


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
