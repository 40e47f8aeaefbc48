"""A group of workers that ends as one: the loss of any worker, seen within seconds wherever the
others are (in a step, a validation or an export), becomes one line naming it and an exit.

TensorFlow's coordination service detects a lost worker (heartbeats, or a failed connection) and
aborts every worker's collectives; `GroupWatch` turns that abort into the line and the exit.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from collections.abc import Callable

import tensorflow as tf

from reid_tf.distribute import role_of
from reid_tf.errors import ReidError

_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
_ADDRESS = re.compile(r"(?:ipv4:|ipv6:|dns:)?\[?([\w.\-:]+?)\]?:(\d+)\b")
# How TensorFlow words a lost worker: aborted collectives, the service's unhealthy tasks or
# heartbeat timeouts (a barrier), a failed RPC to the coordination service (its host, the chief).
_SIGNS = ("aborted", "unhealthy", "heartbeat timeout", "coordination service")
_TIMED_OUT = re.compile(r"task /job:(\w+)/replica:\d+/task:(\d+) heartbeat timeout", re.I)
_WHAT_TO_DO = ("The group cannot go on without it: start every worker again with the same command; they"
               " resume from the last checkpoint")
_reported = threading.Event()


def lost_worker_line(error: BaseException, strategy) -> str | None:
    """One line naming the worker whose loss `error` reports (index, host:port, how it was
    seen) and what to do; None when the error is not a lost worker's."""
    text = str(error)
    # TensorFlow ends these errors with "Restart your program to reset.": no sign of a reset connection.
    low = text.lower().replace("restart your program to reset", "")
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(error, tf.errors.OpError) or not any(sign in low for sign in _SIGNS):
        return None
    spec = resolver.cluster_spec().as_dict()
    own = (resolver.task_type, int(resolver.task_id or 0))
    order = [(job, i) for job in ("chief", "worker") for i in range(len(spec.get(job, [])))]
    unhealthy = text.split("unhealthy", 1)[1] if "unhealthy" in text else text
    tasks = [(job, int(i)) for job, i in _TASK.findall(unhealthy) if (job, int(i)) != own]
    if not tasks:  # a connection to an address failed: which task listens there
        addresses = {address: task for task in order for address in [spec[task[0]][task[1]]]}
        tasks = [addresses[f"{host}:{port}"] for host, port in _ADDRESS.findall(text)
                 if f"{host}:{port}" in addresses and addresses[f"{host}:{port}"] != own]
    unanswered = "deadline exceeded" in low and "coordinationservice" in low
    if not tasks and unanswered and order[0] != own:  # the coordination service's host: the chief
        tasks = [order[0]]
    cause = ("it stopped sending heartbeats" if "unhealthy" in text or "heartbeat timeout" in low else
             "it did not answer heartbeats in time (dead, paused or starved of CPU; a busy machine needs a"
             " longer --heartbeat_timeout)" if unanswered else
             "its connection was refused" if "refused" in low else
             "its connection broke" if "broken pipe" in low else
             "its connection was reset" if "reset" in low or "socket closed" in low else
             "its collectives failed")
    if not tasks and own in [(job, int(i)) for job, i in _TIMED_OUT.findall(text)]:
        return (f"lost this worker, worker {order.index(own)} ({spec[own[0]][own[1]]}): the coordination service"
                " heard no heartbeat from it for longer than --heartbeat_timeout (paused or starved of CPU; a"
                f" busy machine needs a longer one). {_WHAT_TO_DO}")
    if tasks:
        job, i = tasks[0]
        who = f"worker {order.index((job, i))} ({spec[job][i]})"
    else:
        who = "a worker"
    return f"lost {who}: {cause}. {_WHAT_TO_DO}"


class LostWorkerError(ReidError, RuntimeError):
    """Another worker of the group was lost: the message is the line that names it and what to do."""


def report_lost_worker(line: str) -> bool:
    """Print the line once per process (the watch and the loop may both see the loss)."""
    if _reported.is_set():
        return False
    _reported.set()
    print(f"error: {line}", file=sys.stderr, flush=True)
    return True


class GroupWatch:
    """Exits this worker within seconds of the loss of another, at any instant: the coordination
    service aborts this worker's collective executor when a worker stops sending heartbeats (or
    its connection fails), and a one-worker collective every `interval` seconds, a no-op
    otherwise, sees that abort even while this worker does not communicate (the chief during a
    long validation or export). `on_lost` runs first (the chief releases its lock), then `end` with
    the line: the command ends the process there (a library never exits)."""

    _keys = itertools.count(1)

    def __init__(self, strategy, on_lost: Callable[[], None] | None = None, interval: float = 5.0,
                 end: Callable[[str], None] | None = None):
        self.strategy, self.on_lost, self.interval, self.end = strategy, on_lost, interval, end
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> GroupWatch:
        if role_of(self.strategy).num_workers > 1:
            self._thread = threading.Thread(target=self._watch, daemon=True, name="group-watch")
            self._thread.start()
        return self

    def _probe(self) -> None:
        resolver = self.strategy.cluster_resolver
        with tf.device(f"/job:{resolver.task_type}/replica:0/task:{resolver.task_id}/device:CPU:0"):
            tf.raw_ops.CollectiveReduceV2(
                input=tf.zeros([1]), group_size=tf.constant(1),
                group_key=tf.constant(1_000_000 + role_of(self.strategy).worker_index),
                instance_key=tf.constant(next(self._keys)), ordering_token=[], merge_op="Add", final_op="Id")

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._probe()
            except tf.errors.OpError as e:
                line = lost_worker_line(e, self.strategy)
                if line is None or self._stop.is_set():
                    continue
                if self.on_lost is not None:
                    self.on_lost()
                if report_lost_worker(line) and self.end is not None:
                    self.end(line)  # the main thread may be in a long validation: the command ends it now

    def stop(self) -> None:
        """End the watch, its probe in flight included: from the group's last barrier on, the
        chief's exit is the end, not a loss."""
        self._stop.set()
        if self._thread is not None:  # bounded: a probe that fails after the stop is ignored anyway
            self._thread.join(timeout=2 * self.interval)

    def __exit__(self, *exc) -> None:
        self.stop()
