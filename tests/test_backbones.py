"""Backbones by name: each keras.applications family and OSNet builds at 64x32 with its batch norm
fused and its preprocessing inside the model, last stride 1 doubles the map where it applies
and is refused in one line elsewhere, OSNet has the paper's parameter counts, and a light
backbone and OSNet train and go through every export format with its check."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import warm_python
from helpers import tiny_config

from reid_tf import backbones, export_lib, losses, osnet, train_lib
from reid_tf import model as model_lib

SHAPE = (64, 32, 3)
# One of each family: the others share its constructor's code path (benchmarks/backbones.py runs
# every name through two training steps and a SavedModel export).
# ResNet v1 (resnet50) trains in tests/test_flagfiles.py and its last stride in tests/test_bot.py.
FAMILIES = ["resnet50v2", "mobilenet_v3_small", "efficientnetv2_b0", "convnext_tiny",
            "densenet121", "osnet_x0_25"]
LAST_STRIDE_ONE = {  # whether --last_stride=1 applies
    "resnet50v2": True, "mobilenet_v3_small": True, "efficientnetv2_b0": True,
    "convnext_tiny": False, "densenet121": False, "osnet_x0_25": False}
# OSNet's parameters in the paper's Table 1 (millions, at its rounding), counted as PyTorch counts
# them (weights, not BN running statistics) over conv1 to conv5 and the 512-d fc layer (Linear +
# BatchNorm1d); the ID classifier is left out.
PAPER_PARAMETERS = {"osnet_x1_0": 2.2, "osnet_x0_75": 1.3, "osnet_x0_5": 0.6, "osnet_x0_25": 0.2}


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_builds_trains_one_step_and_keeps_its_last_stride_rule(name):
    model = model_lib.build_model(SHAPE, backbone=name, backbone_weights="none", seed=0)
    inner = backbones.backbone_of(model)
    assert inner.name == name
    kinds = {type(layer).__name__ for layer in inner.layers}
    assert "BatchNormalization" not in kinds  # every batch norm on the fused kernel
    assert ("FusedBatchNormalization" in kinds) == (not name.startswith("convnext"))
    final = tuple(inner.output.shape[1:3])
    if LAST_STRIDE_ONE[name]:
        strided = backbones.build_backbone(name, "none", SHAPE, last_stride=1)
        assert tuple(strided.output.shape[1:3]) == (2 * final[0], 2 * final[1])
        assert len(strided.get_weights()) == len(inner.get_weights())
    else:
        with pytest.raises(backbones.BackboneError) as refused:
            backbones.build_backbone(name, "none", SHAPE, last_stride=1)
        assert str(refused.value).startswith(f"--last_stride=1 does not apply to {name}:")
        assert "\n" not in str(refused.value)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, *SHAPE)), tf.float32)
    pids = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        loss = losses.batch_hard_triplet_loss(model(images, training=True), pids)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    assert np.isfinite(float(loss))
    changed = [not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables)]
    assert sum(changed) > 0.9 * len(changed)  # the backbone trains, not only the head


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))  # the IBN/AIN variants: tests/test_torch_zoo.py
def test_osnet_parameters_match_the_paper(name):
    net = osnet.osnet(name, (256, 128, 3))
    weights = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    fc = osnet.WIDTHS[name][3] * 512 + 512 + 2 * 512  # Linear(C, 512) with bias, BatchNorm1d(512)
    assert round((weights + fc) / 1e6, 1) == PAPER_PARAMETERS[name]
    assert tuple(net.output.shape[1:]) == (16, 8, osnet.WIDTHS[name][3])  # conv5 at stride 16


def test_osnet_blocks_share_one_gate_over_four_streams():
    net = osnet.osnet("osnet_x0_25", SHAPE)
    gates = [layer for layer in net.layers if isinstance(layer, osnet.ChannelGate)]
    assert len(gates) == 6  # one per OSBlock: 2 blocks in each of conv2, conv3, conv4
    assert all(len(g._inbound_nodes) == 4 for g in gates)  # applied to the 1- to 4-conv streams
    depthwise = [layer for layer in net.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert len(depthwise) == 6 * (1 + 2 + 3 + 4)


def test_imagenet_for_osnet_is_refused_saying_how_to_make_a_file():
    with pytest.raises(backbones.WeightsUnavailableError) as e:
        backbones.build_backbone("osnet_x0_25", "imagenet", SHAPE)
    assert "has no ImageNet weights in Keras" in str(e.value) and "--format=backbone" in str(e.value)


def test_preprocessing_is_inside_the_model():
    pixels = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, *SHAPE)), tf.float32)
    torch_mode = model_lib.PixelPreprocessing("torch")(pixels).numpy()
    expected = (pixels.numpy() / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(torch_mode, expected, rtol=1e-5, atol=1e-5)
    modes = {name: backbones.preprocessing(name) for name in backbones.REGISTRY}
    assert modes["osnet_x1_0"] == modes["densenet121"] == "torch"
    assert modes["resnet101"] == "caffe" and modes["resnet152v2"] == "tf"
    # Networks that normalise in their own first layers take raw pixels.
    assert modes["mobilenet_v3_large"] == modes["convnext_small"] == modes["efficientnetv2_s"] == "none"


@pytest.fixture(scope="module", params=["mobilenet_v3_small", "osnet_x0_25"])
def light_run(request, market_dir, tmp_path_factory):
    """A 2-step run of MobileNetV3 (one device, float32) or of OSNet (`osnet_run`: two replicas,
    bfloat16), for the exports to start from."""
    if request.param == "osnet_x0_25":
        return request.param, request.getfixturevalue("osnet_run")["folder"]
    config = tiny_config(market_dir, max_steps=2, eval_every=2)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, backbone=request.param))
    out = str(tmp_path_factory.mktemp(request.param) / "run")
    summary = train_lib.run(config, out)
    assert summary["step"] == 2 and summary["export"]
    return request.param, out


@pytest.mark.parametrize("fmt, options", [
    ("saved_model", {}), ("saved_model", {"precision": "bfloat16"}), ("tflite", {}),
    ("tflite", {"quantize": "int8", "calibration_images": 16}), ("onnx", {}), ("backbone", {})])
def test_a_light_backbone_and_osnet_go_through_every_format(light_run, tmp_path, fmt, options):
    name, out = light_run
    folder = export_lib.export_run(out, str(tmp_path / "exports"), fmt=fmt, **options)
    if fmt == "saved_model":
        loaded = tf.saved_model.load(folder)
        assert {"serving_default", "serving_bytes"} <= set(loaded.signatures)
        images = tf.constant(np.random.default_rng(2).uniform(0, 255, (3, *SHAPE)), tf.float32)
        embeddings = loaded.signatures["serving_default"](images=images)["embeddings"]
        assert embeddings.dtype == tf.float32 and np.isfinite(embeddings.numpy()).all()
    elif fmt == "backbone":
        backbones.build_backbone(name, os.path.join(folder, "backbone.weights.h5"), SHAPE)
    else:  # the export ran its check (LiteRT, ONNX Runtime) against the model before writing
        import json

        meta = json.load(open(os.path.join(folder, "reid_config.json")))
        assert meta["verification"]["min_cosine"] > (0.9 if options else 0.9999)
        assert meta["backbone"] == name


MIRRORED_OSNET = r"""
import dataclasses, json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[3])
from helpers import tiny_config
from reid_tf import export_lib, train_lib
market, root = sys.argv[1], sys.argv[2]
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = tiny_config(market, max_steps=2, eval_every=2, mixed_precision="bfloat16")
config = dataclasses.replace(config, model=dataclasses.replace(config.model, backbone="osnet_x0_25"))
summary = train_lib.run(config, f"{root}/osnet_x0_25", strategy=mirrored)
print("RESULT " + json.dumps({"step": summary["step"], "mAP": summary["final"]["mAP"]}))
"""


@pytest.fixture(scope="module")
def osnet_run(market_dir, tmp_path_factory):
    """OSNet's 2-step run under two replicas in bfloat16 (its own process: the two logical devices
    exist only before TensorFlow starts): its summary and folder."""
    import json
    import sys

    root = tmp_path_factory.mktemp("mirrored")
    proc = warm_python.run([sys.executable, "-c", MIRRORED_OSNET, market_dir, str(root),
                           os.path.dirname(__file__)], capture_output=True, text=True, timeout=600)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return {**json.loads(lines[0][7:]), "folder": str(root / "osnet_x0_25")}


def test_osnet_trains_under_two_replicas_in_mixed_precision(osnet_run):
    assert osnet_run["step"] == 2 and 0 < osnet_run["mAP"] <= 1
    assert os.path.exists(os.path.join(osnet_run["folder"], "export", "2", "saved_model.pb"))
