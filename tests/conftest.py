"""Shared fixtures: a tiny synthetic Market-1501 and one tiny trained run (with its export) for the
tests that only need "a run", each made once for the whole test run, however many xdist workers."""

import fcntl
import os
import shutil

import pytest

from reid_tf import synthetic

# The longest files first (measured with --durations): pytest-xdist hands out whole files in the
# order collected, and a long one handed out last would run alone at the end.
LONGEST_FIRST = ("test_original_replay.py", "test_backbones.py", "test_synthetic.py", "test_new_user.py",
                 "test_distributed.py", "test_cluster.py", "test_flagfiles.py", "test_torch_zoo.py",
                 "test_tracker_gallery.py", "test_report.py", "test_train.py", "test_original.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    # sorted() is stable: within a file, the tests keep their order
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


def made_once(tmp_path_factory, name: str, make) -> str:
    """The folder `name`, made by `make(folder)` once for the whole test run: the xdist workers share
    their base folder's parent, and the first to ask makes it while the others wait on its lock."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder, done = base / name, base / f"{name}.done"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(str(folder))
            done.touch()
    return str(folder)


@pytest.fixture(scope="session")
def market_dir(tmp_path_factory):
    """16 identities (8 train, 8 test), 3 cameras, 2 images per camera, at 64x32."""
    return made_once(tmp_path_factory, "market", lambda root: synthetic.make_synthetic_market(
        root, num_ids=16, num_cameras=3, images_per_camera=2, height=64, width=32,
        seed=3, num_junk=3, num_distractors=3))


@pytest.fixture(scope="session")
def trained_run(market_dir, tmp_path_factory):
    """A finished tiny run (30 steps, validated at 0, 10, 20 and 30, exported at export/30). Read it
    only: a test that changes a run copies it first (`run_copy`)."""
    from helpers import tiny_config

    from reid_tf import train_lib

    def train(folder):
        config = tiny_config(market_dir, eval_before_training=True, max_steps=30, eval_every=10,
                             checkpoint_every=10)
        train_lib.run(config, os.path.join(folder, "run"), "--seed=0\n")

    return os.path.join(made_once(tmp_path_factory, "trained", train), "run")


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the shared trained run that a test may change."""
    out = str(tmp_path / "run")
    shutil.copytree(trained_run, out)
    return out


@pytest.fixture(scope="session")
def saved_model(trained_run):
    """The shared run's SavedModel export."""
    return os.path.join(trained_run, "export", "30")
