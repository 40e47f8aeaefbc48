"""What the log re-run needs: a run's backbone as a weights file that starts another run, the
embeddings' norm and the first step's loss recorded, collapse marked in the report, the scaling
of the re-run script."""

import dataclasses
import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO, tiny_config, with_train

from reid_tf import backbones, evaluate, export_lib, report, run_dir, train_lib
from reid_tf import model as model_lib
from reid_tf import runs as runs_lib


def restored_model(folder):
    config = run_dir.load_config(folder)
    model = model_lib.build_run_model(config, "none")
    tf.train.Checkpoint(model=model).read(export_lib.checkpoint_path(folder)).expect_partial()
    return model


@pytest.fixture(scope="module")
def source(market_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("source") / "run")
    train_lib.run(tiny_config(market_dir, max_steps=2, eval_every=1), out)
    return out


def test_a_runs_backbone_starts_another_run(source, market_dir, tmp_path):
    folder = export_lib.export_run(source, str(tmp_path / "backbones"), fmt="backbone")
    assert folder == str(tmp_path / "backbones" / "2")
    assert sorted(os.listdir(folder)) == ["backbone.weights.h5", "reid_config.json"]
    weights = os.path.join(folder, "backbone.weights.h5")
    # A second run, another head and seed, starts from the file: at step 0 its backbone is the source's.
    config = tiny_config(market_dir, max_steps=0, seed=5)
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, backbone_weights=weights, embedding_dim=64))
    second = str(tmp_path / "second")
    train_lib.run(config, second)
    images = np.random.default_rng(0).uniform(0, 255, (6, 64, 32, 3)).astype(np.float32)

    def backbone_outputs(model):
        pre = model.get_layer("preprocessing")(images)
        return backbones.backbone_of(model)(pre, training=False).numpy()

    a, b = backbone_outputs(restored_model(source)), backbone_outputs(restored_model(second))
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
    # The file is laid out as the library's own network (plain BatchNormalization), with its size.
    plain = backbones.plain_backbone("small", (64, 32, 3))
    plain.load_weights(weights)
    np.testing.assert_array_equal(plain.get_weights()[0], backbones.backbone_of(restored_model(source))
                                  .get_weights()[0])


def test_a_file_of_another_backbone_or_size_is_refused(source, tmp_path):
    folder = export_lib.export_run(source, str(tmp_path / "b"), fmt="backbone")
    weights = os.path.join(folder, "backbone.weights.h5")
    with pytest.raises(backbones.WeightsUnavailableError) as size:
        backbones.build_backbone("small", weights, (96, 48, 3))
    assert str(size.value).count("\n") == 0
    assert "small at 64x32" in str(size.value) and "small at 96x48" in str(size.value)
    with pytest.raises(backbones.WeightsUnavailableError) as other:
        backbones.build_backbone("resnet50", weights, (64, 32, 3))
    assert "small at 64x32" in str(other.value) and "resnet50 at 64x32" in str(other.value)
    # A keras.applications file of another network (no name inside): one line, no warnings.
    foreign = str(tmp_path / "v2.weights.h5")
    v2 = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(64, 32, 3))
    v2.save_weights(foreign)
    with pytest.raises(backbones.WeightsUnavailableError) as keras_file:
        backbones.build_backbone("resnet50", foreign, (64, 32, 3))
    assert str(keras_file.value).startswith(f"cannot load backbone weights {foreign} into resnet50")
    assert "\n" not in str(keras_file.value)


def test_validation_rows_carry_the_embeddings_norm_and_the_first_loss_is_kept(source):
    rows = run_dir.read_validations(os.path.join(source, run_dir.VALIDATIONS))
    assert [r["step"] for r in rows] == [1, 2]
    model = restored_model(source)
    splits_row = rows[-1]
    assert splits_row["embedding_norm"] > 0 and splits_row["distance_std"] > 0
    first = run_dir.read_first_step(source)
    assert first["step"] == 1 and np.isfinite(first["loss"])
    # TensorBoard has the same first loss (step 1 is always logged), and the norm beside mAP.
    curves = runs_lib.scalar_curves(runs_lib.load_run(source), "train", ("loss",))["loss"]
    assert curves[0][0] == 1 and curves[0][1] == pytest.approx(first["loss"], abs=1e-6)
    norms = runs_lib.scalar_curves(runs_lib.load_run(source), "validation", ("embedding_norm",))
    assert norms["embedding_norm"][-1][1] == pytest.approx(splits_row["embedding_norm"], rel=1e-5)
    del model


def test_embedding_statistics_and_collapse():
    q = np.array([[3.0, 4.0], [0.0, 0.0]])
    g = np.array([[0.0, 0.0], [6.0, 8.0]])
    stats = evaluate.embedding_statistics(q, g)
    assert stats["embedding_norm"] == pytest.approx((5 + 0 + 0 + 10) / 4)
    assert stats["distance_mean"] == pytest.approx((5 + 5 + 0 + 10) / 4)
    assert stats["distance_std"] == pytest.approx(np.std([5, 5, 0, 10]))
    assert evaluate.is_collapsed(stats) == ""
    zero = {"embedding_norm": 1e-8, "distance_mean": 1e-9, "distance_std": 0}
    assert "near 0" in evaluate.is_collapsed(zero)
    one_point = evaluate.embedding_statistics(np.full((3, 4), 0.25) + 1e-7 * np.arange(12).reshape(3, 4),
                                              np.full((5, 4), 0.25))
    assert "one point" in evaluate.is_collapsed(one_point)
    corners = np.eye(6)  # every distance sqrt(2): nothing to rank by
    assert "alike" in evaluate.is_collapsed(evaluate.embedding_statistics(corners[:3], corners[3:]))


def test_the_report_marks_a_collapsed_run_and_shows_the_first_loss(source, tmp_path):
    import shutil

    copy = str(tmp_path / "collapsed")
    shutil.copytree(source, copy)
    path = os.path.join(copy, run_dir.VALIDATIONS)
    rows = run_dir.read_validations(path)
    rows[-1].update(embedding_norm=0.09, distance_mean=1e-6, distance_std=1e-7)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    table = report.markdown(runs_lib.load_runs([source, copy]), reference={"collapsed": "features tend to 0"})
    by_run = {line.split(" | ")[1].split("`")[1]: line for line in table.splitlines()[2:]}
    healthy, collapsed = by_run["run"], by_run["collapsed"]
    first = run_dir.read_first_step(source)["loss"]
    assert f"first loss {first:.3f}" in healthy and "collapsed" not in healthy
    assert "**collapsed** at step 2: all embeddings at one point" in collapsed
    assert "mAP 0." in collapsed  # still a number, said to be a collapsed model's
    assert table.splitlines()[0].split(" | ")[6] == "reference" and "features tend to 0" in collapsed


def test_the_rerun_scales_sizes_and_steps_by_one_factor_each():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        import rerun_log

        bot = rerun_log.scaled(rerun_log.flagfile_values("resnet_bot"))
        ide = rerun_log.scaled(rerun_log.flagfile_values("resnet_IDE"))
        base = rerun_log.scaled(rerun_log.flagfile_values("resnet"))
    finally:
        os.chdir(cwd)
    assert "--image_height=72" in bot and "--image_width=36" in bot  # 256x128: even, of the same aspect
    assert "--image_height=64" in base and "--image_width=32" in base  # 224x112 x 2/7
    assert "--max_steps=242" in bot and "--lr_boundaries=81,141" in bot and "--warmup_steps=20" in bot
    assert "--max_steps=50" in ide and "--decay_steps=100" in ide and "--eval_every=50" in ide
    assert "--max_steps=200" in base and "--checkpoint_every=50" in base
    allowed = ("image_height", "image_width") + rerun_log.STEP_FLAGS + ("lr_boundaries",)
    assert {f.split("=")[0] for f in bot} <= {f"--{k}" for k in allowed}


def test_the_rerun_runs_every_row_and_control_with_enough_seeds():
    from reid_tf import training_log

    names = [r.name for r in training_log.RUNS]
    assert len(names) == len(set(names))
    for run in training_log.RUNS:
        assert os.path.exists(os.path.join(REPO, "flags", f"{run.flagfile}.cfg"))
    for claim in training_log.CLAIMS:  # every run a conclusion names exists
        assert claim.row in names and (claim.compared_with is None or claim.compared_with in names)
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import rerun_log

    plan = rerun_log.plan()
    seeds = {r.name: {s for n, s in plan if n == r.name} for r in training_log.RUNS if not r.never_ran}
    assert all(len(s) >= 3 for s in seeds.values())
    dropped = {r.name for r in training_log.RUNS if r.never_ran}  # what the 2017 code never ran
    assert dropped == {"resnet_enhance+colour_only", "resnet_enhance+crop_only"}
    assert not dropped & {n for n, _ in plan}
    assert all(seeds[n] == {0, 1, 2, 3, 4} for n in training_log.five_seed_runs())
    assert "resnet" in training_log.five_seed_runs()
    # A warm start runs after its parent of the same seed.
    order = [f"{n}-{s}" for n, s in plan]
    for name, seed in plan:
        parent = next(r.parent for r in training_log.RUNS if r.name == name)
        if parent:
            assert order.index(f"{parent}-{seed}") < order.index(f"{name}-{seed}")


def test_a_run_started_again_keeps_its_first_loss(source, market_dir, tmp_path):
    """Finished and started again, or resumed to train further: the first step stays the run's first."""
    import shutil

    first = run_dir.read_first_step(source)
    train_lib.run(with_train(tiny_config(market_dir, max_steps=2, eval_every=1)), source)
    assert run_dir.read_first_step(source) == first and first["step"] == 1
    resumed = str(tmp_path / "run")
    shutil.copytree(source, resumed)
    train_lib.run(with_train(tiny_config(market_dir, max_steps=3, eval_every=1)), resumed)
    assert run_dir.read_first_step(resumed) == first


def test_the_rerun_refuses_summaries_from_another_standin_and_keeps_them(tmp_path):
    """A machine whose stand-in differs (another kind of CPU) must not re-run over a committed set."""
    import subprocess

    standin = tmp_path / "out" / "standin"
    standin.mkdir(parents=True)
    (standin / "resnet50v2_standin.weights.h5").write_bytes(b"")
    (standin / "standin.json").write_text(json.dumps({"fingerprint": "aaaa", "cpu": "CPU A (avx2)"}))
    runs = tmp_path / "summaries" / "runs"
    runs.mkdir(parents=True)
    committed = runs / "resnet-seed0.json"
    committed.write_text(json.dumps({"run": "resnet", "seed": 0, "standin": "bbbb", "cpu": "CPU B (avx512f)"}))
    done = subprocess.run([sys.executable, "benchmarks/rerun_log.py", f"--output_dir={tmp_path / 'out'}",
                           f"--summaries={tmp_path / 'summaries'}"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bbbb (made on CPU B (avx512f))" in lines[0] and "aaaa" in lines[0]
    assert "--replace_summaries" in lines[0]
    assert json.loads(committed.read_text())["standin"] == "bbbb"
    assert not (tmp_path / "summaries" / "standin.json").exists()


def test_a_summary_holds_the_runs_lines_and_where_it_was_made(trained_run, tmp_path):
    from reid_tf import training_log

    path = str(tmp_path / "runs" / "resnet-seed0.json")
    training_log.write_summary(trained_run, "resnet", 0, path, "abcd")
    summary = json.load(open(path))
    assert summary["flags"] == ["--seed=0"] and summary["standin"] == "abcd"
    assert summary["validations"] == run_dir.read_validations(os.path.join(trained_run, run_dir.VALIDATIONS))
    assert [r["step"] for r in summary["validations"]] == [0, 10, 20, 30]
    assert summary["cpu"] == training_log.cpu_kind() and "(" in summary["cpu"]
    assert summary["tensorflow"] == tf.__version__ and summary["keras"] == keras.__version__
    assert training_log.read_summaries(str(tmp_path)) == {"resnet": {0: summary}}


def test_every_committed_summarys_flags_read_back_into_a_valid_config():
    from reid_tf import config, settings
    from reid_tf.training_log import read_summaries

    for seeds in read_summaries(os.path.join(REPO, "docs", "training_log_intended")).values():
        for s in seeds.values():
            sections = {name: cls(**settings.from_flag_lines(config.SETTINGS[name], s["flags"]))
                        for name, (cls, *_) in config.SECTIONS.items()}
            run = config.RunConfig(**sections).validate()
            assert f"--seed={run.train.seed}" in s["flags"] and run.train.seed == s["seed"]
            assert ("--staircase" in s["flags"]) == run.optimizer.staircase


def _summary(flags: list[str], first_step: int = 1, **extra) -> dict:
    return {"flags": ["--return_id_num=20", "--image_num_every_id=4", *flags], "train_images": 8000,
            "first_step": {"step": first_step, "loss": 1.0}, "validations": [], **extra}


def test_the_budget_sums_a_runs_own_schedule_from_the_step_it_resumed_at():
    from reid_tf.training_log_budget import budget

    # The 1e-6 continuation: resumed at step 200 of a staircase decay of 0.5 every 100 steps.
    hardest = _summary(["--lr_schedule=exponential", "--initial_learning_rate=1e-6", "--decay_rate=0.5",
                        "--decay_steps=100", "--staircase", "--max_steps=250"], first_step=201)
    steps, passes, here, log = budget(hardest)
    assert steps == "50 (from step 200)" and passes == f"{50 * 80 / 8000:.1f}"
    assert float(here) == pytest.approx(50 * 1e-6 * 0.5 ** 2, rel=1e-3)
    assert float(log) == pytest.approx(5000 * 1e-6 * 0.5 ** 2, rel=1e-3)
    # BoT's: a linear warm-up from 1% over 20 steps, then piecewise 3.5e-4 / 3.5e-5 (Keras: through step 81).
    bot = _summary(["--lr_schedule=piecewise", "--lr_boundaries=81,141", "--lr_values=3.5e-4,3.5e-5,3.5e-6",
                    "--warmup_steps=20", "--warmup_factor=0.01", "--max_steps=242"])
    k = np.arange(242)
    rate = np.where(k <= 81, 3.5e-4, np.where(k <= 141, 3.5e-5, 3.5e-6)) * (0.01 + 0.99 * np.minimum(k / 20, 1))
    assert float(budget(bot)[2]) == pytest.approx(rate.sum(), rel=1e-3)


def _run(name: str, seeds: dict[int, dict[int, float]], size: str = "64x32", parent: str = "", start: int = 0):
    """{seed: summary} whose mAP is seeds[seed][step]."""
    h, w = size.split("x")
    flags = [f"--image_height={h}", f"--image_width={w}", f"--init_checkpoint={parent}"]
    return {seed: {"run": name, "seed": seed, "flags": flags, "first_step": {"step": start + 1, "loss": 1.0},
                   "validations": [{"step": step, "mAP": v} for step, v in lines.items()]}
            for seed, lines in seeds.items()}


def test_a_claim_is_not_testable_when_the_miniature_cannot_act_on_it():
    from reid_tf.training_log import Claim
    from reid_tf.training_log_rule import judge_all

    def judge(summaries, claim):
        return judge_all(summaries, [claim])[0]

    start = {0: {200: 0.90}, 1: {200: 0.93}, 2: {200: 0.95}}
    still = {seed: {250: v[200] + 0.001 * seed} for seed, v in start.items()}
    moved = {seed: {250: v[200] + 0.05 + 0.003 * seed} for seed, v in start.items()}
    claim = Claim("a", "a is no help", "b", 250, 0, paired=True)
    for arm_a, arm_b, testable in ((still, still, False), (moved, still, True), (still, moved, True)):
        summaries = {"p": _run("p", start), "a": _run("a", arm_a, parent="out/runs/p-seed0", start=200),
                     "b": _run("b", arm_b, parent="out/runs/p-seed0", start=200)}
        v = judge(summaries, claim)
        assert (v["verdict"] != "not testable here") == testable, (arm_a, arm_b)
        assert v["preconditions"][0]["met"] == testable
    # Two input sizes: testable only while the stand-in's raw features agree at both.
    claim = Claim("big", "big images are worse", "small", 100, -1)
    runs = {"big": _run("big", {s: {100: 0.5 + 0.01 * s} for s in range(3)}, "72x36"),
            "small": _run("small", {s: {100: 0.8 - 0.01 * s} for s in range(3)})}
    for gap, testable in ((0.0, True), (0.1, False)):
        features = {f"standin_features_{size}": _run(f"standin_features_{size}", {
            s: {0: 0.4 + 0.01 * s - (gap if size == "72x36" else 0) + 0.002 * (-1) ** s * (size == "72x36")}
                for s in range(5)},
            size) for size in ("64x32", "72x36")}
        v = judge({**runs, **features}, claim)
        assert v["by_the_rule"] == "holds"
        assert v["verdict"] == ("holds" if testable else "not testable here"), gap


def test_a_claims_class_follows_from_the_flags_its_arms_differ_in_and_their_budgets():
    """The classes are derived, not typed: change what the arms differ in and the class changes."""
    from reid_tf.training_log import Claim
    from reid_tf.training_log_classes import classify

    def arm(name, *flags):
        runs = _run(name, {s: {100: 0.5} for s in range(3)})
        for s in runs.values():
            s["flags"] += ["--max_steps=100", "--fc1_init_stddev=0.03", "--initial_learning_rate=1e-4", *flags]
        return runs

    claim = Claim("a", "augmenting helps", "b", 100, +1)
    same_in_2017 = {"a": arm("a", "--augment=original_d26b97d"), "b": arm("b", "--augment=none")}
    assert classify(same_in_2017, claim)["class"] == "no change in the original"
    other = {"a": arm("a", "--augment=original_d26b97d", "--head=fc"), "b": arm("b", "--augment=none")}
    assert classify(other, claim)["class"] == "substantive"
    frozen = {"a": arm("a", "--head=fc"), "b": arm("b", "--initial_learning_rate=1e-8")}  # 100 x 1e-8 << 0.03
    assert classify(frozen, claim)["class"] == "scale artifact"
    assert classify(other, Claim("resnet_IDE", "x", "b", 100, +1))["class"] == "withdrawn"
