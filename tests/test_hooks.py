"""The trainer's loop and each of its hooks on its own (reid_tf.hooks), with a step that needs no model."""

import os
import signal

import pytest
import tensorflow as tf

from reid_tf import hooks
from reid_tf.resume import TrainingError


def _loop(max_steps=6, losses=None, start=0):
    losses = iter(losses or [1.0] * 100)
    return hooks.Loop(lambda iterator: (next(losses), {}), None, tf.Variable(start, dtype=tf.int64), max_steps)


class Calls(hooks.Hook):
    def __init__(self, log, name):
        self.log, self.name = log, name

    def before_train(self, loop):
        self.log.append((self.name, "before", loop.current))

    def after_step(self, loop):
        self.log.append((self.name, "step", loop.current))

    def after_train(self, loop):
        self.log.append((self.name, "after", loop.current))

    def close(self):
        self.log.append((self.name, "close", None))


class Manager:
    def __init__(self):
        self.saved = []

    def save(self, checkpoint_number):
        self.saved.append(checkpoint_number)
        return f"ckpt-{checkpoint_number}"


class Folder:
    def after_save(self):
        pass

    def close(self):
        pass


def test_the_loop_calls_each_hook_in_order_and_closes_them_in_reverse():
    log = []
    loop = hooks.train(_loop(max_steps=2, start=0), [Calls(log, "a"), Calls(log, "b")])
    assert loop.current == 2
    assert log == [("a", "before", 0), ("b", "before", 0), ("a", "step", 1), ("b", "step", 1), ("a", "step", 2),
                   ("b", "step", 2), ("a", "after", 2), ("b", "after", 2), ("b", "close", None), ("a", "close", None)]


def test_a_non_finite_loss_stops_before_any_hook_sees_the_step_and_names_the_last_checkpoint():
    log, manager = [], Manager()
    chain = [hooks.CheckpointHook(manager, Folder(), 2, None), Calls(log, "a")]
    with pytest.raises(TrainingError, match="loss became nan at step 3: .* checkpoint ckpt-2 is kept"):
        hooks.train(_loop(losses=[1.0, 1.0, float("nan")]), chain)
    assert manager.saved == [2] and ("a", "step", 3) not in log and log[-1] == ("a", "close", None)


def test_checkpoints_every_n_steps_and_once_at_the_end():
    manager = Manager()
    hooks.train(_loop(max_steps=5), [hooks.CheckpointHook(manager, Folder(), 2, None)])
    assert manager.saved == [2, 4, 5]
    manager = Manager()
    hooks.train(_loop(max_steps=4), [hooks.CheckpointHook(manager, Folder(), 2, None)])
    assert manager.saved == [2, 4]  # the last step had one


def test_validation_before_training_only_from_step_0_and_every_n_steps():
    seen = []
    hooks.train(_loop(max_steps=4), [hooks.ValidationHook(lambda s: seen.append(s) or {"step": s}, 2, True)])
    assert seen == [0, 2, 4]
    seen.clear()
    validation = hooks.ValidationHook(lambda s: seen.append(s) or {"s": s}, 2, True)
    loop = hooks.train(_loop(max_steps=6, start=3), [validation])
    assert seen == [4, 6] and loop.last_validation == {"s": 6}


def test_a_signal_stops_the_run_after_its_step_saves_it_and_skips_the_finish():
    manager, finished, log, before = Manager(), [], [], signal.getsignal(signal.SIGTERM)

    class Signal(hooks.Hook):
        def after_step(self, loop):
            if loop.current == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    chain = [hooks.CheckpointHook(manager, Folder(), 100, None), Signal(), hooks.StopHook(bool),
             hooks.FinishHook(lambda loop: finished.append(loop.current) or {}), Calls(log, "last")]
    loop = hooks.train(_loop(max_steps=10), chain)
    assert (loop.current, loop.stopped_by) == (3, "SIGTERM")
    assert manager.saved == [3] and finished == [] and ("last", "after", 3) in log
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is given back


def test_the_finish_gives_the_summary_of_a_run_that_was_not_stopped():
    loop = hooks.train(_loop(max_steps=2), [hooks.FinishHook(lambda loop: {"export": f"e/{loop.current}"})])
    assert loop.summary == {"export": "e/2"}
