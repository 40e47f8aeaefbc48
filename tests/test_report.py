"""The experiment report from run folders made by the real trainer."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import warm_python
from helpers import REPO, tiny_config, with_train

from reid_tf import objective, plots, report, run_dir, train_lib
from reid_tf import runs as runs_lib


@pytest.fixture(scope="module")
def runs(market_dir, tmp_path_factory):
    """base (4 steps), no_aug (the same but --augment=none), warm (from base), nan (stopped)."""
    root = tmp_path_factory.mktemp("runs")
    base = tiny_config(market_dir)
    train_lib.run(base, str(root / "base"), note="first try")
    no_aug = dataclasses.replace(base, data=dataclasses.replace(base.data, augment="none"))
    train_lib.run(no_aug, str(root / "no_aug"), note="augmentation off | worse?")
    train_lib.run(with_train(base, max_steps=2, init_checkpoint=str(root / "base")), str(root / "warm"))
    train_lib.run(with_train(base, max_steps=2), str(root / "nan"))
    patch = pytest.MonkeyPatch()
    patch.setattr(objective, "batch_hard_triplet_loss", lambda e, *a: tf.reduce_sum(e) * float("nan"))
    with pytest.raises(train_lib.TrainingError):
        train_lib.run(with_train(base, max_steps=4), str(root / "nan"))
    patch.undo()
    (root / "not_a_run").mkdir()
    return root


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[1].split("`")[1]] = cells
    return rows


def test_the_table_has_one_row_per_run_with_the_difference_in_bold(runs, caplog):
    with caplog.at_level("WARNING", logger="absl"):
        loaded = runs_lib.load_runs([str(runs)])
    assert [m for m in caplog.messages if "not_a_run" in m] == [
        f"{runs / 'not_a_run'}: not a run folder (no config.json), skipped"]
    assert [r.name for r in loaded] == ["base", "no_aug", "warm", "nan"]  # by start time
    text = report.markdown(loaded, baseline="base")
    rows = table_rows(text)
    assert text.splitlines()[0] == "| date | run | model | training | loss | result | note |"
    date, name, model, training, loss, result, note = rows["no_aug"]
    assert "**no augmentation**" in model and model.count("**") == 2  # the one difference
    assert "**" not in training and "**" not in loss
    assert "basic augmentation" in rows["base"][2] and "**" not in rows["base"][2]
    assert note == "augmentation off \\| worse?" and rows["base"][6] == "first try"
    assert "64×32" in model and "fc1(1024)-BN-ReLU-fc2(128)" in model
    assert "Adam 0.001, decay 0.1 every 10000 steps" in training and "P=4 × K=2" in training
    assert loss == "batch-hard, soft margin"
    for run in ("base", "no_aug"):
        lines = [json.loads(x) for x in open(runs / run / "validation.jsonl")]
        best = max(lines, key=lambda r: r["mAP"])
        assert rows[run][5].startswith(f"step {best['step']}, mAP {best['mAP']:.3f} (rank-1")
        assert rows[run][5].endswith("; last step 4")
    assert "**train after base**" in rows["warm"][3]
    assert rows["nan"][5].startswith("step 2, mAP ")
    assert "; last step 2, stopped: the loss became nan at step 3" in rows["nan"][5]
    assert [r.status for r in loaded] == ["finished", "finished", "finished", "stopped"]


def test_a_torn_validation_line_a_running_run_and_a_changed_note(runs, tmp_path, market_dir, caplog):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(runs / "base"), str(copy)], check=True)
    text = (copy / "validation.jsonl").read_text()
    (copy / "validation.jsonl").write_text(text[:-10])  # killed mid-write: the last line torn
    with caplog.at_level("WARNING", logger="absl"):
        run = runs_lib.load_run(str(copy))
    assert any("validation.jsonl:2: unreadable line skipped" in m for m in caplog.messages)
    assert [r["step"] for r in run.validations] == [2] and run.status == "finished"
    run_dir.RunLock(str(copy))._write()  # a trainer's fresh heartbeat
    assert runs_lib.load_run(str(copy)).status == "running"
    assert report.describe_result(runs_lib.load_run(str(copy))).endswith("last step 4, running")
    # The note is not configuration: a resumed run may change it.
    train_lib.run(with_train(tiny_config(market_dir), max_steps=5), str(runs / "base"), note="better")
    assert runs_lib.load_run(str(runs / "base")).note == "better"


def test_json_and_curves(runs, tmp_path):
    loaded = runs_lib.load_runs([str(runs / name) for name in ("base", "no_aug")])
    data = json.loads(report.to_json(loaded))
    assert [d["run"] for d in data] == ["base", "no_aug"]
    assert data[1]["model"]["augment"] == "no augmentation" and data[0]["best"]["step"] in (2, 4)
    curves = runs_lib.scalar_curves(loaded[0], "train", ("loss",))
    assert [step for step, _ in curves["loss"]][:4] == [1, 2, 3, 4]
    png = tmp_path / "curves.png"
    plots.plot_runs(loaded, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_tool(runs, tmp_path):
    out = tmp_path / "report.md"
    done = warm_python.run([sys.executable, "tools/report.py", str(runs / "base"), str(runs / "no_aug"),
                           f"--output={out}", f"--json={tmp_path / 'r.json'}"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(table_rows(out.read_text())) == {"base", "no_aug"}
    bad = warm_python.run([sys.executable, "tools/report.py", str(runs), "--baseline=nope"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == (
        "error: --baseline=nope is none of the runs found")
    assert os.path.exists(tmp_path / "r.json")
