"""LiteRT and ONNX exports of a tiny run: each equals the SavedModel, int8 ranks like float, and a
broken conversion is refused before anything is written."""

import json
import os
import sys

import numpy as np
import onnx
import pytest
import scipy.stats
import tensorflow as tf
import warm_python
from helpers import REPO, cpu_has

from reid_tf import convert, data, datasets, export_lib, exported


@pytest.fixture(scope="module")
def run(trained_run):
    return trained_run  # 30 steps: enough for int8 to rank like float


def gallery_images(market_dir, n=None):
    records = datasets.market.load_market1501(market_dir)["gallery"]
    batches = data.eval_dataset(records[:n] if n else records, 64, 32)
    return np.concatenate([b.numpy() for b, _, _ in batches]), records


def test_tflite_and_onnx_equal_the_saved_model(run, market_dir, tmp_path):
    images, _ = gallery_images(market_dir, 12)
    reference = exported.open_export(export_lib.export_run(run, str(tmp_path / "sm"))).embed(images)
    for fmt in ("tflite", "onnx"):
        folder = export_lib.export_run(run, str(tmp_path / fmt), fmt=fmt)
        assert sorted(os.listdir(folder)) == sorted([convert.FILE_NAMES[fmt], "reid_config.json"])
        meta = json.load(open(os.path.join(folder, "reid_config.json")))
        assert meta["format"] == fmt and meta["verification"]["relative"] <= 1e-4
        assert meta["verification"]["bytes"] == os.path.getsize(os.path.join(folder, meta["file"]))
        model = exported.open_export(os.path.join(folder, meta["file"]))
        assert (model.height, model.width, model.format) == (64, 32, fmt)
        got = model.embed(images)
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4 * np.abs(reference).max())
    onnx_model = onnx.load(os.path.join(tmp_path, "onnx", "30", "model.onnx"))
    opsets = {o.domain: o.version for o in onnx_model.opset_import}
    assert opsets[""] == convert.ONNX_OPSET
    # The dynamic batch: one image at a time as a camera sends them.
    one = convert.tflite_embed_fn(os.path.join(tmp_path, "tflite", "30", "model.tflite"))(images[:1])
    np.testing.assert_allclose(one, reference[:1], atol=1e-4 * np.abs(reference).max())


def test_int8_ranks_the_gallery_like_the_float_model(run, market_dir, tmp_path):
    images, records = gallery_images(market_dir)
    float_embed = convert.tflite_embed_fn(
        os.path.join(export_lib.export_run(run, str(tmp_path / "f"), fmt="tflite"), "model.tflite"))
    folder = export_lib.export_run(run, str(tmp_path / "q"), fmt="tflite", quantize="int8", calibration_images=64)
    meta = json.load(open(os.path.join(folder, "reid_config.json")))
    assert meta["quantize"] == "int8" and meta["verification"]["min_cosine"] >= 0.9
    size_float = os.path.getsize(os.path.join(tmp_path, "f", "30", "model.tflite"))
    assert os.path.getsize(os.path.join(folder, "model.tflite")) < 0.4 * size_float
    int8_embed = convert.tflite_embed_fn(os.path.join(folder, "model.tflite"))
    f, q = float_embed(images), int8_embed(images)

    def distances(e):
        d = ((e[:, None] - e[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return d

    # Each image as a query against the rest. A 30-step model's gallery has near-ties, so which of
    # two near-equal neighbours comes first depends on the CPU's rounding (top-1 agreement: 0.68 on
    # the AVX2 kind, >= 0.75 on the AVX-512 one); where int8's top-1 stands in the float ranking,
    # and how the two order every pair, do not (measured on the AVX2 kind: 1.0 and 0.997).
    d_float, d_int8 = distances(f), distances(q)
    float_rank = d_float.argsort(1).argsort(1)
    in_top3 = (float_rank[np.arange(len(q)), d_int8.argmin(1)] < 3).mean()
    pairs = np.triu_indices(len(f), 1)
    order = scipy.stats.spearmanr(d_float[pairs], d_int8[pairs]).statistic
    assert in_top3 >= 0.9 and order >= 0.98, (in_top3, order)


def test_a_conversion_that_loses_the_weights_is_refused(run, tmp_path, monkeypatch):
    def weightless(function, quantize="none", calibration=None):  # what from_saved_model gave
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [unfrozen.get_concrete_function()], unfrozen_module)
        return converter.convert()

    from reid_tf import export_lib, run_dir
    from reid_tf import model as model_lib

    config = run_dir.load_config(run)
    keras_model = model_lib.build_run_model(config, "none")
    unfrozen_module = tf.Module()
    unfrozen_module.model = keras_model

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 32, 3], tf.float32, "images")])
    def unfrozen(images):
        e = keras_model(images, training=False)
        return {"embeddings": e, "embeddings_normalized": tf.math.l2_normalize(e, axis=1)}

    monkeypatch.setattr(convert, "to_tflite", weightless)
    refusal = r"the tflite model \(none\) gives other embeddings than the model \(relative difference nan"
    with pytest.raises(export_lib.ExportError, match=refusal + r" > 0.0001\): not written"):
        export_lib.export_run(run, str(tmp_path / "bad"), fmt="tflite")
    assert not os.path.exists(tmp_path / "bad")  # nothing written


def test_a_network_with_custom_gradients_converts_with_its_signature():
    # tf.nn.silu (EfficientNetV2's activation) has a custom gradient: the converter's own save of
    # the function fails on it and it fell back to a file without signatures, refused by int8.
    import keras

    keras.utils.set_random_seed(0)  # its weights, whatever ran before it in this process
    inputs = keras.Input((64, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="silu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="silu")(x))
    function = convert.embedding_function(model, 64, 32)
    pixels = np.random.default_rng(0).uniform(0, 255, (16, 64, 32, 3)).astype(np.float32)
    reference = function(tf.constant(pixels))["embeddings"].numpy()
    for quantize, tolerance in (("none", 1e-5), ("int8", 0.1)):
        content = convert.to_tflite(function, quantize, pixels)
        converted = convert.tflite_embed_fn(content)(pixels)  # runs by its signature
        assert convert.compare(reference, converted)["relative"] < tolerance, quantize


def test_the_eval_tool_scores_a_tflite_file(run, market_dir, tmp_path):
    """The same scores from the LiteRT file as from the run's SavedModel, through the user's command."""
    folder = export_lib.export_run(run, str(tmp_path / "t"), fmt="tflite")
    scores = {}
    for name, model in (("tflite", f"{folder}/model.tflite"), ("saved_model", run)):
        proc = warm_python.run([sys.executable, "tools/eval.py", f"--model={model}", f"--data_dir={market_dir}",
                               f"--output_json={tmp_path}/{name}.json"], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        scores[name] = json.load(open(tmp_path / f"{name}.json"))
    for key in ("mAP", "rank1", "mINP"):
        assert abs(scores["tflite"][key] - scores["saved_model"][key]) < 1e-3, key
    bad = warm_python.run([sys.executable, "tools/eval.py", f"--model={tmp_path}/nothing.tflite",
                          f"--data_dir={market_dir}"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_a_reduced_precision_saved_model_keeps_its_signatures_and_float32_outputs(
        run, market_dir, tmp_path, precision):
    images, _ = gallery_images(market_dir, 8)
    reference = exported.open_export(export_lib.export_run(run, str(tmp_path / "f32"))).embed(images)
    folder = export_lib.export_run(run, str(tmp_path / precision), precision=precision)
    meta = json.load(open(os.path.join(folder, "assets", "reid_config.json")))
    assert meta["precision"] == precision
    loaded = tf.saved_model.load(folder)
    assert set(loaded.signatures) == {"serving_default", "serving_bytes"}
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    assert out["embeddings"].dtype == tf.float32 == out["embeddings_normalized"].dtype
    got = out["embeddings"].numpy()
    assert not np.array_equal(got, reference)  # it does compute in reduced precision
    cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert np.median(cosine) > 0.999, cosine  # measured on both CPU kinds: > 0.99999
    if precision == "bfloat16" and not cpu_has("avx512_bf16"):
        # Emulated bfloat16 (AVX2 only) rounds more: one image of 8 at 0.964 on that kind.
        pytest.skip(f"this CPU lacks avx512_bf16: the worst image's cosine ({cosine.min():.3f}) is held to > 0.99"
                    " only where bfloat16 is native")
    assert cosine.min() > 0.99, cosine


def test_the_export_command_checks_prints_and_refuses_in_one_line(run, tmp_path):
    def export_command(*flags):
        return warm_python.run([sys.executable, "-m", "reid_tf.export", f"--output_dir={run}",
                               f"--export_dir={tmp_path / 'cli'}", *flags], cwd=REPO, capture_output=True,
                              text=True)

    done = export_command("--format=onnx")
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.splitlines()
    assert printed[0].startswith("model.onnx: ") and "against the model on 8 images" in printed[0]
    assert printed[-1] == f"exported {tmp_path / 'cli' / '30'}"
    bad = export_command("--format=onnx", "--quantize=int8", "--version=2")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: --quantize applies to --format=tflite")
    assert not (tmp_path / "cli" / "2").exists()
