"""torchvision's ResNet-50 (the "v1.5" layout: a bottleneck's stride in its 3x3 convolution, not in
its first 1x1 as in Keras' ResNet50), in Keras layers named as torchvision's state_dict: the
backbone of BoT and fast-reid, whose checkpoints convert to it by name (`torch_zoo.py`)."""

from __future__ import annotations

import keras

from reid_tf.fused_bn import FusedBatchNormalization
from reid_tf.osnet import TorchKaimingFanOut

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # width, blocks, first stride
EXPANSION = 4


def _conv(x, filters: int, kernel: int, stride: int, name: str, init: str):
    """PyTorch's Conv2d(padding=kernel // 2, bias=False): explicit symmetric padding."""
    if kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    initializer = TorchKaimingFanOut() if init == "torchreid" else "glorot_uniform"
    return keras.layers.Conv2D(filters, kernel, strides=stride, use_bias=False, kernel_initializer=initializer,
                               name=name)(x)


def _bn(x, name: str):
    return FusedBatchNormalization(epsilon=1e-5, momentum=0.9, name=name)(x)


def bottleneck(x, width: int, stride: int, name: str, init: str):
    """conv1 1x1, conv2 3x3 (the stride), conv3 1x1 to 4 x width, each with its BN; a projected
    shortcut (downsample.0 conv, downsample.1 BN) where the shape changes; ReLU after the sum."""
    out = keras.layers.ReLU(name=f"{name}_relu1")(_bn(_conv(x, width, 1, 1, f"{name}_conv1", init), f"{name}_bn1"))
    out = keras.layers.ReLU(name=f"{name}_relu2")(_bn(_conv(out, width, 3, stride, f"{name}_conv2", init),
                                                      f"{name}_bn2"))
    out = _bn(_conv(out, width * EXPANSION, 1, 1, f"{name}_conv3", init), f"{name}_bn3")
    if stride != 1 or x.shape[-1] != width * EXPANSION:
        x = _bn(_conv(x, width * EXPANSION, 1, stride, f"{name}_downsample_0", init), f"{name}_downsample_1")
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([out, x]))


def resnet50_torch(input_shape: tuple[int, int, int], init: str = "keras", name: str = "resnet50_torch") -> keras.Model:
    """Normalised pixels -> layer4's 2048-channel map, as torchvision.models.resnet50 computes it."""
    inputs = keras.Input(input_shape)
    x = keras.layers.ReLU(name="relu")(_bn(_conv(inputs, 64, 7, 2, "conv1", init), "bn1"))
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)  # after ReLU: zeros pad as -inf would
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (width, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            x = bottleneck(x, width, stride if block == 0 else 1, f"layer{stage}_{block}", init)
    return keras.Model(inputs, x, name=name)
