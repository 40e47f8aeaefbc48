import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import warm_python
from helpers import tiny_config

from reid_tf import datasets, evaluate, export_lib, exported, train_lib
from reid_tf import model as model_lib
from reid_tf import run_dir as run_dir_lib

LOAD_WITHOUT_REID_TF = r"""
import sys
import numpy as np
import tensorflow as tf
path, inputs, out = sys.argv[1:4]
loaded = tf.saved_model.load(path)
pixels = np.load(inputs, allow_pickle=True)
images = loaded.signatures["serving_default"]
raw = loaded.signatures["serving_bytes"]
result = {}
for n in (1, 5):
    result[f"images{n}"] = images(images=tf.constant(pixels["images"][:n]))["embeddings"].numpy()
    result[f"norm{n}"] = images(images=tf.constant(pixels["images"][:n]))["embeddings_normalized"].numpy()
    result[f"bytes{n}"] = raw(image_bytes=tf.constant(list(pixels["files"][:n])))["embeddings"].numpy()
assert not any(m == "reid_tf" or m.startswith("reid_tf.") for m in sys.modules)
np.savez(out, **result)
print("LOADED")
"""


@pytest.fixture(scope="module")
def run_dir(market_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export_run") / "run")
    train_lib.run(tiny_config(market_dir, max_steps=2, eval_every=100), out)
    return out


@pytest.fixture(scope="module")
def trained(run_dir):
    config = run_dir_lib.load_config(run_dir)
    model = model_lib.build_run_model(config, "none")
    tf.train.Checkpoint(model=model).read(export_lib.checkpoint_path(run_dir)).expect_partial()
    return config, model


def test_round_trip_without_reid_tf(trained, market_dir, tmp_path):
    config, model = trained
    path = export_lib.export_saved_model(model, config, str(tmp_path / "serving"), version=7, step=2)
    assert path == str(tmp_path / "serving" / "7")
    assert sorted(os.listdir(tmp_path / "serving")) == ["7"]  # nothing half-written left over
    records = datasets.market.load_market1501(market_dir)["query"][:5]
    files = [open(r.path, "rb").read() for r in records]
    pixels = evaluate.embed_records(lambda x: x, records, 64, 32)[0].reshape(5, 64, 32, 3)
    np.savez(str(tmp_path / "in.npz"), images=pixels, files=np.array(files, dtype=object))
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_REID_TF, path, str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert "LOADED" in proc.stdout, proc.stderr[-3000:]
    got = np.load(str(tmp_path / "out.npz"))
    keras_out = model(tf.constant(pixels), training=False).numpy()
    # The eval pipeline followed by the model, on the same files.
    pipeline_out = evaluate.embed_records(evaluate.keras_embed_fn(model), records, 64, 32)[0]
    for n in (1, 5):
        assert got[f"images{n}"].shape == (n, 128)
        np.testing.assert_allclose(got[f"images{n}"], keras_out[:n], atol=1e-4)
        np.testing.assert_allclose(got[f"bytes{n}"], pipeline_out[:n], atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(got[f"norm{n}"], axis=1), 1.0, rtol=1e-5)
    meta = json.load(open(os.path.join(path, "assets", exported.METADATA)))
    assert (meta["input_height"], meta["input_width"], meta["embedding_dim"], meta["step"]) == (
        64, 32, 128, 2)


def test_saved_model_cli_lists_both_signatures(trained, tmp_path):
    config, model = trained
    path = export_lib.export_saved_model(model, config, str(tmp_path), version=1, step=2)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this Python")
    out = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True,
                         timeout=120).stdout
    assert "signature_def['serving_default']" in out and "signature_def['serving_bytes']" in out
    assert "shape: (-1, 64, 32, 3)" in out and "shape: (-1, 128)" in out
    assert "image_bytes" in out and "embeddings_normalized" in out


def test_bytes_signature_rejects_a_non_image(trained, tmp_path):
    config, model = trained
    loaded = tf.saved_model.load(export_lib.export_saved_model(model, config, str(tmp_path), 1, 2))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG or PNG image"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([b"hello, not an image"]))


def test_no_partial_version_after_a_failure(trained, tmp_path, monkeypatch):
    config, model = trained

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        export_lib.export_saved_model(model, config, str(tmp_path), version=3, step=2)
    assert os.listdir(tmp_path) == []


def test_existing_version_needs_overwrite(trained, tmp_path):
    config, model = trained
    export_lib.export_saved_model(model, config, str(tmp_path), version=3, step=2)
    with pytest.raises(export_lib.ExportError, match="3 exists: pass --overwrite"):
        export_lib.export_saved_model(model, config, str(tmp_path), version=3, step=2)
    export_lib.export_saved_model(model, config, str(tmp_path), version=3, step=5, overwrite=True)
    meta = json.load(open(tmp_path / "3" / "assets" / exported.METADATA))
    assert meta["step"] == 5 and sorted(os.listdir(tmp_path)) == ["3"]


def test_export_run_from_checkpoints(run_dir, trained, tmp_path):
    path = export_lib.export_run(run_dir, str(tmp_path))
    assert path == str(tmp_path / "2")  # version = the training step
    loaded = tf.saved_model.load(path)
    x = tf.random.uniform([3, 64, 32, 3], 0, 255)
    np.testing.assert_allclose(loaded.signatures["serving_default"](images=x)["embeddings"],
                               trained[1](x, training=False), atol=1e-4)
    with pytest.raises(export_lib.ExportError, match="no complete checkpoint of step 9"):
        export_lib.export_run(run_dir, str(tmp_path), step=9)
    with pytest.raises(export_lib.ExportError, match="config.json not found"):
        export_lib.export_run(str(tmp_path / "nowhere"), str(tmp_path))


def test_incomplete_checkpoint_folder_is_named(run_dir, tmp_path):
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.json").write_text(open(os.path.join(run_dir, "config.json")).read())
    with pytest.raises(export_lib.ExportError, match=r"checkpoints holds no complete checkpoint"):
        export_lib.export_run(str(broken), str(tmp_path / "out"))


def test_export_command_line(run_dir, tmp_path):
    proc = warm_python.run(
        [sys.executable, "-m", "reid_tf.export", f"--output_dir={run_dir}",
         f"--export_dir={tmp_path}", "--version=11", "--max_images_per_request=3",
         "--max_image_pixels=1000"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.exists(tmp_path / "11" / "saved_model.pb")
    recorded = json.loads((tmp_path / "11" / "assets" / "reid_config.json").read_text())
    assert (recorded["max_images_per_request"], recorded["max_image_pixels"]) == (3, 1000)
    serve = tf.saved_model.load(str(tmp_path / "11")).signatures["serving_bytes"]
    image = tf.io.encode_png(tf.zeros([64, 32, 3], tf.uint8))  # 2048 pixels > 1000
    with pytest.raises(tf.errors.InvalidArgumentError, match="claims 32x64 pixels, over the limit of 1000"):
        serve(image_bytes=tf.stack([image]))
    small = tf.io.encode_png(tf.zeros([30, 30, 3], tf.uint8))
    assert serve(image_bytes=tf.stack([small] * 3))["embeddings"].shape == (3, 128)
    with pytest.raises(tf.errors.InvalidArgumentError, match="4 > the limit of 3"):
        serve(image_bytes=tf.stack([small] * 4))
    proc = warm_python.run(
        [sys.executable, "-m", "reid_tf.export", f"--output_dir={tmp_path}/none",
         f"--export_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_the_keras_model_reads_back_from_either_variables_layout(saved_model, tmp_path):
    """An export holds its model's variables as one list; an export made before that held the Keras
    model's own object graph, and still opens to the same weights."""
    import shutil

    model = exported.keras_model(saved_model)
    old = tmp_path / "old"
    shutil.copytree(saved_model, old)
    tf.train.Checkpoint(model=model).write(str(old / "variables" / "variables"))
    assert any(name.startswith("model/") for name, _ in tf.train.list_variables(str(old / "variables" / "variables")))
    again = exported.keras_model(str(old))
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(np.abs(w.numpy()).sum() > 0 for w in again.weights)
