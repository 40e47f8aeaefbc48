"""OSNet (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019) in
Keras layers: omni-scale residual bottlenecks whose 1 to 4 streams of lite 3x3 convolutions are
mixed by one unified aggregation gate, with the paper's stem and stage widths (its Table 1).

The layers and their order follow the authors' code (torchreid's `osnet.py`), so a weights file
converted from it loads layer by layer. The network ends at conv5's feature map, like every
backbone here; the paper's 512-d fc layer is a head (`--head`).
"""

from __future__ import annotations

import keras

# Stage widths (conv1, conv2, conv3, conv4 = conv5) of Table 1, and of the width multipliers.
WIDTHS = {
    "osnet_x1_0": (64, 256, 384, 512),
    "osnet_x0_75": (48, 192, 288, 384),
    "osnet_x0_5": (32, 128, 192, 256),
    "osnet_x0_25": (16, 64, 96, 128),
}
BLOCKS_PER_STAGE = 2  # conv2, conv3 and conv4 each hold two OSBlocks
BOTTLENECK_REDUCTION = 4  # an OSBlock's streams run at a quarter of its output width
GATE_REDUCTION = 16  # the aggregation gate's hidden width: channels / 16


@keras.saving.register_keras_serializable("reid_tf")
class ChannelGate(keras.layers.Layer):
    """The unified aggregation gate: channel weights in (0, 1) from the stream's own global
    average (a two-layer MLP as 1x1 convolutions, ReLU, sigmoid), the stream times them. One
    gate is shared by the four streams of an OSBlock: that sharing makes it "unified"."""

    def __init__(self, channels: int, reduction: int = GATE_REDUCTION, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.reduction = channels, reduction
        self.fc1 = keras.layers.Conv2D(channels // reduction, 1, name="fc1")
        self.fc2 = keras.layers.Conv2D(channels, 1, name="fc2")

    def build(self, input_shape):
        pooled = (input_shape[0], 1, 1, input_shape[-1])
        self.fc1.build(pooled)
        self.fc2.build((input_shape[0], 1, 1, self.channels // self.reduction))

    def call(self, x):
        gate = keras.ops.mean(x, axis=(1, 2), keepdims=True)
        gate = keras.ops.sigmoid(self.fc2(keras.ops.relu(self.fc1(gate))))
        return x * gate

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction}


def _conv_bn(x, filters: int, kernel: int, name: str, stride: int = 1, relu: bool = True):
    """Conv (no bias) + BN (+ ReLU): torchreid's ConvLayer / Conv1x1 / Conv1x1Linear. Padding as
    PyTorch's (kernel // 2 on every side), not TensorFlow's asymmetric "same"."""
    if kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _lite_conv(x, filters: int, name: str):
    """LightConv3x3: a linear 1x1 then a depthwise 3x3, BN, ReLU."""
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def os_block(x, filters: int, name: str):
    """The omni-scale residual bottleneck: 1x1 down to filters / 4, four streams of 1 to 4 lite
    3x3 convolutions (receptive fields 3, 5, 7, 9), one shared gate summing them, 1x1 up, and the
    input (projected by a 1x1 where the width changes) added before the final ReLU."""
    mid = filters // BOTTLENECK_REDUCTION
    squeezed = _conv_bn(x, mid, 1, f"{name}_conv1")
    gate = ChannelGate(mid, name=f"{name}_gate")
    streams = []
    for depth in range(1, 5):
        s = squeezed
        for i in range(depth):
            s = _lite_conv(s, mid, f"{name}_conv2{'abcd'[depth - 1]}_{i}")
        streams.append(gate(s))
    x2 = keras.layers.Add(name=f"{name}_aggregate")(streams)
    x3 = _conv_bn(x2, filters, 1, f"{name}_conv3", relu=False)
    if x.shape[-1] != filters:
        x = _conv_bn(x, filters, 1, f"{name}_downsample", relu=False)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([x3, x]))


def osnet(name: str, input_shape: tuple[int, int, int]) -> keras.Model:
    """An OSNet of `WIDTHS[name]` from pixels (already normalised) to conv5's feature map."""
    c1, c2, c3, c4 = WIDTHS[name]
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, c1, 7, "conv1", stride=2)
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)  # after ReLU: zeros pad as -inf would
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (filters, reduce) in enumerate(((c2, True), (c3, True), (c4, False)), start=2):
        for block in range(BLOCKS_PER_STAGE):
            x = os_block(x, filters, f"conv{stage}_{block}")
        if reduce:  # transition: 1x1 conv, then a 2x2 average pool halves the map
            x = _conv_bn(x, filters, 1, f"conv{stage}_transition")
            x = keras.layers.AveragePooling2D(2, name=f"conv{stage}_pool")(x)
    x = _conv_bn(x, c4, 1, "conv5")
    return keras.Model(inputs, x, name=name)
