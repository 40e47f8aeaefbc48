"""Distribution: the strategy, this process's role (chief or worker), and agreement across workers.

One device, every GPU of a machine (MirroredStrategy) or several machines (MultiWorkerMirrored-
Strategy with TF_CONFIG): the loop is the same. The chief (worker 0, or the task of type
"chief") alone writes the run folder; the other workers take part in every collective, including
checkpoint saves, whose copies they write to a local temporary folder and delete, as TensorFlow's
multi-worker guide prescribes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable

import tensorflow as tf


class DistributionError(RuntimeError):
    """Workers that cannot train together; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Role:
    """Where this process stands in the cluster."""

    is_chief: bool = True
    worker_index: int = 0
    num_workers: int = 1


def choose_strategy() -> tf.distribute.Strategy:
    """Several machines with TF_CONFIG, else every GPU of this machine, else one device."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def role_of(strategy: tf.distribute.Strategy) -> Role:
    """This process's role: a single-machine strategy is its own chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec:
        return Role()
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in spec)
    index = task_id + (1 if "chief" in spec and task_type == "worker" else 0)
    return Role(is_chief=chief, worker_index=0 if task_type == "chief" else index, num_workers=workers)


def _gather_scalars(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """Every replica's copy of `value` (an int64), in replica order, on every worker."""
    values = strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant([value], tf.int64))
    return [int(v) for v in strategy.gather(values, axis=0).numpy()]


def config_fingerprint(guarded: dict) -> int:
    """A 63-bit digest of the settings every worker must share."""
    digest = hashlib.sha256(json.dumps(guarded, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def check_same_config(strategy: tf.distribute.Strategy, guarded: dict) -> None:
    """Refuse to train unless every worker was started with the chief's settings."""
    prints = _gather_scalars(strategy, config_fingerprint(guarded))
    if len(set(prints)) > 1:
        per_worker = len(prints) // max(role_of(strategy).num_workers, 1)
        odd = sorted({i // per_worker for i, p in enumerate(prints) if p != prints[0]})
        raise DistributionError(
            f"worker(s) {', '.join(map(str, odd))} run with another configuration than the chief:"
            " start every worker with the same flags"
        )


def make_any_worker(strategy: tf.distribute.Strategy) -> Callable[[bool], bool]:
    """A function true on every worker when its argument is true on any (a stop signal, say):
    one scalar all-reduce a call under several workers, nothing on one machine."""
    if role_of(strategy).num_workers == 1:
        return bool

    def replica_count(flag):
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(flag))

    @tf.function
    def count(flag):
        return strategy.experimental_local_results(strategy.run(replica_count, args=(flag,)))[0]

    return lambda flag: bool(count(tf.constant(float(flag))) > 0)


class CheckpointDir:
    """Where this worker's checkpoint copies go: the run's folder for the chief; for the others
    a local temporary folder, made by each save and deleted right after it."""

    def __init__(self, run_checkpoints: str, role: Role):
        self.is_temporary = not role.is_chief
        self.path = run_checkpoints if role.is_chief else os.path.join(
            tempfile.gettempdir(), f"reid_tf-worker{role.worker_index}-{uuid.uuid4().hex[:8]}")

    def after_save(self) -> None:
        if self.is_temporary:
            shutil.rmtree(self.path, ignore_errors=True)

    close = after_save
