import os
import sys

import keras
import numpy as np
import warm_python
from helpers import REPO

from reid_tf import config as C
from reid_tf import datasets, evaluate, objective, synthetic, train_lib
from reid_tf import model as model_lib


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_layout_names_junk_and_distractors(market_dir):
    splits = datasets.market.load_market1501(market_dir)
    names = [os.path.basename(r.path) for r in splits["gallery"]]
    assert any(n.startswith("-1_c") for n in names) and any(n.startswith("0000_c") for n in names)
    assert all(datasets.market.parse_market_name(os.path.basename(r.path)) for s in splits.values() for r in s)
    # Every test identity has a query per camera it appears in, and a match in another camera.
    query_keys = {(r.pid, r.camid) for r in splits["query"]}
    gallery_keys = {(r.pid, r.camid) for r in splits["gallery"] if r.pid > 0}
    assert query_keys == gallery_keys
    assert all(len({c for p, c in query_keys if p == pid}) >= 2 for pid, _ in query_keys)


def test_deterministic_by_seed(tmp_path):
    kw = dict(num_ids=6, num_cameras=2, images_per_camera=1, height=64, width=32, num_junk=1,
              num_distractors=1)
    synthetic.make_synthetic_market(str(tmp_path / "a"), seed=1, **kw)
    synthetic.make_synthetic_market(str(tmp_path / "b"), seed=1, **kw)
    synthetic.make_synthetic_market(str(tmp_path / "c"), seed=2, **kw)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    assert all(open(tmp_path / "a" / f, "rb").read() == open(tmp_path / "b" / f, "rb").read()
               for f in files)
    assert any(not os.path.exists(tmp_path / "c" / f)
               or open(tmp_path / "a" / f, "rb").read() != open(tmp_path / "c" / f, "rb").read()
               for f in files)


def test_command_line_tool(tmp_path):
    proc = warm_python.run(
        [sys.executable, os.path.join(REPO, "tools", "make_synthetic_dataset.py"),
         f"--output_dir={tmp_path}", "--num_ids=4", "--num_cameras=2", "--images_per_camera=1",
         "--height=64", "--width=32"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bounding_box_train" in proc.stdout
    assert len(os.listdir(tmp_path / "bounding_box_train")) >= 2


def test_untrained_scores_low_and_training_learns(tmp_path, monkeypatch):
    """The embedded default dataset is hard for an untrained network and learnable."""
    root = str(tmp_path / "data")
    synthetic.make_synthetic_market(root, num_ids=80, num_cameras=4, images_per_camera=3,
                                    height=64, width=32, seed=0)
    config = C.RunConfig(
        data=C.DataConfig(dataset="market1501", data_dir=root, image_height=64, image_width=32,
                          return_id_num=8, image_num_every_id=4, valid_ids=0, train_eval_ids=0),
        model=C.ModelConfig(backbone="small", backbone_weights="none"),
        optimizer=C.OptimizerConfig(initial_learning_rate=3e-3, decay_steps=1000),
        train=C.TrainConfig(max_steps=90, checkpoint_every=1000, eval_every=1000, log_every=50),
    )
    splits = datasets.market.load_market1501(root)
    seen = []
    real = objective.make_train_step

    def spy(model, *args):
        seen.append(model)
        return real(model, *args)

    def test_map(model):
        embed = evaluate.keras_embed_fn(model)
        q = evaluate.embed_records(embed, splits["query"], 64, 32)
        g = evaluate.embed_records(embed, splits["gallery"], 64, 32)
        return evaluate.score(q[0], g[0], q[1], g[1], q[2], g[2])["mAP"]

    monkeypatch.setattr(objective, "make_train_step", spy)
    keras.utils.set_random_seed(0)  # the untrained network's weights, fixed: its score is a bound below
    before_model = model_lib.build_run_model(config)
    before = test_map(before_model)
    train_lib.run(config, str(tmp_path / "run"))
    after = test_map(seen[0])
    assert before < 0.2
    # 90 steps of 8 x 4 images at 3x the quickstart's learning rate: on the way, not there (the
    # quickstart reaches ~0.9). Where a run lands depends on the seed, and on the CPU's rounding as
    # much: seed 0 gives 0.151 on the AVX-512 kind and 0.073 on the AVX2 one, seeds 1 and 2 there
    # 0.073 and 0.130 (2.2x to 6.6x the untrained model's score; 150 steps add nothing).
    assert after > 2 * before, (before, after)
    assert np.isfinite(after)
