import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import warm_python
from helpers import REPO, checkpoint_steps, tiny_config, with_train

from reid_tf import backbones, objective, run_dir, train_lib
from reid_tf import config as C


def test_end_to_end_writes_everything(market_dir, tmp_path):
    out = str(tmp_path / "run")
    summary = train_lib.run(tiny_config(market_dir, eval_before_training=True), out, "--seed=0\n")
    assert summary["step"] == 4
    assert checkpoint_steps(out) == [2, 4]
    assert run_dir.load_config(out) == tiny_config(
        market_dir, eval_before_training=True)
    assert open(os.path.join(out, "flags.cfg")).read() == "--seed=0\n"
    rows = [json.loads(line) for line in open(os.path.join(out, "validation.jsonl"))]
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert {"step", "mAP", "rank1", "train_mAP"} <= set(rows[-1])
    assert summary["best"]["mAP"] == max(r["mAP"] for r in rows) == rows[-1]["best_mAP"]
    assert rows[-1]["best_step"] == max(rows, key=lambda r: r["mAP"])["step"]
    for kind in ("train", "validation"):
        assert os.listdir(os.path.join(out, "tensorboard", kind))
    saved_model = os.path.join(out, "export", "4", "saved_model.pb")
    before = os.stat(saved_model).st_mtime_ns
    again = train_lib.run(tiny_config(market_dir, eval_before_training=True), out, "--seed=0\n")
    assert again["step"] == 4 and again["export"] == summary["export"]
    assert os.stat(saved_model).st_mtime_ns == before  # a finished run's export is left alone


def test_resume_continues_with_the_saved_optimizer_state(market_dir, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    config = tiny_config(market_dir)
    optimizers = []
    real = objective.make_train_step

    def spy(model, optimizer, *args):
        optimizers.append((optimizer, int(optimizer.iterations),
                           [v.numpy().copy() for v in optimizer.variables]))
        return real(model, optimizer, *args)

    monkeypatch.setattr(objective, "make_train_step", spy)
    train_lib.run(with_train(config, max_steps=2), out)
    after_first = [v.numpy() for v in optimizers[0][0].variables]  # the state saved at step 2
    summary = train_lib.run(config, out)  # the same command again, with more steps to go
    _, iterations, restored = optimizers[1]
    assert summary["step"] == 4 and iterations == 2
    assert checkpoint_steps(out) == [2, 4]
    assert len(restored) == len(after_first) > 2
    for a, b in zip(after_first, restored):
        np.testing.assert_array_equal(a, b)  # Adam's moments and step came back exactly
    assert any(np.abs(v).sum() > 0 for v in restored[2:])


def test_resume_refuses_a_changed_configuration(market_dir, tmp_path):
    out = str(tmp_path / "run")
    config = tiny_config(market_dir, max_steps=1)
    train_lib.run(config, out)
    changed = dataclasses.replace(config, model=dataclasses.replace(config.model, embedding_dim=64))
    with pytest.raises(run_dir.RunDirError, match=r"another configuration \(model.embedding_dim: 128 -> 64"):
        train_lib.run(changed, out)


def test_warm_start_loads_weights_with_a_fresh_optimizer(market_dir, tmp_path, monkeypatch):
    seen = []
    real = objective.make_train_step

    def spy(model, optimizer, *args):
        seen.append((model, model.get_layer("fc2").kernel.numpy().copy(), int(optimizer.iterations)))
        return real(model, optimizer, *args)

    monkeypatch.setattr(objective, "make_train_step", spy)
    source = str(tmp_path / "source")
    train_lib.run(tiny_config(market_dir, max_steps=2), source)
    trained_fc2 = seen[0][0].get_layer("fc2").kernel.numpy()
    out = str(tmp_path / "warm")
    config = tiny_config(market_dir, max_steps=1, init_checkpoint=source)
    summary = train_lib.run(config, out)
    _, start_fc2, iterations = seen[1]
    np.testing.assert_array_equal(start_fc2, trained_fc2)
    assert not np.array_equal(start_fc2, seen[0][1])  # it trained, and that is what came over
    assert iterations == 0 and summary["step"] == 1
    with pytest.raises(train_lib.TrainingError, match="no checkpoint found"):
        train_lib.run(with_train(config, init_checkpoint=str(tmp_path / "nothing")), str(tmp_path / "x"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(market_dir, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    config = tiny_config(market_dir)
    train_lib.run(with_train(config, max_steps=2), out)
    index = os.path.join(out, "checkpoints", "ckpt-2.index")
    before = open(index, "rb").read()
    monkeypatch.setattr(objective, "batch_hard_triplet_loss", lambda e, *a: tf.reduce_sum(e) * float("nan"))
    with pytest.raises(train_lib.TrainingError, match=r"loss became nan at step 3.*ckpt-2 is kept"):
        train_lib.run(config, out)
    assert checkpoint_steps(out) == [2] and open(index, "rb").read() == before


def test_sigterm_saves_and_stops(market_dir, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    real = objective.make_train_step

    def signalling(*args):
        step = real(*args)

        def wrapped(iterator):
            result = step(iterator)
            os.kill(os.getpid(), signal.SIGTERM)
            return result

        return wrapped

    monkeypatch.setattr(objective, "make_train_step", signalling)
    summary = train_lib.run(tiny_config(market_dir, max_steps=50, checkpoint_every=100), out)
    assert summary["stopped_by"] == "SIGTERM" and summary["step"] == 1
    assert checkpoint_steps(out) == [1]


def test_csv_dataset_without_cameras_validates(market_dir, tmp_path):
    from reid_tf import datasets, train_lib

    train_records = datasets.market.load_market1501(market_dir)["train"]
    rows = [f"person{r.pid},{os.path.relpath(r.path, market_dir)}" for r in train_records]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    config = tiny_config(market_dir, max_steps=1)
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, dataset="csv", train_csv=str(tmp_path / "train.csv")),
        scoring=C.ScoringConfig(protocol="no_cameras"))  # the Market protocol refuses data without cameras
    out = str(tmp_path / "run")
    summary = train_lib.run(config, out)
    assert summary["step"] == 1
    row = json.loads(open(os.path.join(out, "validation.jsonl")).read().splitlines()[-1])
    assert 0.0 < row["mAP"] <= 1.0 and 0.0 < row["train_mAP"] <= 1.0  # nothing skipped


def test_k_below_two_is_refused(market_dir, tmp_path):
    config = tiny_config(market_dir)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, image_num_every_id=1))
    with pytest.raises(train_lib.TrainingError, match="image_num_every_id=1: batch-hard mining needs K >= 2"):
        train_lib.run(config, str(tmp_path / "run"))


def test_command_line_errors_are_one_line(tmp_path):
    proc = warm_python.run(
        [sys.executable, "-m", "reid_tf.train", "--dataset=market1501",
         f"--data_dir={tmp_path / 'missing'}", f"--output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: missing dataset folder") and "missing" in last
    proc = warm_python.run(
        [sys.executable, "-m", "reid_tf.train", "--image_num_every_id=1"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode != 0 and "image_num_every_id" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_kill_9_then_the_same_command_resumes(market_dir, tmp_path):
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "reid_tf.train", "--dataset=market1501", f"--data_dir={market_dir}",
               "--image_height=64", "--image_width=32", "--backbone=small", "--backbone_weights=none",
               "--return_id_num=4", "--image_num_every_id=2", "--valid_ids=2", "--train_eval_ids=2",
               "--checkpoint_every=3", "--eval_every=1000", "--log_every=1", f"--output_dir={out}"]
    proc = warm_python.Popen(command + ["--max_steps=100000"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not checkpoint_steps(str(out)):
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    saved = checkpoint_steps(str(out))
    assert saved, "no checkpoint was written before the kill"
    resumed = warm_python.run(command + [f"--max_steps={saved[-1] + 2}"], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {saved[-1]}" in resumed.stderr  # "resumed from .../ckpt-N at step N"
    assert checkpoint_steps(str(out))[-1] == saved[-1] + 2


def test_a_failed_start_does_not_block_its_fix(market_dir, tmp_path):
    """Until a checkpoint exists the folder holds no run: the corrected command replaces it."""
    out = str(tmp_path / "run")
    config = tiny_config(market_dir, max_steps=1)
    missing = str(tmp_path / "missing.weights.h5")
    bad = dataclasses.replace(config, model=dataclasses.replace(config.model, backbone_weights=missing))
    with pytest.raises(backbones.WeightsUnavailableError, match="not found"):
        train_lib.run(bad, out)
    assert run_dir.load_config(out).model.backbone_weights == missing  # the failed start's config
    assert train_lib.run(config, out)["step"] == 1
    with pytest.raises(run_dir.RunDirError, match="another configuration"):  # now it holds a run
        train_lib.run(with_train(bad, max_steps=2), out)


def test_a_cpu_only_console_has_no_cuda_error_line(market_dir, tmp_path):
    if os.path.exists("/proc/driver/nvidia"):
        pytest.skip("this machine has NVIDIA's driver")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user has it
    proc = subprocess.run(
        [sys.executable, "-m", "reid_tf.train", "--dataset=market1501", f"--data_dir={market_dir}",
         "--image_height=64", "--image_width=32", "--backbone=small", "--backbone_weights=none",
         "--return_id_num=4", "--image_num_every_id=2", "--valid_ids=2", "--train_eval_ids=2",
         "--max_steps=1", f"--output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cuInit" not in proc.stderr and "CUDA error" not in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("E0000")]


def test_the_pace_leaves_out_the_first_step_and_what_lies_between_steps():
    """The ETA counts the step alone: the first call (tracing) is dropped, each report starts a new
    window, and the summary's images/s is over every timed step."""
    from reid_tf.step_log import Pace as _Pace

    pace = _Pace(batch=10, max_steps=12)
    pace.add(30.0)  # the first step: tracing, not the pace
    assert pace.report(1) == (None, "first step (tracing)")
    pace.add(2.0)
    pace.add(2.0)
    rate, line = pace.report(3)
    assert rate == 5.0 and line == "5.0 images/s  ETA 0:00:18"  # 9 steps left at 2 s
    pace.add(1.0)
    assert pace.report(4) == (10.0, "10.0 images/s  ETA 0:00:08")
    assert pace.images_per_second() == round(30 / 5.0, 2)
