"""--replay_batches: the real loop trained on recorded batches, its trace (train_log.jsonl,
replay_trace.npz), and a file that does not fit refused in one line."""

import json
import os

import keras
import numpy as np
import pytest
from helpers import tiny_config, with_train

from reid_tf import model as model_lib
from reid_tf import optim, train_lib
from reid_tf.resume import TrainingError


def batches(path, steps=3, batch=8, seed=0, **replace):
    rng = np.random.default_rng(seed)
    arrays = {"images": rng.integers(0, 256, (steps, batch, 64, 32, 3)).astype(np.float32),
              "pids": np.repeat(np.arange(steps * batch // 2).reshape(steps, batch // 2), 2, axis=1)}
    arrays.update(replace)
    np.savez(path, **arrays)
    return arrays


def rows(run, name="train_log.jsonl"):
    return [json.loads(line) for line in open(os.path.join(run, name))]


def test_a_replayed_run_trains_on_the_recorded_batches_and_writes_its_trace(tmp_path):
    recorded = batches(tmp_path / "b.npz")
    config = with_train(tiny_config("no-dataset-is-read"), max_steps=3, replay_batches=str(tmp_path / "b.npz"),
                        eval_every=1)
    out = str(tmp_path / "run")
    summary = train_lib.run(config, out)
    assert summary["step"] == 3 and summary["export"] is None  # no dataset: no validation, no export
    assert not os.path.exists(os.path.join(out, "validation.jsonl"))
    log = rows(out)
    assert [r["global_step"] for r in log] == [0, 1, 2] and [r["step"] for r in log] == [1, 2, 3]
    schedule = optim.learning_rate_schedule(config.optimizer)  # the rate each step used, not the next one's
    assert [r["learning_rate"] for r in log] == [float(schedule(g)) for g in (0, 1, 2)]
    trace = np.load(os.path.join(out, "replay_trace.npz"))
    assert trace["train_embeddings"].shape == (3, 8, 128) and trace["global_step"].tolist() == [0, 1, 2]
    keras.utils.set_random_seed(config.train.seed)  # the run's initial model, rebuilt
    model = model_lib.build_run_model(config)
    first = model(recorded["images"][0], training=True).numpy()
    np.testing.assert_allclose(trace["train_embeddings"][0], first, rtol=1e-5, atol=1e-6)
    from reid_tf.losses import batch_hard_triplet_loss

    loss = float(batch_hard_triplet_loss(first, recorded["pids"][0]))
    assert log[0]["loss"] == pytest.approx(loss, rel=1e-5)  # the step-0 loss, at full precision


def test_a_replay_continues_where_the_run_is_and_its_log_is_cut_on_resume(tmp_path):
    batches(tmp_path / "b.npz", steps=2)
    out = str(tmp_path / "run")
    config = with_train(tiny_config("none"), max_steps=2, replay_batches=str(tmp_path / "b.npz"))
    train_lib.run(config, out)
    batches(tmp_path / "c.npz", steps=2, seed=1)
    train_lib.run(with_train(config, max_steps=4, replay_batches=str(tmp_path / "c.npz")), out)
    assert [r["global_step"] for r in rows(out)] == [0, 1, 2, 3]


@pytest.mark.parametrize("change, message", [
    (dict(images=np.zeros((3, 8, 32, 32, 3), np.float32)), r"images are \[3, 8, 32, 32, 3\], the run needs \[steps,"
                                                           r" 8, 64, 32, 3\]"),
    (dict(pids=np.zeros((3, 4), np.int64)), r"pids are \[3, 4\], not \[3, 8\]"),
    (dict(images=np.full((3, 8, 64, 32, 3), 300.0, np.float32)), r"finite pixels in \[0, 255\]"),
    (dict(max_steps=5), r"holds 3 batches; steps 0 to 5 need 5: set --max_steps=3"),
])
def test_a_replay_file_that_does_not_fit_is_refused_in_one_line(tmp_path, change, message):
    max_steps = change.pop("max_steps", 3)
    batches(tmp_path / "b.npz", **change)
    config = with_train(tiny_config("none"), max_steps=max_steps, replay_batches=str(tmp_path / "b.npz"))
    with pytest.raises(TrainingError, match=message) as e:
        train_lib.run(config, str(tmp_path / "run"))
    assert "\n" not in str(e.value) and "b.npz" in str(e.value)


def test_every_run_writes_train_log_at_its_log_every(trained_run):
    log = rows(trained_run)
    steps = [r["step"] for r in log]
    assert steps == sorted(steps) and steps[-1] == 30 and len(steps) >= 2
    assert all(np.isfinite(r["loss"]) and r["global_step"] == r["step"] - 1 for r in log)
