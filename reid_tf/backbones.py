"""Backbones by name: the keras.applications networks that suit re-identification, OSNet, and a
small CNN for the tests. Each comes headless (its last feature map), with its batch norm on TF's
fused kernel, BoT's "last stride 1" where its last downsampling is one layer that allows it, and
the name of the preprocessing it expects (done inside the model, so serving takes raw pixels).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Callable

import keras

from reid_tf import osnet, resnet_torch, slim_checkpoint
from reid_tf.errors import ReidError
from reid_tf.fused_bn import FusedBatchNormalization
from reid_tf.registry import Registry


class BackboneError(ReidError, RuntimeError):
    """A backbone that cannot be built as asked; the message is one line naming it."""


class WeightsUnavailableError(BackboneError):
    """Backbone weights could not be had (offline, or a bad file)."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """How to build one backbone: its constructor (input_shape, imagenet, name) -> model, and the
    preprocessing of [0, 255] RGB pixels it was trained with (`model.PixelPreprocessing` modes;
    "none" where the network normalises inside itself)."""

    build: Callable[..., keras.Model]  # (input_shape, imagenet, name, init) -> model
    preprocessing: str
    imagenet: bool = True  # Keras ships ImageNet weights
    layout: Callable[[keras.layers.Layer], keras.layers.Layer] | None = None  # another layout of the same weights
    torch_names: bool = False  # its variables are named as torchreid's / torchvision's state_dict (--backbone_init)


def _keras(constructor, named: bool = True):
    """A keras.applications constructor, headless, its model called `name` (EfficientNetV2 reads
    its own name as its configuration's: it is renamed by a wrapping model instead)."""
    def build(shape, imagenet, name, init="keras"):
        kwargs = {"name": name} if named else {}
        with warnings.catch_warnings():  # MobileNet: "weights for input shape (224, 224) will be loaded"
            warnings.simplefilter("ignore")
            model = constructor(include_top=False, weights="imagenet" if imagenet else None,
                                input_shape=shape, **kwargs)
        return model if named else keras.Model(model.input, model.output, name=name)
    return build


def _slim_layout(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A ResNet v2 layer as TF-slim's `resnet_v2` (the 2017 original's) has it: pool1 pools SAME (on
    even sizes it pads only the bottom and right, and never with zeros) where Keras zero-pads by 1
    and pools VALID, and every batch norm's epsilon is slim's 1e-5 (Keras: 1.001e-5). The weights
    are the same variables, so Keras' ImageNet weights and a Keras ResNet v2 file load into it."""
    if layer.name == "pool1_pad":
        return keras.layers.Identity(name=layer.name)
    changes = {"padding": "same"} if layer.name == "pool1_pool" else {
        "epsilon": 1e-5} if isinstance(layer, keras.layers.BatchNormalization) else {}
    return type(layer).from_config({**layer.get_config(), **changes}) if changes else layer


_apps = keras.applications
REGISTRY: Registry[Spec] = Registry("backbone", "--backbone", BackboneError)
for _name, _constructor, _mode in (
        ("resnet50", _apps.ResNet50, "caffe"), ("resnet101", _apps.ResNet101, "caffe"),
        ("resnet152", _apps.ResNet152, "caffe"), ("resnet50v2", _apps.ResNet50V2, "tf")):
    REGISTRY.register(_name, Spec(_keras(_constructor), _mode))
REGISTRY.register("resnet50v2_slim", Spec(_keras(_apps.ResNet50V2), "tf", layout=_slim_layout))
for _name, _constructor, _mode, _named in (
        ("resnet101v2", _apps.ResNet101V2, "tf", True), ("resnet152v2", _apps.ResNet152V2, "tf", True),
        ("mobilenet_v3_small", _apps.MobileNetV3Small, "none", True),
        ("mobilenet_v3_large", _apps.MobileNetV3Large, "none", True),
        ("efficientnetv2_b0", _apps.EfficientNetV2B0, "none", False),
        ("efficientnetv2_b1", _apps.EfficientNetV2B1, "none", False),
        ("efficientnetv2_b2", _apps.EfficientNetV2B2, "none", False),
        ("efficientnetv2_b3", _apps.EfficientNetV2B3, "none", False),
        ("efficientnetv2_s", _apps.EfficientNetV2S, "none", False),
        ("convnext_tiny", _apps.ConvNeXtTiny, "none", True), ("convnext_small", _apps.ConvNeXtSmall, "none", True),
        ("densenet121", _apps.DenseNet121, "torch", True)):
    REGISTRY.register(_name, Spec(_keras(_constructor, named=_named), _mode))
for _name in osnet.WIDTHS:
    REGISTRY.register(_name, Spec(lambda shape, _, name, init="keras": osnet.osnet(name, shape, init), "torch",
                                  imagenet=False, torch_names=True))
REGISTRY.register("resnet50_torch", Spec(
    lambda shape, _, name, init="keras": resnet_torch.resnet50_torch(shape, init, name), "torch", imagenet=False,
    torch_names=True))
REGISTRY.register("small", Spec(lambda shape, _, name, init="keras": small_backbone(shape), "tf", imagenet=False))
# Layouts of one network that hold the same variables: a weights file of one loads into the other.
SAME_WEIGHTS = {"resnet50v2_slim": "resnet50v2"}

PREPROCESSING_TEXT = {
    "caffe": "caffe (BGR, ImageNet mean removed)",
    "tf": "[-1, 1]",
    "torch": "[0, 1], then the ImageNet mean and standard deviation",
    "none": "the network's own layers (Rescaling / Normalization inside it)",
}


def rebuilt_backbone(model: keras.Model, last_stride: int = 2, batch_norm: str = "train",
                     layout: Callable[[keras.layers.Layer], keras.layers.Layer] | None = None) -> keras.Model:
    """A copy of a network whose BatchNormalization layers use the fused kernel (in mode
    `batch_norm`), and whose last downsampling (the stride-2 layers whose output is the final
    map) has stride `last_stride` (BoT's "last stride 1": a feature map twice as tall and wide;
    the weights are the same, since only strides change). `layout` edits each layer of another layout
    of the same weights (slim's ResNet v2) in the same copy."""
    final = tuple(model.output.shape[1:3])
    last = [layer for layer in model.layers if tuple(getattr(layer, "strides", (1, 1))) == (2, 2)
            and tuple(layer.output.shape[1:3]) == final]
    # Padding made for a stride-2 window (MobileNet's asymmetric pad) becomes k // 2 on each side.
    pads = {} if last_stride == 2 else {
        _producer(layer).name: layer.kernel_size[0] // 2 for layer in last
        if isinstance(_producer(layer), keras.layers.ZeroPadding2D) and hasattr(layer, "kernel_size")}

    windows = [tuple(getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", (3, 3))) for layer in last]
    patchify = any(w == (2, 2) for w in windows)  # a 2x2 window at stride 1 computes something else
    refused = BackboneError(f"--last_stride=1 does not apply to {model.name}: its last downsampling is not one"
                            " stride-2 layer that keeps a map twice as large at stride 1; use --last_stride=2")
    if last_stride == 1 and patchify:  # refused before the copy, which costs seconds
        raise refused

    def clone(layer):
        layer = layout(layer) if layout else layer
        fused = type(layer) in (keras.layers.BatchNormalization, FusedBatchNormalization)
        cls = FusedBatchNormalization if fused else type(layer)
        config = {**layer.get_config(), **({"mode": batch_norm} if fused else {})}
        if layer.name in {changed.name for changed in last}:
            config["strides"] = (last_stride, last_stride)
        if layer.name in pads:
            config["padding"] = ((pads[layer.name],) * 2,) * 2
        return cls.from_config(config)

    if last_stride == 2 and layout is None and not any(type(layer) is keras.layers.BatchNormalization or (
            isinstance(layer, FusedBatchNormalization) and layer.mode != batch_norm) for layer in model.layers):
        return model  # built on the fused kernel in this mode (OSNet, torchvision's ResNet): no copy
    rebuilt = keras.models.clone_model(model, clone_function=clone)
    grown = tuple(rebuilt.output.shape[1:3])  # twice the map, less one where a size was odd
    if last_stride == 1 and not all(2 * f - 1 <= g <= 2 * f for f, g in zip(final, grown)):
        raise refused
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _producer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer whose output a layer takes (its first input)."""
    return layer._inbound_nodes[0].input_tensors[0]._keras_history.operation


def small_backbone(input_shape: tuple[int, int, int]) -> keras.Model:
    """A 4-stage CNN (conv-BN-ReLU x2, pool): learns the synthetic data on a CPU in minutes."""
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, filters in enumerate((32, 64, 128, 256), 1):  # named: a weights file loads by name
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage}_{i}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{stage}_{i}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    return keras.Model(inputs, x, name="small")


def torch_named() -> tuple[str, ...]:
    """The backbones whose weights torchreid's and torchvision's checkpoints convert into."""
    return tuple(n for n, spec in REGISTRY.items() if spec.torch_names)


def preprocessing(name: str) -> str:
    """The preprocessing mode the backbone expects."""
    return REGISTRY[name].preprocessing


def build_backbone(name: str, weights: str, input_shape: tuple[int, int, int],
                   last_stride: int = 2, batch_norm: str = "train", init: str = "keras") -> keras.Model:
    """A headless backbone returning its last feature map; weights: imagenet, none or a path;
    `batch_norm`: how its batch norm trains (--backbone_bn); `init`: --backbone_init."""
    spec, imagenet = REGISTRY.lookup(name), weights == "imagenet"
    if last_stride not in (1, 2):
        raise BackboneError(f"--last_stride={last_stride}: 1 or 2")
    if last_stride != 2 and name == "small":
        raise BackboneError("--last_stride=1 does not apply to small: use --last_stride=2")
    if min(input_shape[:2]) < 32:
        raise BackboneError(f"input {input_shape[0]}x{input_shape[1]} is too small for {name}: need >= 32 px")
    if imagenet and not spec.imagenet:
        raise WeightsUnavailableError(
            f"{name} has no ImageNet weights in Keras: use --backbone_weights=none (from scratch) or a"
            " weights file: a PyTorch checkpoint converted by tools/convert_torchreid.py, or the backbone of a run"
            " trained here (python -m reid_tf.export --output_dir=RUN --export_dir=DIR --format=backbone)")
    try:
        backbone = spec.build(input_shape, imagenet, name, init)
    except Exception as e:  # noqa: BLE001 - Keras raises plain Exception on a failed download
        if not imagenet:
            raise
        url = re.search(r"https?://\S+?\.h5", str(e))
        source = f" from {url.group(0)}" if url else f" ({str(e).splitlines()[0][:120]})"
        raise WeightsUnavailableError(
            f"could not download the ImageNet weights of {name}{source}; offline? use"
            " --backbone_weights=none|PATH (a .weights.h5 of the backbone: see the README)"
        ) from None
    if weights not in ("imagenet", "none"):
        load_backbone_weights(backbone, weights, name, input_shape)
    return rebuilt_backbone(backbone, last_stride, batch_norm, spec.layout)


# A backbone weights file written by `save_backbone_weights` says what it holds (HDF5 attributes).
_FILE_BACKBONE, _FILE_INPUT = "reid_tf_backbone", "reid_tf_input_shape"


def _size(shape) -> str:
    return f"{int(shape[0])}x{int(shape[1])}"


def load_backbone_weights(backbone: keras.Model, path: str, name: str,
                          input_shape: tuple[int, int, int]) -> None:
    """Load a `.weights.h5` of the backbone (from keras.applications, or a run's
    `--format=backbone` export), or a TF1 checkpoint of slim's resnet_v2_50 (its prefix); a file of
    another backbone or input size is refused in one line."""
    if slim_checkpoint.is_checkpoint(path):  # a TF1 checkpoint of slim's resnet_v2_50
        try:
            return slim_checkpoint.load_backbone(backbone, path)
        except slim_checkpoint.SlimCheckpointError as e:
            raise WeightsUnavailableError(f"--backbone_weights={path}: {e}") from None
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"backbone weights file {path} not found: use --backbone_weights=none|PATH")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            theirs = f.attrs.get(_FILE_BACKBONE)
            their_shape = f.attrs.get(_FILE_INPUT)
    except OSError:
        raise WeightsUnavailableError(f"backbone weights {path} is not a Keras .weights.h5 file") from None
    if theirs is not None:
        theirs = theirs.decode() if isinstance(theirs, bytes) else str(theirs)
        same = SAME_WEIGHTS.get(theirs, theirs) == SAME_WEIGHTS.get(name, name)
        if not same or (their_shape is not None and _size(their_shape) != _size(input_shape)):
            raise WeightsUnavailableError(
                f"backbone weights {path} are {theirs} at {_size(their_shape)}; this run builds {name}"
                f" at {_size(input_shape)}: export the backbone of a run like this one, or change"
                " --backbone or --image_height/--image_width")
    try:
        with warnings.catch_warnings():  # Keras warns once per layer before it raises: one line instead
            warnings.simplefilter("ignore")
            backbone.load_weights(path)
    except Exception as e:  # noqa: BLE001
        raise WeightsUnavailableError(
            f"cannot load backbone weights {path} into {name}: {str(e).splitlines()[0][:200]}"
        ) from None


def save_backbone_weights(backbone: keras.Model, name: str, input_shape: tuple[int, int, int],
                          path: str, record_size: bool = True) -> None:
    """Write a backbone's weights as its library lays them out (plain BatchNormalization layers),
    so the file loads into keras.applications' network and into `--backbone_weights`; the
    backbone's name goes with it, and its input size unless `record_size` is False (weights
    converted from another toolbox serve any size)."""
    import h5py

    plain = backbone
    if any(isinstance(layer, FusedBatchNormalization) for layer in backbone.layers):
        plain = plain_backbone(name, input_shape)
        plain.set_weights(backbone.get_weights())
    plain.save_weights(path)
    with h5py.File(path, "a") as f:
        f.attrs[_FILE_BACKBONE] = name
        if record_size:
            f.attrs[_FILE_INPUT] = list(input_shape)


def plain_backbone(name: str, input_shape: tuple[int, int, int]) -> keras.Model:
    """The backbone network as its library builds it, without weights (Keras' own layers)."""
    return REGISTRY[name].build(input_shape, False, name)


def backbone_of(model: keras.Model) -> keras.Model:
    """The backbone network inside a run's model."""
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        raise ValueError(f"{model.name} holds {len(inner)} nested networks, not one backbone")
    return inner[0]
