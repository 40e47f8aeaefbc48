"""The synthetic generator's domains: each draws its own cameras and people; the default is the
generator as it was; training and the command line reach them by name."""

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO
from PIL import Image

from reid_tf import config, datasets, synthetic
from reid_tf.datasets.market import load_market1501


def _set(root, domain, seed=3):
    folder = os.path.join(root, domain)
    synthetic.make_synthetic_market(folder, num_ids=8, height=64, width=32, seed=seed, num_junk=1,
                                    num_distractors=1, domain=domain)
    return load_market1501(folder)


def _pixels(records):
    return np.stack([np.asarray(Image.open(r.path), np.float32) for r in records])


def test_each_domain_draws_its_own_cameras_and_people(tmp_path):
    sets = {d: _set(str(tmp_path), d) for d in synthetic.DOMAINS.names()}
    for name, splits in sets.items():
        cams = {r.camid for s in splits.values() for r in s}
        assert max(cams) <= synthetic.DOMAINS[name].cameras, name  # its own camera count
    brightness = {d: _pixels(s["train"]).mean() for d, s in sets.items()}
    assert brightness["night"] < 0.5 * brightness["default"] < brightness["outdoor"]
    blur = {d: np.abs(np.diff(_pixels(s["train"]), axis=2)).mean() for d, s in sets.items()}
    assert blur["cctv"] < 0.6 * blur["default"]  # low resolution and blur: less fine detail
    train_pids = {d: sorted({r.pid for r in s["train"]}) for d, s in sets.items()}
    assert train_pids["night"] != train_pids["default"]  # its own population
    again = _set(str(tmp_path / "again"), "night")
    assert np.array_equal(_pixels(again["train"]), _pixels(sets["night"]["train"]))  # deterministic by seed


def test_the_default_domain_is_the_generator_without_one(tmp_path):
    a = _set(str(tmp_path / "a"), "default")
    synthetic.make_synthetic_market(str(tmp_path / "b"), num_ids=8, height=64, width=32, seed=3, num_junk=1,
                                    num_distractors=1)
    b = load_market1501(str(tmp_path / "b"))
    assert np.array_equal(_pixels(a["train"]), _pixels(b["train"]))


def test_a_run_and_the_tool_reach_a_domain_by_name(tmp_path):
    cfg = config.DataConfig(dataset="synthetic", synthetic_ids=8, synthetic_domain="cctv")
    cfg.validate()
    splits = datasets.load_dataset("synthetic", str(tmp_path / "gen"), cfg)
    assert len({r.camid for r in splits["train"]}) <= synthetic.DOMAINS["cctv"].cameras
    assert "cctv" in datasets.synthetic_cache_dir(8, "cctv") and "cctv" not in datasets.synthetic_cache_dir(8)
    with pytest.raises(config.ConfigError, match="synthetic_domain"):
        config.DataConfig(synthetic_domain="moon").validate()
    listed = subprocess.run([sys.executable, "tools/make_synthetic_dataset.py", "--list_domains"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert listed.stdout.split() == list(synthetic.DOMAINS.names())
    wrong = subprocess.run([sys.executable, "tools/make_synthetic_dataset.py", f"--output_dir={tmp_path}/x",
                            "--domain=moon"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and wrong.stderr.strip().splitlines()[-1].startswith("error: --domain=moon")
