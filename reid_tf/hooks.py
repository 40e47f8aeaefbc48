"""The trainer and its hooks (fast-reid's before_train / after_step / after_train): the loop over the
steps stays a loop, and each concern of a run (its report, checkpoints, validation, the agreement
to stop, the end's export, leaving together) is a hook, tested on its own."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import tensorflow as tf
from absl import logging

from reid_tf import distribute, step_log
from reid_tf.resume import StopSignal, TrainingError


@dataclasses.dataclass
class Loop:
    """What the hooks see and may change: the step function and its input, the step reached, the
    last step's loss, statistics and time, the latest checkpoint, and why the run stopped early."""

    train_step: Callable
    iterator: object
    step: tf.Variable
    max_steps: int
    current: int = 0
    loss: float | None = None
    stats: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    latest: str | None = None
    stopped_by: str | None = None
    last_validation: dict | None = None
    summary: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.start = self.current = int(self.step.numpy())


class Hook:
    """A concern of the run, called around the loop's steps; `close` runs however the loop ends."""

    def before_train(self, loop: Loop) -> None:
        pass

    def after_step(self, loop: Loop) -> None:
        pass

    def after_train(self, loop: Loop) -> None:
        pass

    def close(self) -> None:
        pass


def train(loop: Loop, hooks: Sequence[Hook]) -> Loop:
    """Step until max_steps or until a hook stops the run, the hooks called in their order."""
    try:
        for hook in hooks:
            hook.before_train(loop)
        while loop.current < loop.max_steps and loop.stopped_by is None:
            began = time.perf_counter()
            loss, loop.stats = loop.train_step(loop.iterator)
            loop.loss, loop.seconds = float(loss), time.perf_counter() - began
            if not math.isfinite(loop.loss):
                raise TrainingError(f"the loss became {loop.loss} at step {loop.current + 1}: training stopped;"
                                    f" the last good checkpoint {loop.latest or '(none yet)'} is kept")
            loop.current = int(loop.step.assign_add(1).numpy())
            for hook in hooks:
                hook.after_step(loop)
        for hook in hooks:
            hook.after_train(loop)
    finally:
        for hook in reversed(hooks):
            hook.close()
    return loop


class ReportHook(Hook):
    """The console, TensorBoard, train_log.jsonl and first_step.json (step_log.StepReport)."""

    def __init__(self, report: step_log.StepReport):
        self.report = report

    def after_step(self, loop: Loop) -> None:
        self.report.pace.add(loop.seconds)
        self.report(loop.current, loop.loss, loop.stats)

    def after_train(self, loop: Loop) -> None:
        loop.summary["images_per_s"] = self.report.pace.images_per_second()

    def close(self) -> None:
        self.report.close()


class CheckpointHook(Hook):
    """A checkpoint every `every` steps, and one of the last step however the run ends, unless the
    last step has one. Every worker saves (a collective); only the chief's copy is kept."""

    def __init__(self, manager: tf.train.CheckpointManager, checkpoint_dir: distribute.CheckpointDir,
                 every: int, latest: str | None):
        self.manager, self.checkpoint_dir, self.every, self.latest = manager, checkpoint_dir, every, latest

    def save(self, loop: Loop) -> None:
        loop.latest = self.latest = self.manager.save(checkpoint_number=loop.current)
        self.checkpoint_dir.after_save()

    def before_train(self, loop: Loop) -> None:
        loop.latest = self.latest

    def after_step(self, loop: Loop) -> None:
        if loop.current % self.every == 0:
            self.save(loop)

    def after_train(self, loop: Loop) -> None:
        if not loop.latest or not loop.latest.endswith(f"-{loop.current}"):
            self.save(loop)
        if loop.stopped_by:
            logging.info("%s: saved step %d, stopping", loop.stopped_by, loop.current)

    def close(self) -> None:
        self.checkpoint_dir.close()


class ValidationHook(Hook):
    """A validation before the first step (when asked) and every `every` steps."""

    def __init__(self, validation: Callable[[int], dict | None], every: int, before_training: bool):
        self.validation, self.every, self.before_training = validation, every, before_training

    def before_train(self, loop: Loop) -> None:
        if loop.start == 0 and self.before_training:
            self.validation(0)

    def after_step(self, loop: Loop) -> None:
        if loop.current % self.every == 0:
            loop.last_validation = self.validation(loop.current)


class StopHook(Hook):
    """SIGTERM or SIGINT stops the run between steps; every worker stops at the same step, or the
    others would wait in a collective. Armed from the first step to the end of the export."""

    def __init__(self, any_worker: Callable[[bool], bool]):
        self.any_worker, self.signal = any_worker, StopSignal()

    def before_train(self, loop: Loop) -> None:
        self.signal.__enter__()

    def after_step(self, loop: Loop) -> None:
        if self.any_worker(self.signal.received is not None):
            loop.stopped_by = self.signal.received or "a signal to another worker"

    def close(self) -> None:
        self.signal.__exit__(None, None, None)


class FinishHook(Hook):
    """The chief's end of a run that was not stopped: `finish(loop)` (the final validation, the
    projector, the export) gives the run's summary."""

    def __init__(self, finish: Callable[[Loop], dict]):
        self.finish = finish

    def after_train(self, loop: Loop) -> None:
        if loop.stopped_by is None:
            loop.summary.update(self.finish(loop))


class LeaveTogetherHook(Hook):
    """Every worker leaves together: one that left while the chief still exported would end its part
    of the coordination service, and a worker still at work would take it for lost."""

    def __init__(self, strategy: tf.distribute.Strategy, watch):
        self.strategy, self.watch = strategy, watch

    def after_train(self, loop: Loop) -> None:
        self.watch.stop()
        distribute.leave_together(self.strategy)
