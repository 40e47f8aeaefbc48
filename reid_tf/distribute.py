"""Distribution: the cluster and the strategy, this process's role (chief or worker), agreement
across workers, and what happens when one of them is lost.

One device, every GPU of a machine (MirroredStrategy) or several machines (MultiWorkerMirrored-
Strategy, its cluster from TF_CONFIG, Slurm or Kubernetes through TensorFlow's cluster
resolvers): the loop is the same. The chief (worker 0, or the task of type "chief") alone writes
the run folder; the other workers take part in every collective, including checkpoint saves,
whose copies they write to a local temporary folder and delete, as TensorFlow's multi-worker
guide prescribes. How a group ends (a lost worker, or all of them at the finish): group.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable

import tensorflow as tf

from reid_tf.config import CLUSTERS
from reid_tf.errors import ReidError


class DistributionError(ReidError, RuntimeError):
    """Workers that cannot train together; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Role:
    """Where this process stands in the cluster."""

    is_chief: bool = True
    worker_index: int = 0
    num_workers: int = 1


def cluster_resolver(kind: str = "tf_config", port: int = 23456, kubernetes_job: str = ""):
    """TensorFlow's resolver of the cluster this process belongs to, or None on one machine:
    TF_CONFIG (when set), Slurm's job step (srun), or a Kubernetes Indexed Job's pods."""
    from tensorflow.python.distribute import cluster_resolver as resolvers

    if kind == "tf_config":
        return resolvers.TFConfigClusterResolver() if os.environ.get("TF_CONFIG") else None
    if kind == "slurm":
        if "SLURM_PROCID" not in os.environ:
            raise DistributionError("--cluster=slurm: no SLURM_PROCID here; start every task with srun")
        if os.environ.get("CUDA_VISIBLE_DEVICES") or shutil.which("nvidia-smi"):
            return resolvers.SlurmClusterResolver(port_base=port)  # each task gets its node's GPUs
        # CPU nodes: the resolver hands out one "GPU" slot a task, so give it as many as tasks.
        tasks = max(int(n.split("(")[0]) for n in os.environ.get("SLURM_STEP_TASKS_PER_NODE", "1").split(","))
        return resolvers.SlurmClusterResolver(port_base=port, gpus_per_node=tasks, gpus_per_task=1,
                                              auto_set_gpu=False)
    if kind == "kubernetes":
        return IndexedJobResolver(kubernetes_job, port)
    raise DistributionError(f"--cluster={kind}: one of {', '.join(CLUSTERS)}")


def configure_coordination(resolver, heartbeat_timeout: float) -> None:
    """Set the coordination service's heartbeat timeout (how long a silent worker is still taken
    for alive) before the strategy starts it; a chief busy for longer keeps its heartbeats."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    spec = resolver.cluster_spec()
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
                          for job in ("chief", "worker") if job in spec.jobs],
        heartbeat_timeout_in_ms=int(heartbeat_timeout * 1000))


def choose_strategy(resolver=None, heartbeat_timeout: float = 10.0) -> tf.distribute.Strategy:
    """Several machines (a resolver, or TF_CONFIG), else every GPU of this machine, else the one
    device TensorFlow places on by default."""
    resolver = resolver or cluster_resolver()
    if resolver is not None:
        configure_coordination(resolver, heartbeat_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    # One device: the default strategy, under which the input stays a plain tf.data iterator. A
    # OneDeviceStrategy's distributed iterator runs the same graph 1.7x slower on a CPU
    # (docs/benchmarks.md, "one device").
    return tf.distribute.get_strategy()


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
        leave_together(strategy)  # each worker says why and stops, none taking another's exit for a loss
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

    @tf.function(autograph=False)
    def count(flag):
        return strategy.experimental_local_results(strategy.run(replica_count, args=(flag,)))[0]

    return lambda flag: bool(count(tf.constant(float(flag))) > 0)


def leave_together(strategy: tf.distribute.Strategy) -> None:
    """Return when every worker has come here, the chief last: the coordination service's barrier,
    then each worker's word that it has the barrier's answer. The chief hosts the service, so a
    chief that left at once could cut a worker's answer off, and the worker took the reset
    connection for a lost chief; only that last word can go unanswered, and a worker ignores it."""
    role = role_of(strategy)
    if role.num_workers > 1:
        from tensorflow.python.eager import context

        n = next(_barriers)
        # No deadline that matters: the chief may validate and export for long; a lost worker
        # fails the barrier through its heartbeats.
        context.context().wait_at_barrier(f"reid_tf/leave/{n}", 7 * 24 * 3_600_000)
        if role.is_chief:
            for index in range(1, role.num_workers):
                try:
                    context.context().get_config_key_value(f"reid_tf/left/{n}/{index}", 60_000)
                except tf.errors.OpError:
                    pass  # a worker lost after the barrier: the group had finished
        else:
            try:
                context.context().set_config_key_value(f"reid_tf/left/{n}/{role.worker_index}", "1")
            except tf.errors.OpError:
                pass  # the chief had what it waited for and left


_barriers = itertools.count()


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


# ---------------------------------------------------------------------------- Kubernetes


class IndexedJobResolver(tf.distribute.cluster_resolver.KubernetesClusterResolver):
    """TensorFlow's KubernetesClusterResolver for the pods of an Indexed Job behind a headless
    Service: every pod of `job-name=JOB`, ordered by completion index, addressed by its DNS name
    (hostname.subdomain, which the Service resolves) rather than its node's IP (TF's default, which
    two pods on one node would share); this pod's index is JOB_COMPLETION_INDEX. Pods not yet
    running are waited for, up to `wait` seconds."""

    def __init__(self, job: str, port: int, client=None, wait: float = 600.0):
        if "JOB_COMPLETION_INDEX" not in os.environ:
            raise DistributionError("--cluster=kubernetes runs in the pods of an Indexed Job (no"
                                    " JOB_COMPLETION_INDEX here): see docs/kubernetes.yaml")
        if client is None:
            try:
                from kubernetes import client as k8s_client
                from kubernetes import config as k8s_config
            except ImportError:
                raise DistributionError('--cluster=kubernetes needs the Kubernetes client: pip install -e'
                                        ' ".[kubernetes]"') from None
            k8s_config.load_incluster_config()
            client = k8s_client.CoreV1Api()
        super().__init__({"worker": [f"job-name={job}"]}, tf_server_port=port, override_client=client)
        self.job, self.port, self.wait = job, port, wait
        self.task_type, self.task_id = "worker", int(os.environ["JOB_COMPLETION_INDEX"])

    def cluster_spec(self) -> tf.train.ClusterSpec:
        deadline = time.time() + self.wait
        while True:
            answer = self._override_client.list_pod_for_all_namespaces(label_selector=f"job-name={self.job}")
            pods = answer.items
            waiting = [p.metadata.name for p in pods if p.status.phase != "Running"]
            if pods and not waiting:
                break
            if time.time() > deadline:
                raise DistributionError(f"--cluster=kubernetes: pods of job {self.job} not running after"
                                        f" {self.wait:.0f} s: {', '.join(waiting) or 'none found'}")
            time.sleep(2.0)
        index = "batch.kubernetes.io/job-completion-index"
        pods = sorted(pods, key=lambda p: int(p.metadata.annotations[index]))
        return tf.train.ClusterSpec({"worker": [f"{p.spec.hostname}.{p.spec.subdomain}:{self.port}"
                                                for p in pods]})
