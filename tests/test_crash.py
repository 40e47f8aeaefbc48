"""Crash consistency: a kill at any instant leaves a run folder that the same command resumes."""

import json
import os
import signal
import subprocess
import sys

import pytest
import tensorflow as tf
import warm_python
from helpers import REPO, checkpoint_steps, tiny_config

from reid_tf import evaluate, export_lib, run_dir, train_lib

# Runs the tiny config (checkpoint and validation every step) and, where asked, dies by SIGKILL
# at one chosen instant: half-way through a write, or between a checkpoint's files and its state.
DRIVER = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[4])
from helpers import tiny_config
from reid_tf import run_dir, train_lib, versions
from absl import logging
from tensorflow.python.checkpoint import checkpoint_management

logging.set_verbosity(logging.INFO)

market, out, fault = sys.argv[1], sys.argv[2], sys.argv[3]
calls = {"n": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def dying_writer(target, nth):
    real = run_dir.write_atomic
    def write(path, text):
        if path.endswith(target):
            calls["n"] += 1
            if calls["n"] == nth:  # half the text in the temporary file, then the kill
                folder, name = os.path.split(path)
                with open(os.path.join(folder, run_dir.TEMPORARY + name + "-dead"), "w") as f:
                    f.write(text[: len(text) // 2])
                die()
        real(path, text)
    return write

if fault == "validation":
    run_dir.write_atomic = dying_writer("validation.jsonl", 2)
elif fault == "config":
    run_dir.write_atomic = dying_writer("config.json", 1)
elif fault == "checkpoint":  # ckpt-N's files are written, the state file still names N-1
    real_state = checkpoint_management.update_checkpoint_state_internal
    def state(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            die()
        return real_state(*args, **kwargs)
    checkpoint_management.update_checkpoint_state_internal = state
elif fault == "export":  # the SavedModel is written in its .tmp- folder, not yet moved in place
    versions.move_folder = lambda *a: die()
config = tiny_config(market, max_steps=6, checkpoint_every=1, eval_every=1)
summary = train_lib.run(config, out)
print("STEP", summary["step"])
"""


def drive(market_dir, out, fault) -> subprocess.CompletedProcess:
    return warm_python.run([sys.executable, "-c", DRIVER, market_dir, str(out), fault,
                           os.path.dirname(__file__)], capture_output=True, text=True, timeout=240,
                          cwd=REPO)


def temporaries(out) -> list[str]:
    return [os.path.join(root, n) for root, dirs, files in os.walk(out) for n in dirs + files
            if n.startswith(run_dir.TEMPORARY)]


def test_kills_at_the_worst_instants_then_the_same_command_resumes(market_dir, tmp_path):
    out = tmp_path / "run"
    history = out / "validation.jsonl"

    killed = drive(market_dir, out, "validation")  # inside the append of step 2's validation
    assert killed.returncode == -signal.SIGKILL
    assert [r["step"] for r in run_dir.read_validations(str(history))] == [1]  # the old file, whole
    assert temporaries(out)

    killed = drive(market_dir, out, "checkpoint")  # resumes at 2; dies in a later save
    assert killed.returncode == -signal.SIGKILL and "at step 2" in killed.stderr
    saved = checkpoint_steps(str(out))[-1]
    assert saved > 2 and (out / "checkpoints" / f"ckpt-{saved + 1}.index").exists()

    with open(history, "a") as f:  # what a kill mid-append by a plain writer leaves
        f.write(f'{{"step": {saved + 1}, "mAP": 0.4')
    lines = len(history.read_text().splitlines())

    killed = drive(market_dir, out, "config")  # inside the config.json write at start
    assert killed.returncode == -signal.SIGKILL
    assert run_dir.load_config(str(out)) == tiny_config(market_dir, max_steps=6, checkpoint_every=1,
                                                        eval_every=1)

    killed = drive(market_dir, out, "export")  # resumes from the checkpoint before the torn one
    assert killed.returncode == -signal.SIGKILL and f"at step {saved}" in killed.stderr
    assert f"validation.jsonl:{lines}: unreadable line cut" in killed.stderr
    assert not (out / "export" / "6").exists()

    done = drive(market_dir, out, "none")
    assert done.returncode == 0 and "STEP 6" in done.stdout, done.stderr[-3000:]
    rows = [json.loads(line) for line in history.read_text().splitlines()]  # every line readable
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    assert checkpoint_steps(str(out))[-1] == 6
    assert (out / "export" / "6" / "saved_model.pb").exists()
    assert temporaries(out) == [] and not (out / run_dir.LOCK).exists()


def sigterm_then(real):
    """`real`, called after this process has been sent SIGTERM (a signal that lands mid-call)."""
    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    return interrupted


def test_sigterm_during_validation_finishes_it_and_saves_the_step(market_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "validate", sigterm_then(evaluate.validate))
    out = str(tmp_path / "run")
    summary = train_lib.run(tiny_config(market_dir, max_steps=50, checkpoint_every=100), out)
    assert summary["stopped_by"] == "SIGTERM" and summary["step"] == 2
    assert checkpoint_steps(out) == [2]
    assert [r["step"] for r in run_dir.read_validations(os.path.join(out, "validation.jsonl"))] == [2]


def test_sigterm_during_the_final_export_lets_it_finish(market_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export_lib, "export_saved_model", sigterm_then(export_lib.export_saved_model))
    out = tmp_path / "run"
    summary = train_lib.run(tiny_config(market_dir), str(out))
    assert summary["step"] == 4 and (out / "export" / "4" / "saved_model.pb").exists()
    assert checkpoint_steps(str(out)) == [2, 4] and temporaries(out) == []


def test_readers_skip_unreadable_lines_and_name_them(tmp_path, caplog):
    path = tmp_path / "validation.jsonl"
    path.write_text('{"step": 1, "mAP": 0.5}\nnot json\n{"mAP": 0.7}\n{"step": 3, "mAP": 0.6}\n{"step": 4')
    assert [r["step"] for r in run_dir.read_validations(str(path))] == [1, 3]
    named = [r.getMessage() for r in caplog.records]
    assert [m.split(": ")[0] for m in named] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert run_dir.repair_rows(str(path), resume_step=2) == [{"step": 1, "mAP": 0.5}]
    assert path.read_text() == '{"step": 1, "mAP": 0.5}\n'


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / "config.json")
    run_dir.write_atomic(path, "old\n")

    def broken_rename(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, "storage went away")

    monkeypatch.setattr(tf.io.gfile, "rename", broken_rename)
    with pytest.raises(tf.errors.UnavailableError):
        run_dir.write_atomic(path, "new\n")
    assert open(path).read() == "old\n" and os.listdir(tmp_path) == ["config.json"]
