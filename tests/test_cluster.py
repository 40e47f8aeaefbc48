"""Several machines that survive losing one: two localhost workers, a kill -9 of either (in a step,
or while the chief validates), the survivor's one line and exit, a restart that resumes; a slow
chief not taken for a dead one; the Slurm and Kubernetes cluster resolvers."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest
import warm_python
from helpers import REPO, checkpoint_steps, tiny_flags

from reid_tf import distribute, group
from reid_tf.localhost import free_ports

# Runs the trainer with a validation that first sleeps SLOW_VALIDATION seconds (a long one, as
# Market-1501's takes minutes while the other workers wait in a collective; where VALIDATING names
# a file, it is written as the sleep begins), and, where ANSWERED names a file, a worker that takes
# SLOW_LEAVE seconds to say it has the last barrier's answer (a worker whose answer is slow to
# arrive) and then writes the time into it.
SLOW_TRAINER = r"""
import os, runpy, sys, time
from tensorflow.python.eager import context
from reid_tf import evaluate
real = evaluate.validate
def slow(*args, **kwargs):
    if os.environ.get("VALIDATING"):
        open(os.environ["VALIDATING"], "w").close()
    time.sleep(float(os.environ.get("SLOW_VALIDATION", "0")))
    return real(*args, **kwargs)
evaluate.validate = slow
real_set = context.Context.set_config_key_value
def slow_set(self, key, value):
    if key.startswith("reid_tf/left/") and os.environ.get("ANSWERED"):
        time.sleep(float(os.environ["SLOW_LEAVE"]))
        with open(os.environ["ANSWERED"], "w") as f:
            f.write(str(time.time()))
    return real_set(self, key, value)
context.Context.set_config_key_value = slow_set
sys.argv = ["reid_tf.train"] + sys.argv[1:]
runpy.run_module("reid_tf.train", run_name="__main__", alter_sys=True)
"""
LINE = ("error: lost worker {index} (localhost:{port}): {cause}. The group cannot go on without it: start"
        " every worker again with the same command; they resume from the last checkpoint")


def start(flags, tmp_dir, slow_validation=0.0, env_of=None):
    ports = free_ports(len(flags))
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index, worker_flags in enumerate(flags):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TMPDIR": str(tmp_dir), "TF_CONFIG": tf_config,
               "SLOW_VALIDATION": str(slow_validation if index == 0 else 0)}
        env.update(env_of(index, ports) if env_of else {})
        procs.append(warm_python.Popen([sys.executable, "-c", SLOW_TRAINER, *worker_flags], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs, ports


def wait_for(condition, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline and not condition():
        time.sleep(0.2)
    assert condition(), "timed out"


def survivor_after_kill(procs, victim):
    killed_at = time.time()
    procs[victim].send_signal(signal.SIGKILL)
    survivor = procs[1 - victim]
    _, err = survivor.communicate(timeout=120)
    procs[victim].communicate()
    return survivor.returncode, time.time() - killed_at, err


@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_worker_ends_the_group_with_one_line_and_the_restart_resumes(market_dir, tmp_path, victim):
    out = tmp_path / "run"
    flags = tiny_flags(market_dir, out, eval_every=1000, max_steps=100000, heartbeat_timeout=5)
    procs, ports = start([flags] * 2, tmp_path)
    wait_for(lambda: checkpoint_steps(str(out))[-1:] >= [4])
    code, seconds, err = survivor_after_kill(procs, victim)
    assert code != 0 and seconds < 60 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    causes = ("its connection was reset", "its connection was refused", "its connection broke",
              "it stopped sending heartbeats")
    assert last in [LINE.format(index=victim, port=ports[victim], cause=cause) for cause in causes], last
    saved = checkpoint_steps(str(out))[-1]
    if victim == 1:
        assert not (out / "run.lock").exists()  # the surviving chief let its lock go
    # The restart is no test of heartbeats: a margin that a busy machine's starved threads cannot reach.
    restart = tiny_flags(market_dir, out, eval_every=1000, max_steps=saved + 2, heartbeat_timeout=30)
    procs, _ = start([restart] * 2, tmp_path)
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert f"at step {saved}" in err  # "resumed from .../ckpt-N at step N", on every worker
    assert checkpoint_steps(str(out))[-1] == saved + 2


def test_a_worker_lost_while_the_chief_validates_ends_the_chief_too(market_dir, tmp_path):
    out, validating = tmp_path / "run", tmp_path / "validating"
    flags = tiny_flags(market_dir, out, eval_every=2, max_steps=100, heartbeat_timeout=3)
    procs, ports = start([flags] * 2, tmp_path, slow_validation=600,  # the chief validates for 10 minutes
                         env_of=lambda index, ports: {"VALIDATING": str(validating)} if index == 0 else {})
    wait_for(validating.exists)  # the chief is in its validation
    code, seconds, err = survivor_after_kill(procs, 1)
    assert code != 0 and seconds < 60 and "Traceback" not in err
    expected = LINE.format(index=1, port=ports[1], cause="it stopped sending heartbeats")
    assert err.strip().splitlines()[-1] == expected
    assert not (out / "run.lock").exists()


def test_a_slow_chief_is_not_taken_for_a_dead_one(market_dir, tmp_path):
    out = tmp_path / "run"
    flags = tiny_flags(market_dir, out, heartbeat_timeout=2)  # 4 steps, validations at 2 and 4
    procs, _ = start([flags] * 2, tmp_path, slow_validation=7)  # each validation 3.5 x the timeout
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert checkpoint_steps(str(out)) == [2, 4]


def test_slurm_starts_the_group_without_tf_config(market_dir, tmp_path):
    """srun's environment (faked: one node, two tasks) resolved by TF's SlurmClusterResolver; the
    group ends together, the chief (the coordination service's host) last, even after a worker
    slow to take the last barrier's answer."""
    out, answered = tmp_path / "run", tmp_path / "answered"
    port = free_ports(1)[0]

    def slurm(index, ports):
        slow = {"ANSWERED": str(answered), "SLOW_LEAVE": "3"} if index == 1 else {}
        return {"SLURM_PROCID": str(index), "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "localhost",
                "SLURM_STEP_TASKS_PER_NODE": "2", "TF_CONFIG": "", "CUDA_VISIBLE_DEVICES": "", **slow}

    flags = tiny_flags(market_dir, out) + ["--cluster=slurm", f"--cluster_port={port}"]
    procs, _ = start([flags] * 2, tmp_path, env_of=slurm)
    chief_err = procs[0].communicate(timeout=300)[1]
    chief_left = time.time()
    _, err = procs[1].communicate(timeout=300)
    for proc, output in zip(procs, (chief_err, err)):
        assert proc.returncode == 0, output[-3000:]
        assert "on 2 replica(s) of 2 worker(s)" in output
    assert chief_left >= float(answered.read_text())  # the chief left after the slow worker had its answer
    assert checkpoint_steps(str(out)) == [2, 4]


def test_slurm_resolver_reads_the_job_step(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[07-08],gpu1")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "1(x2),2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: CPU nodes
    resolver = distribute.cluster_resolver("slurm", port=5000)
    spec = resolver.cluster_spec().as_dict()
    assert spec == {"worker": ["gpu1:5000", "gpu1:5001", "node07:5000", "node08:5000"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)
    monkeypatch.delenv("SLURM_PROCID")
    with pytest.raises(distribute.DistributionError, match="start every task with srun"):
        distribute.cluster_resolver("slurm")


def pod(name, index, phase="Running"):
    return types.SimpleNamespace(
        metadata=types.SimpleNamespace(name=name,
                                       annotations={"batch.kubernetes.io/job-completion-index": str(index)}),
        status=types.SimpleNamespace(phase=phase, host_ip="10.0.0.1", pod_ip=f"10.1.0.{index}"),
        spec=types.SimpleNamespace(hostname=f"reid-train-{index}", subdomain="reid-workers"))


class FakeKubernetes:
    """The API answers KubernetesClusterResolver reads: the pods of a label selector."""

    def __init__(self, answers):
        self.answers, self.selectors = list(answers), []

    def list_pod_for_all_namespaces(self, label_selector):
        self.selectors.append(label_selector)
        return types.SimpleNamespace(items=self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])


def test_kubernetes_resolver_of_an_indexed_job(monkeypatch):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    # Pod names sort as strings (reid-train-10 before reid-train-2): order by completion index instead.
    pods = [pod(f"reid-train-{i}-x{i}", i) for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)]
    client = FakeKubernetes([[pod("reid-train-0-a", 0, "Pending")], pods])
    resolver = distribute.IndexedJobResolver("reid-train", 23456, client=client, wait=30)
    spec = resolver.cluster_spec().as_dict()  # waited for the pending pod
    assert spec["worker"][:3] == ["reid-train-0.reid-workers:23456", "reid-train-1.reid-workers:23456",
                                  "reid-train-2.reid-workers:23456"]
    assert spec["worker"][10] == "reid-train-10.reid-workers:23456"
    assert client.selectors[0] == "job-name=reid-train"
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    pending = FakeKubernetes([[pod("p", 0, "Pending")]])
    stuck = distribute.IndexedJobResolver("reid-train", 23456, client=pending, wait=0)
    with pytest.raises(distribute.DistributionError, match="pods of job reid-train not running"):
        stuck.cluster_spec()
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    with pytest.raises(distribute.DistributionError, match="Indexed Job"):
        distribute.IndexedJobResolver("reid-train", 23456, client=client)


def test_the_lost_worker_line_from_each_error_tensorflow_gives():
    import tensorflow as tf

    resolver = types.SimpleNamespace(task_type="worker", task_id=0, cluster_spec=lambda: tf.train.ClusterSpec(
        {"worker": ["host-a:2222", "host-b:2222", "host-c:2222"]}))
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    heartbeats = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: Error reported from /job:worker/task:2: The following tasks are"
        " unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:2\nThe tasks have crashed."))
    refused = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: failed to connect to all addresses; last error: UNKNOWN:"
        " ipv4:host-b:2222: Failed to connect to remote host: Connection refused"))
    # The barrier every worker leaves at: a worker's heartbeats stop, or its host (the chief) dies.
    barrier_heartbeats = tf.errors.InternalError(None, None, (
        "Barrier failed because: task is set to ERROR: UNAVAILABLE: Task /job:worker/replica:0/task:1"
        " heartbeat timeout. This indicates that the remote task has failed, got preempted, or crashed"
        " unexpectedly. Barrier Id: reid_tf/leave/0::0, Task: /job:worker/replica:0/task:1"))
    barrier_host = tf.errors.UnavailableError(None, None, (
        "Failed to send RPC to coordination service. Either the leader task was preempted/died/restarted"
        " unexpectedly or this task is experiencing network issues. Additional GRPC error information from"
        " remote target /job:worker/replica:0/task:0 while calling /tensorflow.CoordinationService/Barrier:"
        ' :UNKNOWN:Error received from peer  {grpc_message:"Socket closed", grpc_status:14}'))
    # A chief paused for 3 x the heartbeat timeout (SIGSTOP, then SIGCONT), as each side saw it.
    worker_side = tf.errors.DeadlineExceededError(None, None, (
        "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_0_device_/job:worker/replica:0/task:1/"
        "device:CPU:0}} Collective ops is aborted by: Deadline Exceeded\n\nRPC: /tensorflow.CoordinationService/"
        "Heartbeat\nThe error could be from a previous operation. Restart your program to reset."
        " [Op:CollectiveReduceV2]"))
    chief_side = tf.errors.UnavailableError(None, None, (
        "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_0_device_/job:worker/replica:0/task:0/"
        "device:CPU:0}} Collective ops is aborted by: sendmsg: Broken pipe (32)\nAdditional GRPC error"
        " information from remote target /job:worker/replica:0/task:1 while calling"
        " /tensorflow.WorkerService/RecvBuf:\nThe error could be from a previous operation. Restart your"
        " program to reset. [Op:CollectiveReduceV2]"))
    chief_itself = tf.errors.AbortedError(None, None, (
        "Collective ops is aborted by: Unexpected heartbeat request from an already-in-error task:"
        " /job:worker/replica:0/task:0 with existing error: UNAVAILABLE: Task /job:worker/replica:0/task:0"
        " heartbeat timeout. This indicates that the remote task has failed, got preempted, or crashed"
        " unexpectedly.\nRPC: /tensorflow.CoordinationService/Heartbeat"))
    other = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes")
    assert group.lost_worker_line(heartbeats, strategy).startswith(
        "lost worker 2 (host-c:2222): it stopped sending heartbeats.")
    assert group.lost_worker_line(refused, strategy).startswith(
        "lost worker 1 (host-b:2222): its connection was refused.")
    assert group.lost_worker_line(barrier_heartbeats, strategy).startswith(
        "lost worker 1 (host-b:2222): it stopped sending heartbeats.")
    as_worker_2 = types.SimpleNamespace(cluster_resolver=types.SimpleNamespace(
        task_type="worker", task_id=2, cluster_spec=resolver.cluster_spec))
    assert group.lost_worker_line(barrier_host, as_worker_2).startswith(
        "lost worker 0 (host-a:2222): its connection was reset.")
    as_worker_1 = types.SimpleNamespace(cluster_resolver=types.SimpleNamespace(
        task_type="worker", task_id=1, cluster_spec=resolver.cluster_spec))
    assert group.lost_worker_line(worker_side, as_worker_1).startswith(
        "lost worker 0 (host-a:2222): it did not answer heartbeats in time (dead, paused or starved of CPU;"
        " a busy machine needs a longer --heartbeat_timeout).")
    assert group.lost_worker_line(chief_side, strategy).startswith("lost worker 1 (host-b:2222): its connection broke.")
    assert group.lost_worker_line(chief_itself, strategy).startswith(
        "lost this worker, worker 0 (host-a:2222): the coordination service heard no heartbeat from it for"
        " longer than --heartbeat_timeout")
    assert group.lost_worker_line(other, strategy) is None
