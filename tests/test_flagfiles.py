import dataclasses
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO

from reid_tf import config as C
from reid_tf import flags as reid_flags
from reid_tf import model as model_lib
from reid_tf import train as train_command
from reid_tf import train_lib

FLAGFILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "flags", "*.cfg")))
LOG_ROWS = ["resnet.cfg", "resnet_softmax.cfg", "resnet_no_pool.cfg", "resnet_finetuning.cfg",
            "resnet_finetuning_hardest.cfg", "resnet_noprocess.cfg", "resnet_enhance.cfg",
            "resnet_enhance_rerank.cfg", "resnet_fc.cfg", "resnet_IDE.cfg", "resnet_maxpool.cfg",
            "resnet_256.cfg", "resnet_100.cfg", "resnet_IDE_719.cfg"]

# The original's values per row, read from its history (jzhugithub/pedestrian_retrieval; see each
# flagfile's comment): fc1/fc2 init, augmentation as it ran, backbone BN, head BN, validation share
# of identities, re-ranking (k1, k2, lambda) or None, trainable, decay. The augmentation never ran in
# 2017 (the trainer fed the tf.cond's output: ../shared/oracles/original_training), so every row is
# "none", whichever my_preprocess_train its commit held (original_e50be2b, original_d26b97d).
SMALL, HE = (0.01, 0.1), (0.0315, 0.044)  # e50be2b; "change fc init" = 4f2051a
ORIGINAL = {
    "resnet.cfg": (SMALL, "none", "frozen", "inference_init", 0.04, None, "head", 0.1),
    "resnet_softmax.cfg": (SMALL, "none", "frozen", "inference_init", 0.04, None, "head", 0.5),
    "resnet_no_pool.cfg": (SMALL, "none", "frozen", "inference_init", 0.04, None, "head", 0.5),
    "resnet_finetuning.cfg": (SMALL, "none", "frozen", "inference_init", 0.04, None, "all", 0.5),
    "resnet_finetuning_hardest.cfg": (SMALL, "none", "frozen", "batch_no_update", 0.04, None, "all", 0.5),
    "resnet_noprocess.cfg": (SMALL, "none", "frozen", "batch_no_update", 0.04, None, "all", 0.5),
    "resnet_enhance.cfg": (SMALL, "none", "frozen", "batch_no_update", 0.04, None, "all", 0.5),
    "resnet_enhance_rerank.cfg": (HE, "none", "frozen", "batch_no_update", 0.08, (20, 6, 0.3), "all", 0.5),
    "resnet_fc.cfg": ((0.0001, None), "none", "frozen", None, 0.08, (20, 6, 0.2), "all", 0.5),
    "resnet_IDE.cfg": (HE, "none", "train_no_update", "batch_no_update", 0.08, (12, 6, 0.4), "all", 0.3),
    "resnet_maxpool.cfg": (HE, "none", "train_no_update", "batch_no_update", 0.08, (8, 6, 0.05), "all", 0.5),
    "resnet_256.cfg": (HE, "none", "train_no_update", "batch_no_update", 0.08, (8, 6, 0.05), "all", 0.5),
    "resnet_100.cfg": (HE, "none", "frozen", "batch_no_update", 0.08, (10, 6, 0.05), "all", 0.5),
    "resnet_IDE_719.cfg": (HE, "none", "frozen", "batch_no_update", 0.08, (10, 6, 0.05), "all", 0.3),
}
# What each row changes beyond those: (section, setting, value).
CHANGES = {
    "resnet_softmax.cfg": [("model", "output_activation", "softmax")],
    "resnet_no_pool.cfg": [("model", "pooling", "none")],
    "resnet_finetuning_hardest.cfg": [("train", "init_checkpoint", "runs/resnet_finetuning"),
                                      ("train", "init_checkpoint_full", True), ("loss", "mining", "batch_hardest"),
                                      ("optimizer", "initial_learning_rate", 1e-6), ("train", "max_steps", 25001)],
    "resnet_fc.cfg": [("model", "head", "fc"), ("optimizer", "initial_learning_rate", 1e-6)],
    "resnet_IDE.cfg": [("data", "image_height", 256), ("data", "image_width", 128)],
    "resnet_IDE_719.cfg": [("data", "image_height", 256), ("data", "image_width", 128),
                           ("train", "max_steps", 25001)],
    "resnet_maxpool.cfg": [("model", "pooling", "max"), ("model", "dropout", 0.5)],
    "resnet_256.cfg": [("model", "embedding_dim", 256)],
    "resnet_100.cfg": [("model", "embedding_dim", 100), ("train", "max_steps", 40001)],
}


@pytest.fixture(scope="module")
def parse(request):
    train_command.define_flags()
    cwd = os.getcwd()
    os.chdir(REPO)  # nested --flagfile paths are relative to the repository root

    def parse_args(*args):
        reid_flags.FLAGS.unparse_flags()
        reid_flags.FLAGS(["train", *args])
        return reid_flags.config_from_flags()

    yield parse_args
    reid_flags.FLAGS.unparse_flags()
    os.chdir(cwd)


def test_every_log_row_has_a_flagfile():
    others = {"base.cfg", "quickstart.cfg", "quickstart_osnet.cfg", "quickstart_resnet50.cfg", "resnet_bot.cfg"}
    assert set(LOG_ROWS) | others == set(FLAGFILES)


@pytest.mark.parametrize("name", [n for n in FLAGFILES if n != "base.cfg"])
def test_flagfile_parses_and_builds(parse, name):
    config = parse(f"--flagfile=flags/{name}", "--backbone_weights=none", "--image_height=64",
                   "--image_width=32")
    model = model_lib.build_run_model(config)
    out = model_lib.embeddings_of(model(tf.zeros([2, 64, 32, 3]), training=False))
    assert out.shape == (2, config.model.embedding_dim if config.model.head != "none" else 2048)
    if name in LOG_ROWS:
        assert config.train.max_steps % 1000 == 1


@pytest.mark.parametrize("name", LOG_ROWS)
def test_each_log_row_runs_what_the_original_ran_that_day(parse, name):
    c = parse(f"--flagfile=flags/{name}")
    (fc1, fc2), augment, backbone_bn, head_bn, valid, rerank, trainable, decay = ORIGINAL[name]
    d, m, o, t, s = c.data, c.model, c.optimizer, c.train, c.scoring
    # What every row shares: slim's ResNet-50 v2 (its layout: resnet50v2_slim) fed [0, 1], the centre
    # crop at training and at evaluation, no fc bias, Adam epsilon 1e-8, staircase decay, the
    # original's split and protocol.
    assert (m.backbone, m.pixel_range, d.crop, m.embedding_bias) == ("resnet50v2_slim", "unit", "center_1.25w", False)
    assert (o.adam_epsilon, o.staircase, o.decay_steps, o.initial_learning_rate in (1e-4, 1e-6)) == (
        1e-8, True, 10000, True)
    assert (d.valid_split, d.train_eval_ids, s.protocol, t.allow_tf32) == ("original", 200, "original", False)
    assert (d.return_id_num, d.image_num_every_id, c.loss.margin) == (20, 4, "soft")
    assert (m.head_init, m.fc1_init_stddev) == ("truncated_normal", fc1)
    if fc2 is not None:
        assert m.fc2_init_stddev == fc2
    assert (d.augment, m.backbone_bn, m.trainable, o.decay_rate, d.valid_fraction) == (
        augment, backbone_bn, trainable, decay, valid)
    if head_bn is not None:
        assert m.head_bn == head_bn
    assert t.eval_rerank == (rerank is not None)
    if rerank:
        assert (s.rerank_impl, s.k1, s.k2, s.lambda_value) == ("original", *rerank)
    for section, setting, value in CHANGES.get(name, []):
        assert getattr(getattr(c, section), setting) == value, (section, setting)


def test_each_log_flagfile_names_the_commit_it_follows():
    for name in LOG_ROWS:
        text = open(os.path.join(REPO, "flags", name)).read()
        assert any(commit in text for commit in ("e50be2b", "0853120", "63ad402", "d26b97d", "4f2051a", "948d0f0",
                                                 "9ddd479", "74a3738", "b19bb52", "7d336c6")), name
    for name in ("resnet_IDE.cfg", "resnet_maxpool.cfg", "resnet_256.cfg"):  # the revised note, quoted
        text = open(os.path.join(REPO, "flags", name)).read()
        assert "WITHDRAWN" in text and "b19bb52" in text
    assert "(code has bug!!)" in open(os.path.join(REPO, "flags", "resnet_maxpool.cfg")).read()


def test_the_newer_recipes_keep_the_library_defaults(parse):
    quirks = [s for s in C.ALL_SETTINGS if s.group == C.ORIGINAL]
    for name in ("quickstart.cfg", "quickstart_osnet.cfg", "quickstart_resnet50.cfg", "resnet_bot.cfg"):
        c = parse(f"--flagfile=flags/{name}")
        for s in quirks:
            assert getattr(getattr(c, s.section), s.name) == s.default, (name, s.name)


def test_flags_after_the_flagfile_override_it(parse):
    config = parse("--flagfile=flags/resnet.cfg", "--decay_rate=0.7", "--max_steps=5")
    assert config.optimizer.decay_rate == 0.7 and config.train.max_steps == 5


def test_quickstart_uses_the_same_code_with_small_values(parse):
    config = parse("--flagfile=flags/quickstart.cfg")
    assert config.data.dataset == "synthetic" and config.model.backbone == "osnet_x1_0"
    assert config.model.backbone_weights == "none" and config.model.neck == "bnneck"
    assert config.train.eval_before_training and config.train.max_steps <= 1000
    # The longer recipes are the quickstart's, with a backbone or a length of their own.
    for name, backbone, out in (("quickstart_osnet.cfg", "osnet_x1_0", "runs/quickstart_osnet"),
                                ("quickstart_resnet50.cfg", "resnet50", "runs/quickstart_resnet50")):
        longer = parse(f"--flagfile=flags/{name}")
        assert longer.model.backbone == backbone and longer.train.max_steps == 600
        same = {"model": dataclasses.replace(longer.model, backbone="osnet_x1_0"),
                "train": dataclasses.replace(longer.train, max_steps=300, checkpoint_every=150, eval_every=150)}
        assert dataclasses.replace(longer, **same) == config, name
        assert f"--output_dir={out}\n" in open(os.path.join(REPO, "flags", name)).read()


def test_out_of_range_flags_fail_with_one_line(parse):
    from absl.flags import IllegalFlagValueError

    with pytest.raises(C.ConfigError, match="image_num_every_id=1: batch-hard mining needs K >= 2"):
        parse("--image_num_every_id=1").validate()
    with pytest.raises(IllegalFlagValueError, match="margin"):
        parse("--margin=hard")
    assert parse("--margin=0.3").loss.margin == "0.3"
    np.testing.assert_equal(parse("--dropout=0.5").model.dropout, 0.5)


def test_effective_flags_are_a_reusable_flagfile(parse, tmp_path):
    config = parse("--flagfile=flags/resnet_fc.cfg")
    text = reid_flags.flags_file([s.name for s in C.ALL_SETTINGS])
    (tmp_path / "flags.cfg").write_text(text)
    assert "--head=fc" in text
    assert parse(f"--flagfile={tmp_path / 'flags.cfg'}") == config


def test_resnet_bot_is_bots_published_configuration(parse):
    bot = parse("--flagfile=flags/resnet_bot.cfg")
    d, m, loss, o = bot.data, bot.model, bot.loss, bot.optimizer
    assert (d.image_height, d.image_width, d.return_id_num, d.image_num_every_id) == (256, 128, 16, 4)
    assert d.augment == "bot" and m.last_stride == 1 and m.head == "none" and m.neck == "bnneck"
    assert m.neck_feat == "after" and m.backbone_weights == "imagenet"
    assert loss.margin == "0.3" and loss.id_loss_weight == 1.0 and loss.label_smoothing == 0.1
    assert loss.center_loss_weight == 5e-4 and loss.center_learning_rate == 0.5
    steps_per_epoch = 12936 // 64
    assert o.initial_learning_rate == o.lr_values[0] == 3.5e-4 and o.weight_decay == 5e-4
    assert o.lr_boundaries == (40 * steps_per_epoch, 70 * steps_per_epoch)
    assert o.lr_values == (3.5e-4, 3.5e-5, 3.5e-6)
    assert (o.warmup_steps, o.warmup_factor) == (10 * steps_per_epoch, 0.01)
    assert bot.train.max_steps == 120 * steps_per_epoch


def test_a_two_step_run_of_resnet_bot(parse, tmp_path, market_dir):

    config = parse("--flagfile=flags/resnet_bot.cfg", "--backbone_weights=none", "--image_height=64",
                   "--image_width=32", "--dataset=market1501", f"--data_dir={market_dir}",
                   "--return_id_num=4", "--image_num_every_id=2", "--valid_ids=2", "--train_eval_ids=2",
                   "--max_steps=2", "--eval_every=2", "--checkpoint_every=2", "--warmup_steps=1")
    summary = train_lib.run(config, str(tmp_path / "bot"))
    assert summary["step"] == 2 and np.isfinite(summary["final"]["mAP"])
