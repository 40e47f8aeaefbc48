"""The strong-baseline recipe (Luo et al. 2019, "Bag of Tricks"): each trick against a reference."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from reid_tf import augment, backbones, export_lib, exported, objective, optim, train_lib
from reid_tf import config as C
from reid_tf import model as model_lib
from reid_tf.losses import center_loss, identity_accuracy, identity_loss

SHAPE = (64, 32, 3)


def test_identity_loss_equals_keras_categorical_crossentropy_with_label_smoothing():
    logits = np.array([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [-1.0, 4.0, 0.0, 1.0]], np.float32)
    labels = np.array([0, 2, 3], np.int32)
    for smoothing in (0.0, 0.1, 0.3):
        reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)(
            tf.one_hot(labels, 4), logits)
        np.testing.assert_allclose(identity_loss(logits, labels, smoothing), reference, rtol=1e-6)
    # By hand for one row: -sum(target * log_softmax), target = 0.9 one-hot + 0.1 / 4.
    log_p = logits[0] - np.log(np.exp(logits[0]).sum())
    target = np.full(4, 0.025) + 0.9 * np.eye(4)[0]
    np.testing.assert_allclose(identity_loss(logits[:1], labels[:1], 0.1), -(target * log_p).sum(), rtol=1e-6)
    assert float(identity_accuracy(logits, labels)) == pytest.approx(2 / 3)


def test_center_loss_by_hand():
    features = np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]], np.float32)
    centers = np.array([[1.0, 1.0], [2.0, 2.0]], np.float32)
    labels = np.array([0, 1, 0])
    # |(0,1)|^2 = 1, |(1,-2)|^2 = 5, |(-1,-1)|^2 = 2: mean 8/3.
    np.testing.assert_allclose(center_loss(features, labels, centers), 8 / 3, rtol=1e-6)


def test_warmup_and_piecewise_schedule_at_chosen_steps():
    cfg = C.OptimizerConfig(initial_learning_rate=3.5e-4, lr_schedule="piecewise",
                            lr_boundaries=(400, 700), lr_values=(3.5e-4, 3.5e-5, 3.5e-6),
                            warmup_steps=100, warmup_factor=0.01)
    schedule = optim.learning_rate_schedule(cfg)
    expected = {0: 3.5e-6, 50: 3.5e-4 * (0.01 + 0.99 * 0.5), 100: 3.5e-4, 400: 3.5e-4,
                401: 3.5e-5, 700: 3.5e-5, 701: 3.5e-6, 5000: 3.5e-6}
    for step, lr in expected.items():
        np.testing.assert_allclose(float(schedule(step)), lr, rtol=1e-6, err_msg=f"step {step}")
    cosine = optim.learning_rate_schedule(C.OptimizerConfig(1e-3, lr_schedule="cosine", decay_steps=100))
    np.testing.assert_allclose([float(cosine(s)) for s in (0, 50, 100)], [1e-3, 5e-4, 0.0], atol=1e-9)
    default = optim.learning_rate_schedule(C.OptimizerConfig())  # today's exponential decay
    np.testing.assert_allclose(float(default(10000)), 1e-5, rtol=1e-6)
    with pytest.raises(ValueError, match="one\\s+more --lr_values"):
        optim.learning_rate_schedule(dataclasses.replace(cfg, lr_values=(1e-3,)))


def test_last_stride_1_doubles_the_feature_map_and_keeps_the_weights_loadable(tmp_path):
    path = str(tmp_path / "backbone.weights.h5")  # a weights file as the README makes one
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=SHAPE).save_weights(path)
    strided = backbones.build_backbone("resnet50", path, SHAPE)
    one = backbones.build_backbone("resnet50", path, SHAPE, last_stride=1)
    assert strided.output.shape[1:3] == (2, 1) and one.output.shape[1:3] == (4, 2)
    for a, b in zip(strided.weights, one.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    v2 = backbones.build_backbone("resnet50v2", "none", SHAPE, last_stride=1)
    assert v2.output.shape[1:3] == (4, 2)


def bot_config(market_dir, **loss):
    return C.RunConfig(
        data=C.DataConfig(dataset="market1501", data_dir=market_dir, image_height=64, image_width=32,
                          augment="bot", return_id_num=4, image_num_every_id=2, valid_ids=2,
                          train_eval_ids=2),
        model=C.ModelConfig(backbone="small", backbone_weights="none", head="fc", embedding_dim=16,
                            neck="bnneck"),
        loss=C.LossConfig(margin="0.3", id_loss_weight=1.0, label_smoothing=0.1,
                          center_loss_weight=5e-4, **loss),
        optimizer=C.OptimizerConfig(initial_learning_rate=1e-3, warmup_steps=2, weight_decay=5e-4),
        train=C.TrainConfig(max_steps=3, checkpoint_every=3, eval_every=3, log_every=1),
    )


def test_the_bnneck_shift_stays_zero_and_centres_move_as_bot_moves_them(market_dir):
    config = bot_config(market_dir)
    strategy = tf.distribute.get_strategy()
    model = model_lib.build_run_model(config)
    head = objective.build_identity_head(config.loss, num_classes=6, feature_dim=16, seed=0)
    optimizer = optim.build_optimizer(config.optimizer, "none")
    step = objective.make_train_step(model, optimizer, strategy, config.loss, False, head, 5e-4)
    images = tf.random.stateless_uniform([8, 64, 32, 3], [1, 2], maxval=255.0)
    pids = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    batches = iter(tf.data.Dataset.from_tensors((images, pids)).repeat())
    bnneck = model.get_layer("bnneck")
    assert [w.name for w in bnneck.weights] == ["gamma", "moving_mean", "moving_variance"]
    features = model(images, training=True)["features"]
    centers_before = head.centers.numpy()
    expected = centers_before.copy()  # SGD(0.5) on d/dc of the unweighted mean |f - c_y|^2
    for i in range(4):
        own = expected[i]
        expected[i] = own - 0.5 * (-2.0 / 8) * (features.numpy()[2 * i:2 * i + 2] - own).sum(0)
    loss, stats = step(batches)
    np.testing.assert_allclose(head.centers.numpy(), expected, rtol=1e-5, atol=1e-6)
    for _ in range(2):
        loss, stats = step(batches)
    assert {"id_loss", "id_accuracy", "center_loss", "triplet_loss", "weight_decay_loss"} <= set(stats)
    total = (stats["triplet_loss"] + stats["id_loss"] + 5e-4 * stats["center_loss"]
             + stats["weight_decay_loss"])
    np.testing.assert_allclose(loss, total, rtol=1e-6)
    # Shift frozen at 0: in training mode every channel of the neck's output has batch mean 0.
    neck = model(images, training=True)["neck"].numpy()
    np.testing.assert_allclose(neck.mean(0), 0.0, atol=1e-4)


def test_augmentation_bot_pads_crops_and_erases_with_the_imagenet_mean():
    image = tf.fill([64, 32, 3], 200.0)
    outs = [augment.augment_image(image, 64, 32, "bot", tf.constant([0, s], tf.int64)).numpy()
            for s in range(200)]
    assert all(o.shape == (64, 32, 3) for o in outs)
    erased = [o for o in outs if np.isclose(o, augment.IMAGENET_MEAN, atol=1e-3).all(-1).any()]
    padded = [o for o in outs if (o == 0).all(-1).any()]
    assert 0.35 < len(erased) / len(outs) < 0.65  # p = 0.5
    assert len(padded) > 0.8 * len(outs)  # a 3-px pad is almost always in the crop
    values = np.unique(np.concatenate([o.reshape(-1, 3) for o in outs]), axis=0)
    assert len(values) == 3  # 200, 0 (padding), the mean: no noise, no interpolation


def test_a_bnneck_run_trains_and_exports_the_after_bn_feature(market_dir, tmp_path):
    out = str(tmp_path / "run")
    config = bot_config(market_dir)
    summary = train_lib.run(config, out)
    assert summary["step"] == 3 and np.isfinite(summary["final"]["mAP"])
    model = model_lib.build_run_model(config, "none")
    tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(f"{out}/checkpoints")).expect_partial()
    images = tf.random.stateless_uniform([5, 64, 32, 3], [3, 4], maxval=255.0)
    bnneck = model.get_layer("bnneck")
    before = model(images, training=False)["features"].numpy()
    after = (before - bnneck.moving_mean.numpy()) / np.sqrt(bnneck.moving_variance.numpy() + 1e-5)
    after = after * bnneck.gamma.numpy()
    served = tf.saved_model.load(summary["export"]).signatures["serving_default"](images=images)
    np.testing.assert_allclose(served["embeddings"], after, rtol=1e-4, atol=1e-4)
    assert not np.allclose(before, after, rtol=0.1, atol=0)  # the BN does change the feature
    meta = json.load(open(os.path.join(summary["export"], "assets", exported.METADATA)))
    assert meta["embedding"] == "after the BNNeck" and meta["embedding_dim"] == 16
    # neck_feat=before: the same weights, the feature before the BN.
    before_cfg = dataclasses.replace(config, model=dataclasses.replace(config.model, neck_feat="before"))
    path = export_lib.export_saved_model(model, before_cfg, str(tmp_path / "before"), 1, 3)
    served = tf.saved_model.load(path).signatures["serving_default"](images=images)
    np.testing.assert_allclose(served["embeddings"], before, rtol=1e-4, atol=1e-4)


def test_a_bnneck_without_the_id_loss_trains(market_dir, tmp_path):
    """No loss reaches the neck's scale then: its gradient is zero, not a failed step."""
    config = bot_config(market_dir)
    config = dataclasses.replace(config, loss=C.LossConfig(), optimizer=C.OptimizerConfig(1e-3),
                                 train=dataclasses.replace(config.train, max_steps=2, eval_every=2))
    summary = train_lib.run(config, str(tmp_path / "run"))
    assert summary["step"] == 2 and np.isfinite(summary["final"]["mAP"])
