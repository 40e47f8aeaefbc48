import keras
import numpy as np
import pytest
import tensorflow as tf

from reid_tf import backbones, fused_bn, losses
from reid_tf import model as model_lib

SHAPE = (64, 32, 3)


def _images(n=8, seed=0):
    return tf.random.stateless_uniform([n, *SHAPE], seed=[seed, 0], maxval=255.0)


def test_resnet50_backbone_parameter_count():
    backbone = backbones.build_backbone("resnet50", "none", SHAPE)
    assert backbone.count_params() == 23_587_712


@pytest.mark.parametrize(
    "variant, dim",
    [
        (dict(), 128),
        (dict(pooling="max", dropout=0.5), 128),
        (dict(pooling="none"), 128),
        (dict(head="fc"), 128),
        (dict(embedding_dim=256), 256),
        (dict(embedding_dim=100, output_activation="softmax"), 100),
        (dict(backbone="resnet50v2"), 128),
        (dict(backbone="small", head_init="keras_default"), 128),
    ],
)
def test_every_variant_outputs_embeddings(variant, dim):
    m = model_lib.build_model(SHAPE, backbone_weights="none", **variant)
    out = m(_images(), training=True)
    assert out.shape == (8, dim) and out.dtype == tf.float32
    assert np.isfinite(out.numpy()).all()
    if variant.get("output_activation") == "softmax":
        np.testing.assert_allclose(out.numpy().sum(axis=1), 1.0, rtol=1e-5)
    if variant.get("pooling") == "none":  # flatten: fc1 sees the whole 2x1x2048 map
        assert m.get_layer("fc1").kernel.shape == (2 * 1 * 2048, 1024)


def test_head_layers():
    m = model_lib.build_model(SHAPE, backbone="small", backbone_weights="none")
    assert m.get_layer("fc1").use_bias is False and m.get_layer("fc1").units == 1024
    assert isinstance(m.get_layer("fc1_bn"), keras.layers.BatchNormalization)
    assert m.get_layer("fc2").units == 128
    one = model_lib.build_model(SHAPE, backbone="small", backbone_weights="none", head="fc")
    assert one.get_layer("fc1").units == 128 and "fc2" not in [layer.name for layer in one.layers]


def test_trainable_head_vs_all():
    head = model_lib.build_model(SHAPE, backbone_weights="none", trainable="head")
    full = model_lib.build_model(SHAPE, backbone_weights="none", trainable="all")
    head_names = sorted(v.path for v in head.trainable_variables)
    inner = backbones.backbone_of(head)
    assert head_names == sorted(v.path for layer in head.layers if layer is not inner for v in layer.trainable_weights)
    # fc1 kernel, BN gamma and beta, fc2 kernel and bias.
    assert len(head.trainable_variables) == 5
    backbone = full.get_layer("resnet50")
    assert len(full.trainable_variables) == 5 + len(backbone.trainable_variables)
    # A frozen backbone runs its BatchNorm in inference mode even when training=True.
    x = _images()
    inner = head.get_layer("resnet50")
    pre = head.get_layer("preprocessing")(x)
    np.testing.assert_allclose(inner(pre, training=True), inner(pre, training=False), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_initial_soft_margin_loss_is_ln2(seed):
    # "fc init should be small enough so the loss starts near 0.7": with the 0.001 truncated
    # normal the embeddings are tiny and softplus(d_ap - d_an) ~ ln 2; the Keras default is far.
    keras.utils.set_random_seed(seed)
    pids = tf.constant([0, 0, 1, 1] * 2)
    small = model_lib.build_model(SHAPE, backbone_weights="none")
    loss = float(losses.batch_hard_triplet_loss(small(_images(), training=True), pids))
    assert abs(loss - np.log(2)) < 0.03
    default = model_lib.build_model(SHAPE, backbone_weights="none", head_init="keras_default")
    assert float(losses.batch_hard_triplet_loss(default(_images(), training=True), pids)) > 1.0


def test_preprocessing_inside_the_model():
    pre = model_lib.PixelPreprocessing("caffe")
    out = pre(tf.constant([[[[255.0, 0.0, 10.0]]]])).numpy()
    np.testing.assert_allclose(out[0, 0, 0], [10 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)
    ref = keras.applications.resnet50.preprocess_input(np.array([[[[255.0, 0.0, 10.0]]]]))
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    np.testing.assert_allclose(model_lib.PixelPreprocessing("tf")(tf.constant([0.0, 255.0])), [-1, 1])


def test_offline_imagenet_names_the_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(fname, origin=None, *args, **kwargs):  # Keras' own message on a failed download
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.resnet.file_utils.get_file", offline)
    with pytest.raises(backbones.WeightsUnavailableError, match=r"--backbone_weights=none\|PATH") as e:
        model_lib.build_model(SHAPE, backbone_weights="imagenet")
    # The whole URL, so that the file can be fetched by hand and passed as PATH.
    assert "/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5;" in str(e.value)


def test_weights_from_a_file(tmp_path):
    source = backbones.build_backbone("small", "none", SHAPE)
    path = str(tmp_path / "small.weights.h5")
    backbones.save_backbone_weights(source, "small", SHAPE, path)  # as the library lays it out
    loaded = backbones.build_backbone("small", path, SHAPE)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(backbones.WeightsUnavailableError, match="not found"):
        backbones.build_backbone("small", str(tmp_path / "missing.h5"), SHAPE)


def test_bad_values():
    with pytest.raises(ValueError, match="pooling"):
        model_lib.build_model(SHAPE, backbone_weights="none", pooling="sum")
    with pytest.raises(backbones.BackboneError, match="too small"):
        model_lib.build_model((16, 8, 3), backbone_weights="none")
    with pytest.raises(ValueError, match="dropout"):
        model_lib.build_model(SHAPE, backbone="small", backbone_weights="none", dropout=1.0)


@pytest.mark.parametrize("training", [False, True])
def test_fused_batch_norm_equals_keras_batch_norm(training):
    x = tf.random.stateless_normal([6, 5, 4, 3], seed=[1, 2]) * 3 + 1
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    fused = fused_bn.FusedBatchNormalization(momentum=0.9, epsilon=1e-3)
    plain.build(x.shape)
    fused.build(x.shape)
    rng = np.random.default_rng(0)
    weights = [rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)]
    plain.set_weights(weights)
    fused.set_weights(weights)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = plain(x, training=training), fused(x, training=training)
        la, lb = tf.reduce_sum(a * a * tf.range(3.0)), tf.reduce_sum(b * b * tf.range(3.0))
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(lb, x), tape.gradient(la, x), rtol=1e-4, atol=1e-5)
    for va, vb in zip(plain.weights, fused.weights):  # moving mean and variance updated alike
        np.testing.assert_allclose(vb.numpy(), va.numpy(), rtol=1e-5, atol=1e-6)


def test_resnet_backbone_uses_the_fused_batch_norm():
    backbone = backbones.build_backbone("resnet50", "none", SHAPE)
    kinds = {type(layer) for layer in backbone.layers if "bn" in layer.name}
    assert kinds == {fused_bn.FusedBatchNormalization}
    assert sum(isinstance(layer, fused_bn.FusedBatchNormalization) for layer in backbone.layers) == 53


def test_fused_copy_keeps_a_backbones_weights_and_outputs():
    plain = keras.applications.ResNet50(include_top=False, weights=None, input_shape=SHAPE)
    fused = backbones.rebuilt_backbone(plain)
    assert fused.name == plain.name and fused.count_params() == plain.count_params()
    x = _images(4) - 128.0
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-4, atol=1e-4)
