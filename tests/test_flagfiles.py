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
            "resnet_256.cfg", "resnet_100.cfg"]


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
    others = {"base.cfg", "quickstart.cfg", "quickstart_osnet.cfg", "resnet_bot.cfg"}
    assert set(LOG_ROWS) | others == set(FLAGFILES)


@pytest.mark.parametrize("name", [n for n in FLAGFILES if n != "base.cfg"])
def test_flagfile_parses_and_builds(parse, name):
    config = parse(f"--flagfile=flags/{name}", "--backbone_weights=none", "--image_height=64",
                   "--image_width=32")
    model = model_lib.build_run_model(config)
    out = model_lib.embeddings_of(model(tf.zeros([2, 64, 32, 3]), training=False))
    assert out.shape == (2, config.model.embedding_dim if config.model.head != "none" else 2048)
    if name in LOG_ROWS:  # the log's common settings
        assert config.model.backbone == "resnet50" and config.data.return_id_num == 20
        assert config.data.image_num_every_id == 4 and config.optimizer.decay_steps == 10000
        assert config.loss.margin == "soft" and config.train.max_steps % 1000 == 1


def test_rows_are_faithful(parse):
    def row(name):
        return parse(f"--flagfile=flags/{name}")

    base = row("resnet.cfg")
    assert base.model.trainable == "head" and base.optimizer.decay_rate == 0.1
    assert base.train.max_steps == 20001 and base.data.augment == "basic"
    assert base.model.head_init == "keras_default" and base.model.backbone_weights == "imagenet"
    assert row("resnet_softmax.cfg").model.output_activation == "softmax"
    assert row("resnet_no_pool.cfg").model.pooling == "none"
    fine = row("resnet_finetuning.cfg")
    assert fine.model.trainable == "all" and fine.optimizer.decay_rate == 0.5
    hardest = row("resnet_finetuning_hardest.cfg")
    assert hardest.loss.mining == "batch_hardest" and hardest.optimizer.initial_learning_rate == 1e-6
    assert hardest.train.init_checkpoint == "runs/resnet_finetuning"
    assert row("resnet_noprocess.cfg").data.augment == "none"
    assert row("resnet_enhance.cfg").data.augment == "enhanced"
    rerank = row("resnet_enhance_rerank.cfg")
    assert rerank.train.eval_rerank and rerank.model.head_init == "truncated_normal"
    assert rerank.data.valid_ids > base.data.valid_ids
    fc = row("resnet_fc.cfg")
    assert fc.model.head == "fc" and fc.optimizer.initial_learning_rate == 1e-6
    ide = row("resnet_IDE.cfg")
    assert (ide.data.image_height, ide.data.image_width, ide.optimizer.decay_rate) == (256, 128, 0.3)
    maxpool = row("resnet_maxpool.cfg")
    assert maxpool.model.pooling == "max" and maxpool.model.dropout == 0.5
    assert row("resnet_256.cfg").model.embedding_dim == 256
    assert row("resnet_100.cfg").model.embedding_dim == 100
    assert row("resnet_100.cfg").train.max_steps == 40001


def test_flags_after_the_flagfile_override_it(parse):
    config = parse("--flagfile=flags/resnet.cfg", "--decay_rate=0.7", "--max_steps=5")
    assert config.optimizer.decay_rate == 0.7 and config.train.max_steps == 5


def test_quickstart_uses_the_same_code_with_small_values(parse):
    config = parse("--flagfile=flags/quickstart.cfg")
    assert config.data.dataset == "synthetic" and config.model.backbone == "resnet50"
    assert config.model.backbone_weights == "none" and config.model.neck == "bnneck"
    assert config.train.eval_before_training and config.train.max_steps <= 1000
    osnet = parse("--flagfile=flags/quickstart_osnet.cfg")
    assert osnet.model.backbone == "osnet_x1_0" and osnet.model.backbone_weights == "none"
    assert dataclasses.replace(osnet, model=dataclasses.replace(osnet.model, backbone="resnet50")) == config


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
