"""The PyTorch zoos: torchreid's OSNet, OSNet-IBN and OSNet-AIN and torchvision's ResNet-50 with
random weights and random BN statistics, converted by tools/convert_torchreid.py's mapping, embed
as torchreid's own modules do at 256x128 (its files loaded by `torchreid_models`)."""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
import torch  # noqa: E402
import torchreid_models  # noqa: E402
import warm_python
from helpers import REPO  # noqa: E402

from reid_tf import (  # noqa: E402
    backbones,  # noqa: E402
    osnet,
    torch_convert,
    torch_zoo,
)
from reid_tf import config as C  # noqa: E402
from reid_tf import model as M  # noqa: E402

ZOO = list(backbones.torch_named())
SIZE = (256, 128, 3)


def _checkpoint(net, path, extra=None):
    """As torchreid saves one: {"state_dict": ...} of a DataParallel model (`module.` keys)."""
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": {**state, **(extra or {})}, "epoch": 60}, path)
    return path


@pytest.mark.parametrize("backbone", ZOO)
def test_converted_checkpoint_embeds_as_torchreid(backbone, tmp_path):
    net = torchreid_models.build(backbone)
    fc = backbone.startswith("osnet")
    ckpt = _checkpoint(net, tmp_path / "model.pth.tar")
    weights, head = str(tmp_path / "b.weights.h5"), str(tmp_path / "h.weights.h5")
    lines = torch_convert.convert(str(ckpt), backbone, weights, "fc512" if fc else "none", head)
    assert any("left out" in line and "classifier" in line for line in lines)
    model = M.build_model(SIZE, C.ModelConfig(backbone=backbone, backbone_weights=weights,
                                              head="fc512" if fc else "none", head_weights=head if fc else None))
    images = np.random.default_rng(7).uniform(0, 255, (2, *SIZE)).astype(np.float32)
    ours = M.embeddings_of(model(images, training=False)).numpy()
    theirs = torchreid_models.embed(net, images)
    assert ours.shape == theirs.shape == (2, 512 if fc else 2048)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    trainable = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("classifier"))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable


def test_bot_last_stride_one_matches(tmp_path):
    """BoT's ResNet-50: torchvision's layout with layer4's stride 1 (its conv2 and downsample)."""
    net = torchreid_models.build("resnet50_torch", last_stride=1)
    weights = str(tmp_path / "b.weights.h5")
    torch_convert.convert(str(_checkpoint(net, tmp_path / "bot.pth")), "resnet50_torch", weights)
    model = M.build_model((128, 64, 3), C.ModelConfig(backbone="resnet50_torch", backbone_weights=weights,
                                                      head="none", last_stride=1))
    images = np.random.default_rng(3).uniform(0, 255, (2, 128, 64, 3)).astype(np.float32)
    ours, theirs = model(images, training=False).numpy(), torchreid_models.embed(net, images)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_another_architecture_refused_naming_both(tmp_path):
    ckpt = str(_checkpoint(torchreid_models.build("osnet_ain_x0_25"), tmp_path / "ain.pth"))
    with pytest.raises(torch_zoo.ZooError) as e:
        torch_convert.convert(ckpt, "osnet_x0_25", str(tmp_path / "w.weights.h5"))
    assert "holds osnet_ain_x0_25, not --backbone=osnet_x0_25" in str(e.value) and "\n" not in str(e.value)
    torch.save({"state_dict": {"features.0.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(torch_zoo.ZooError, match="is no torchreid OSNet nor torchvision ResNet-50"):
        torch_convert.convert(str(tmp_path / "other.pth"), "osnet_x1_0", str(tmp_path / "w.weights.h5"))
    assert not os.path.exists(tmp_path / "w.weights.h5")


def test_tool_command_line(tmp_path):
    """The fixed command line: module. stripped, classifier dropped in one line, a file that
    --backbone_weights takes; the wrong --backbone is one line on stderr."""
    ckpt = str(_checkpoint(torchreid_models.build("osnet_x0_25"), tmp_path / "m.pth.tar"))
    tool = os.path.join(REPO, "tools", "convert_torchreid.py")
    ok = warm_python.run([sys.executable, tool, ckpt, "--backbone=osnet_x0_25", f"--output={tmp_path}/o.weights.h5"],
                        capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "left out classifier (2 weights), fc (6 weights): training-only; --head=fc512 keeps fc" in ok.stdout
    from reid_tf import backbones

    backbones.build_backbone("osnet_x0_25", f"{tmp_path}/o.weights.h5", (64, 32, 3))  # any size takes it
    bad = warm_python.run([sys.executable, tool, ckpt, "--backbone=osnet_x1_0", f"--output={tmp_path}/x.weights.h5"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"error: {ckpt} holds osnet_x0_25, not --backbone=osnet_x1_0: pass --backbone=osnet_x0_25"]


@pytest.mark.parametrize("shape,depthwise", [((3, 3, 64, 128), False), ((1, 1, 256, 64), False),
                                             ((3, 3, 96, 1), True)])
def test_torchreid_init_matches_kaiming_fan_out(shape, depthwise):
    """--backbone_init=torchreid draws as torch.nn.init.kaiming_normal_(mode="fan_out")."""
    torch_shape = (shape[2], 1, *shape[:2]) if depthwise else (shape[3], shape[2], *shape[:2])
    theirs = torch.nn.init.kaiming_normal_(torch.empty(torch_shape), mode="fan_out", nonlinearity="relu")
    ours = np.asarray(osnet.TorchKaimingFanOut(depthwise, seed=1)(shape))
    assert abs(ours.std() / theirs.std().item() - 1) < 0.05


def test_torchreid_init_reaches_the_model():
    model = M.build_model((64, 32, 3), C.ModelConfig(backbone="osnet_x0_25", backbone_weights="none",
                                                     backbone_init="torchreid"))
    kernel = np.asarray(M.backbone_of(model).get_layer("conv2_0_conv2a_0_dw").kernel)
    assert abs(kernel.std() / (2.0 / (9 * kernel.shape[2])) ** 0.5 - 1) < 0.1
