"""The whole train.run under two replicas (MirroredStrategy on two logical CPUs) and under two
worker processes (MultiWorkerMirroredStrategy on localhost), against the single-device run."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import warm_python
from helpers import REPO, checkpoint_steps, tensorboard_losses, tiny_config, tiny_flags, with_train

from reid_tf import export_lib, run_dir, train_lib
from reid_tf.localhost import free_ports

MIRRORED = r"""
import json, sys, dataclasses
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[3])
from helpers import tiny_config, with_train
from reid_tf import config as C, train_lib
market, root = sys.argv[1], sys.argv[2]
config = tiny_config(market)
config = dataclasses.replace(config, model=dataclasses.replace(config.model, trainable="head"))
summaries = {}
# One MirroredStrategy for the process: two of them would reuse each other's collective keys.
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
for name, strategy in (("one", one_device), ("two", mirrored)):
    train_lib.run(with_train(config, max_steps=2), f"{root}/{name}", strategy=strategy)
    summaries[name] = train_lib.run(config, f"{root}/{name}", strategy=strategy)  # resumes at step 2
# BoT's training-only heads (classifier, centres with their SGD) and weight decay, the same way.
bot = dataclasses.replace(
    with_train(config, max_steps=3), model=dataclasses.replace(config.model, neck="bnneck"),
    loss=C.LossConfig(id_loss_weight=1.0, label_smoothing=0.1, center_loss_weight=0.5),
    optimizer=dataclasses.replace(config.optimizer, weight_decay=5e-4, warmup_steps=2))
for name, strategy in (("bot_one", one_device), ("bot_two", mirrored)):
    summaries[name] = train_lib.run(bot, f"{root}/{name}", strategy=strategy)
# Adaptation: the cluster memory's momentum update and a re-clustering at step 2, the same way.
adapt = dataclasses.replace(with_train(config, max_steps=3), adapt=dataclasses.replace(
    config.adapt, adapt_to="market1501", adapt_data_dir=market, cluster_every=2, cluster_eps=0.4,
    cluster_min_samples=2, cluster_k1=10))
for name, strategy in (("adapt_one", one_device), ("adapt_two", mirrored)):
    summaries[name] = train_lib.run(adapt, f"{root}/{name}", strategy=strategy)
fp16 = with_train(tiny_config(market), mixed_precision="float16", max_steps=3)
summaries["fp16"] = train_lib.run(fp16, f"{root}/fp16", strategy=mirrored)
print("SUMMARIES " + json.dumps(summaries))
"""


def test_mirrored_strategy_runs_train_run_like_one_device(market_dir, tmp_path):
    proc = warm_python.run([sys.executable, "-c", MIRRORED, market_dir, str(tmp_path),
                           os.path.dirname(__file__)], capture_output=True, text=True, timeout=400)
    line = [x for x in proc.stdout.splitlines() if x.startswith("SUMMARIES ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    summaries = json.loads(line[0][len("SUMMARIES "):])
    one, two = tensorboard_losses(str(tmp_path / "one")), tensorboard_losses(str(tmp_path / "two"))
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    np.testing.assert_allclose([two[s] for s in range(1, 5)], [one[s] for s in range(1, 5)], rtol=1e-5)
    for name in ("one", "two"):
        out = str(tmp_path / name)
        assert checkpoint_steps(out) == [2, 4]
        rows = run_dir.read_validations(os.path.join(out, "validation.jsonl"))
        assert [r["step"] for r in rows] == [2, 4]
        assert os.path.exists(os.path.join(out, "export", "4", "saved_model.pb"))
        assert summaries[name]["step"] == 4
    assert summaries["two"]["final"]["mAP"] == pytest.approx(summaries["one"]["final"]["mAP"], abs=1e-4)
    bot_one, bot_two = (tensorboard_losses(str(tmp_path / n)) for n in ("bot_one", "bot_two"))
    assert sorted(bot_one) == sorted(bot_two) == [1, 2, 3]
    np.testing.assert_allclose([bot_two[s] for s in (1, 2, 3)], [bot_one[s] for s in (1, 2, 3)], rtol=1e-5)
    assert bot_one[3] != bot_one[1]
    adapt_one, adapt_two = (tensorboard_losses(str(tmp_path / n)) for n in ("adapt_one", "adapt_two"))
    assert sorted(adapt_one) == sorted(adapt_two) == [1, 2, 3]
    np.testing.assert_allclose([adapt_two[s] for s in (1, 2, 3)], [adapt_one[s] for s in (1, 2, 3)], rtol=1e-5)
    clusterings = [[r["step"] for r in run_dir.read_validations(os.path.join(str(tmp_path / n), "validation.jsonl"))
                    if "clusters" in r] for n in ("adapt_one", "adapt_two")]
    assert clusterings == [[0, 2], [0, 2]]
    # Loss scaling under a strategy: finite losses, checkpoints of the scaled optimiser.
    fp16 = tensorboard_losses(str(tmp_path / "fp16"))
    assert sorted(fp16) == [1, 2, 3] and all(np.isfinite(v) for v in fp16.values())
    assert checkpoint_steps(str(tmp_path / "fp16")) == [2, 3]


# ---------------------------------------------------------------------------- two worker processes


def start_workers(flags_per_worker: list[list[str]], tmp_dir) -> list[subprocess.Popen]:
    ports = free_ports(len(flags_per_worker))
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index, flags in enumerate(flags_per_worker):
        env = {**os.environ, "TMPDIR": str(tmp_dir),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(warm_python.Popen([sys.executable, "-m", "reid_tf.train", *flags], cwd=REPO,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=300) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, err))
    return results


def test_two_workers_train_like_one_process_and_only_the_chief_writes(market_dir, tmp_path):
    out, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    flags = tiny_flags(market_dir, out)
    results = finish(start_workers([flags, flags], scratch))
    for code, err in results:
        assert code == 0, err[-3000:]
    assert "on 2 replica(s) of 2 worker(s), batch 8" in results[0][1]
    # No lock, no temporaries.
    assert sorted(os.listdir(out)) == ["checkpoints", "config.json", "export", "first_step.json", "flags.cfg",
                                       "started.txt", "tensorboard", "train_log.jsonl", "validation.jsonl"]
    assert checkpoint_steps(str(out)) == [2, 4]
    assert [r["step"] for r in run_dir.read_validations(str(out / "validation.jsonl"))] == [2, 4]
    assert os.path.exists(out / "export" / "4" / "saved_model.pb")
    assert len(os.listdir(out / "tensorboard" / "train")) == 1  # the chief's events only
    assert os.listdir(scratch) == []  # the other worker's checkpoint copies are gone
    # The same global batches in one process give the same losses.
    config = tiny_config(market_dir)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, trainable="head"))
    train_lib.run(config, str(tmp_path / "single"), strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
    single, workers = tensorboard_losses(str(tmp_path / "single")), tensorboard_losses(str(out))
    assert sorted(single) == sorted(workers) == [1, 2, 3, 4]
    np.testing.assert_allclose([workers[s] for s in single], list(single.values()), rtol=1e-5)


def test_a_worker_with_other_flags_is_refused(market_dir, tmp_path):
    out = tmp_path / "run"
    flags = tiny_flags(market_dir, out)
    results = finish(start_workers([flags, flags + ["--embedding_dim=64"]], tmp_path), timeout=180)
    for code, err in results:
        assert code != 0
        assert err.strip().splitlines()[-1] == (
            "error: worker(s) 1 run with another configuration than the chief: start every worker"
            " with the same flags")
    assert not out.exists()


# ---------------------------------------------------------------------------- shared storage, lock


def test_a_run_folder_on_cloud_style_storage(market_dir):
    """ram:// is TensorFlow's in-memory file system: the run folder goes through tf.io.gfile only."""
    from reid_tf import exported

    out = "ram://runs/tiny"
    summary = train_lib.run(tiny_config(market_dir), out, "--seed=0\n")
    assert summary["step"] == 4 and summary["export"] == f"{out}/export/4"
    assert tf.io.gfile.exists(f"{out}/config.json") and tf.io.gfile.exists(f"{out}/flags.cfg")
    assert [r["step"] for r in run_dir.read_validations(f"{out}/validation.jsonl")] == [2, 4]
    assert tf.train.latest_checkpoint(f"{out}/checkpoints").endswith("ckpt-4")
    resumed = train_lib.run(with_train(tiny_config(market_dir), max_steps=5), out)
    assert resumed["step"] == 5
    path = export_lib.export_run(out, "ram://serving/reid", step=4)
    model = exported.open_export(path)
    assert (model.height, model.width) == (64, 32)
    assert model.embed(np.zeros([2, 64, 32, 3], np.float32)).shape == (2, 128)
    assert not [n for n in tf.io.gfile.listdir("ram://serving/reid") if n.startswith(".tmp-")]


def test_a_second_trainer_on_a_live_run_folder_is_refused(market_dir, tmp_path):
    out = str(tmp_path / "run")
    with run_dir.RunLock(out):  # a live trainer (this process) holds the folder
        with pytest.raises(run_dir.RunDirError, match=r"run is in use by a live trainer \(host"):
            train_lib.run(tiny_config(market_dir, max_steps=1), out)
    assert not os.path.exists(os.path.join(out, run_dir.LOCK))  # released on exit


def test_a_dead_trainers_lock_is_taken_over(market_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = warm_python.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = out / run_dir.LOCK
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "token": "x",
                                "time": time.time()}))
    assert train_lib.run(tiny_config(market_dir, max_steps=1), str(out))["step"] == 1
    # Another host: alive while its heartbeat is fresh, taken over once it is stale.
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y", "time": time.time()}))
    with pytest.raises(run_dir.RunDirError, match="host elsewhere, pid 1"):
        train_lib.run(tiny_config(market_dir, max_steps=2), str(out))
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y", "time": time.time() - 600}))
    assert train_lib.run(tiny_config(market_dir, max_steps=2), str(out))["step"] == 2
