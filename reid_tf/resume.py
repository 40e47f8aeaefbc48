"""How a run starts and stops: from its own latest checkpoint (a resume), from another run's (a warm
start: the weights only, or everything as the original's TF1 Saver restored it), and the
signal that stops it between steps."""

from __future__ import annotations

import os
import signal

import tensorflow as tf

from reid_tf.errors import ReidError


class TrainingError(ReidError, RuntimeError):
    """A run that cannot go on; the message is one line saying why and what to do."""


def source_checkpoint(init_checkpoint: str) -> str:
    """The checkpoint prefix a warm start reads: a run folder's latest, or the prefix given."""
    path = init_checkpoint
    if tf.io.gfile.isdir(path):
        in_run = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
        path = in_run or tf.train.latest_checkpoint(path)
    if not path or not tf.io.gfile.exists(path + ".index"):
        raise TrainingError(f"--init_checkpoint={init_checkpoint}: no checkpoint found there")
    return path


def warm_start(objects: dict, init_checkpoint: str) -> str:
    """Load `objects` (the model; with --init_checkpoint_full also the optimiser and the step)
    from another run's checkpoint; returns the checkpoint read."""
    path = source_checkpoint(init_checkpoint)
    try:
        tf.train.Checkpoint(**objects).read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise TrainingError(
            f"--init_checkpoint={path} does not fit this model: {str(e).splitlines()[0][:160]}") from None
    return path


class StopSignal:
    """Remembers SIGTERM / SIGINT so the loop can checkpoint and stop between steps."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
