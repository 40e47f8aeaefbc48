"""torchreid's own model files (`osnet.py`, `osnet_ain.py`, `resnet.py`), loaded by path from the
installed torchreid package: its `__init__` imports torchvision and its data tools, which the
model files themselves do not need. The tests and benchmarks compare our networks with these."""

from __future__ import annotations

import importlib.util
import os

MODULE_OF = {"osnet_ain": "osnet_ain", "osnet": "osnet", "resnet50_torch": "resnet"}


def module(name: str):
    """torchreid.reid.models.<name> without importing the torchreid package."""
    spec = importlib.util.find_spec("torchreid")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchreid is not installed: pip install -e '.[test]'")
    path = os.path.join(spec.submodule_search_locations[0], "reid", "models", f"{name}.py")
    loaded = importlib.util.spec_from_file_location(f"torchreid_{name}", path)
    mod = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(mod)
    return mod


def build(backbone: str, seed: int = 0, last_stride: int = 2):
    """torchreid's network of `backbone` in eval mode, every weight and BN statistic random
    (its ResNet-50 is torchvision's, with `last_stride` and without an fc)."""
    import torch

    torch.manual_seed(seed)
    family = next(v for k, v in MODULE_OF.items() if backbone.startswith(k))
    mod = module(family)
    if family == "resnet":
        net = mod.ResNet(num_classes=10, loss="softmax", block=mod.Bottleneck, layers=[3, 4, 6, 3],
                         last_stride=last_stride, fc_dims=None, dropout_p=None)
    else:
        net = getattr(mod, backbone)(num_classes=10, pretrained=False, loss="softmax")
    randomise(net)
    return net.eval()


def randomise(net) -> None:
    """Random weights and random BN statistics, so a swapped or mis-transposed tensor shows."""
    import torch

    with torch.no_grad():
        for name, p in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand_like(p) * 1.5 + 0.5)
            elif name.endswith(("running_mean", "bias")):
                p.copy_(torch.randn_like(p) * 0.1)
            elif p.dim() == 1:  # BN / IN scale
                p.copy_(torch.rand_like(p) + 0.5)
            else:  # fan-in scaled, so activations stay O(1) through 50 layers
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) * (2.0 / fan_in) ** 0.5)


def embed(net, images_nhwc_255) -> object:
    """The torch network's eval output (OSNet: its fc512 embedding) for [0, 255] NHWC pixels."""
    import numpy as np
    import torch

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((images_nhwc_255 / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()
