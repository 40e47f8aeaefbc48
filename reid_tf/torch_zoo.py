"""PyTorch re-ID checkpoints as Keras weights, mapped by name, never by position: torchreid's OSNet,
OSNet-IBN and OSNet-AIN (`osnet.py`, `osnet_ain.py`), and torchvision's ResNet-50 (the backbone of
torchvision, BoT and fast-reid). Every Keras weight of the backbone is named for the state_dict
entry it takes (the ten lite convolutions of an OSBlock all have one shape: only names tell them
apart), and a checkpoint of another architecture is refused in one line naming both.
"""

from __future__ import annotations

import re

import numpy as np

from reid_tf.errors import ReidError

PREFIXES = ("module.", "base.", "backbone.")  # DataParallel, BoT, fast-reid
HEAD_PREFIXES = ("classifier.", "bottleneck.", "heads.")  # training-only heads
FC = "fc."  # torchreid's 512-d fc (Linear, BatchNorm1d): the --head=fc512 head


class ZooError(ReidError, ValueError):
    """A checkpoint that cannot become these weights; one line naming it and what to do."""


def torch_key(layer: str, backbone: str) -> str:
    """The state_dict prefix of the Keras layer `layer` of `backbone` (its weights' names follow)."""
    if backbone == "resnet50_torch":
        return layer.replace("_", ".")
    ain = "_ain_" in backbone
    m = re.fullmatch(r"conv(\d)_(\d)_conv2([abcd])_(\d)_(pw|dw|bn)", layer)
    if m:
        stage, block, stream, i, part = m.groups()
        sub = {"pw": "conv1", "dw": "conv2", "bn": "bn"}[part]
        t = "abcd".index(stream)
        if ain:
            return f"conv{stage}.{block}.conv2.{t}.layers.{i}.{sub}"
        return f"conv{stage}.{block}.conv2a.{sub}" if t == 0 else f"conv{stage}.{block}.conv2{stream}.{i}.{sub}"
    m = re.fullmatch(r"conv(\d)_(\d)_(conv1|conv3|downsample)_(conv|bn)", layer)
    if m:
        return f"conv{m[1]}.{m[2]}.{m[3]}.{m[4]}"
    m = re.fullmatch(r"conv(\d)_(\d)_(gate|in)", layer)
    if m:
        return f"conv{m[1]}.{m[2]}.{'gate' if m[3] == 'gate' else 'IN'}"
    m = re.fullmatch(r"conv(\d)_transition_(conv|bn)", layer)
    if m:
        return f"pool{m[1]}.0.{m[2]}" if ain else f"conv{m[1]}.2.0.{m[2]}"
    m = re.fullmatch(r"conv([15])_(conv|bn|in)", layer)
    if m:
        return f"conv{m[1]}.{'conv' if m[2] == 'conv' else 'bn'}"  # the stem's IN sits where its BN would
    raise ZooError(f"no torchreid name for layer {layer} of {backbone}")


def _entries(layer) -> list[tuple[str, object, callable]]:
    """(state_dict suffix, Keras variable, torch array -> Keras array) of one layer's weights."""
    import keras

    kind = type(layer)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [("weight", layer.kernel, lambda w: w.transpose(2, 3, 0, 1))]
    if isinstance(layer, keras.layers.Conv2D):
        out = [("weight", layer.kernel, lambda w: w.transpose(2, 3, 1, 0))]
        return out + ([("bias", layer.bias, lambda b: b)] if layer.use_bias else [])
    if isinstance(layer, keras.layers.BatchNormalization):
        same = lambda a: a  # noqa: E731
        return [("weight", layer.gamma, same), ("bias", layer.beta, same), ("running_mean", layer.moving_mean, same),
                ("running_var", layer.moving_variance, same)]
    if isinstance(layer, keras.layers.GroupNormalization):
        return [("weight", layer.gamma, lambda a: a), ("bias", layer.beta, lambda a: a)]
    if kind.__name__ == "ChannelGate":
        return [(f"{fc}.{suffix}", var, fn) for fc in ("fc1", "fc2")
                for suffix, var, fn in _entries(getattr(layer, fc))]
    return []


def mapping(backbone_model, backbone: str) -> list[tuple[str, object, callable]]:
    """Every weight of a built backbone as (its state_dict key, the variable, the transform)."""
    return [(f"{torch_key(layer.name, backbone)}.{suffix}", var, fn)
            for layer in backbone_model.layers for suffix, var, fn in _entries(layer)]


def clean(state: dict) -> tuple[dict, list[str]]:
    """The state_dict without wrapper prefixes, BN's step counters and training-only heads; returns
    the (bare) names of the heads' weights it dropped."""
    out, dropped = {}, []
    for key, value in state.items():
        bare = key
        for prefix in PREFIXES:
            bare = bare[len(prefix):] if bare.startswith(prefix) else bare
        if bare.endswith("num_batches_tracked"):
            continue
        if bare.startswith(HEAD_PREFIXES):
            dropped.append(bare)
        else:
            out[bare] = np.asarray(value)
    return out, dropped


def guess(state: dict) -> str | None:
    """The backbone a cleaned state_dict looks like, from its names and its stem's width (to be
    confirmed by `matches`)."""
    if "layer1.0.conv1.weight" in state:
        return "resnet50_torch"
    stem = state.get("conv1.conv.weight")
    width = {64: "x1_0", 48: "x0_75", 32: "x0_5", 16: "x0_25"}.get(None if stem is None else stem.shape[0])
    if width is None:
        return None
    if any(".layers." in k for k in state):
        return f"osnet_ain_{width}"
    return f"osnet_ibn_{width}" if "conv2.0.IN.weight" in state else f"osnet_{width}"


def mismatches(backbone_model, backbone: str, state: dict) -> tuple[list[str], list[str]]:
    """The backbone's state_dict keys a cleaned state_dict lacks, and those of another shape."""
    entries = mapping(backbone_model, backbone)
    missing = [k for k, _, _ in entries if k not in state]
    wrong = [k for k, var, fn in entries if k in state and tuple(fn(state[k]).shape) != tuple(var.shape)]
    return missing, wrong


def load_state(backbone_model, backbone: str, state: dict, source: str) -> list[str]:
    """Assign a cleaned state_dict to a built backbone; returns the keys it did not use."""
    entries = mapping(backbone_model, backbone)
    missing, wrong = mismatches(backbone_model, backbone, state)
    if missing or wrong:
        raise ZooError(f"{source} is not a {backbone}: {len(missing)} of its weights missing, {len(wrong)} of"
                       f" another shape (first: {(missing or wrong)[0]})")
    for key, var, fn in entries:
        var.assign(fn(state[key]).astype(np.float32))
    used = {k for k, _, _ in entries}
    return [k for k in state if k not in used]


def fc_arrays(state: dict) -> dict[str, np.ndarray]:
    """torchreid's fc (fc.0 Linear, fc.1 BatchNorm1d) as the fc512 head's Keras arrays."""
    names = {"fc1/kernel": ("fc.0.weight", np.transpose), "fc1/bias": ("fc.0.bias", None),
             "fc1_bn/gamma": ("fc.1.weight", None), "fc1_bn/beta": ("fc.1.bias", None),
             "fc1_bn/moving_mean": ("fc.1.running_mean", None), "fc1_bn/moving_variance": ("fc.1.running_var", None)}
    missing = [k for k, _ in names.values() if k not in state]
    if missing:
        raise ZooError(f"the checkpoint has no 512-d fc head ({missing[0]} missing): drop --head=fc512")
    return {name: (fn(state[key]) if fn else state[key]).astype(np.float32) for name, (key, fn) in names.items()}


def save_head_weights(path: str, arrays: dict[str, np.ndarray]) -> None:
    """The fc512 head's weights (`fc_arrays`) as an HDF5 file, one dataset each."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["reid_tf_head"] = "fc512"
        for name, array in arrays.items():
            f[name] = array


def load_head_weights(model, path: str) -> None:
    """Load a `save_head_weights` file into a --head=fc512 model's fc1 and fc1_bn."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            arrays = {name: f[name][()] for name in ("fc1/kernel", "fc1/bias", "fc1_bn/gamma", "fc1_bn/beta",
                                                    "fc1_bn/moving_mean", "fc1_bn/moving_variance")}
    except (OSError, KeyError) as e:
        raise ZooError(f"--head_weights={path} is not an fc512 head file ({e}): make one with"
                       " tools/convert_torchreid.py --head=fc512 --head_output=FILE") from None
    fc, bn = model.get_layer("fc1"), model.get_layer("fc1_bn")
    if tuple(fc.kernel.shape) != arrays["fc1/kernel"].shape:
        raise ZooError(f"--head_weights={path} holds an fc of {arrays['fc1/kernel'].shape}, this model's is"
                       f" {tuple(fc.kernel.shape)}")
    fc.kernel.assign(arrays["fc1/kernel"])
    fc.bias.assign(arrays["fc1/bias"])
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        getattr(bn, name).assign(arrays[f"fc1_bn/{name}"])


def read_checkpoint(path: str) -> dict:
    """A PyTorch checkpoint's state_dict as numpy arrays (torchreid's {"state_dict": ...} too)."""
    try:
        import torch
    except ImportError:
        raise ZooError("reading a PyTorch checkpoint needs torch: pip install torch (its CPU build is enough)") \
            from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise ZooError(f"{path}: not a PyTorch checkpoint ({str(e).splitlines()[0][:120]})") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ZooError(f"{path} holds no state_dict")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}
