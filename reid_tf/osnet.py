"""OSNet (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019) in
Keras layers: omni-scale residual bottlenecks whose 1 to 4 streams of lite 3x3 convolutions are
mixed by one unified aggregation gate, with the paper's stem and stage widths (its Table 1); and
the cross-domain variants of torchreid (Zhou et al., TPAMI 2021): OSNet-IBN, instance
normalisation in the stem and after conv2's residual additions, and OSNet-AIN, instance
normalisation inside the residual branch of the blocks its architecture search chose.

The layers and their order follow the authors' code (torchreid's `osnet.py` and `osnet_ain.py`);
each layer is named for the part of torchreid's state_dict it holds (`torch_zoo.py` maps them).
The network ends at conv5's feature map, like every backbone here; the paper's 512-d fc layer is
the head `--head=fc512`.
"""

from __future__ import annotations

import keras

from reid_tf.fused_bn import FusedBatchNormalization

# Stage widths (conv1, conv2, conv3, conv4 = conv5) of Table 1, and of the width multipliers.
WIDTHS = {
    "osnet_x1_0": (64, 256, 384, 512),
    "osnet_x0_75": (48, 192, 288, 384),
    "osnet_x0_5": (32, 128, 192, 256),
    "osnet_x0_25": (16, 64, 96, 128),
}
WIDTHS.update({"osnet_ibn_x1_0": WIDTHS["osnet_x1_0"]})
WIDTHS.update({name.replace("osnet_", "osnet_ain_"): WIDTHS[name] for name in list(WIDTHS) if "ibn" not in name})
# Per stage (conv2, conv3, conv4), which blocks hold instance normalisation: "after" the residual
# addition (IBN), "inside" the residual branch (AIN's OSBlockINin), or none.
INSTANCE_NORM = {"ibn": (("after", "after"), (None, None), (None, None)),
                 "ain": (("inside", "inside"), (None, "inside"), ("inside", None))}
BLOCKS_PER_STAGE = 2  # conv2, conv3 and conv4 each hold two OSBlocks
BOTTLENECK_REDUCTION = 4  # an OSBlock's streams run at a quarter of its output width
GATE_REDUCTION = 16  # the aggregation gate's hidden width: channels / 16


@keras.saving.register_keras_serializable("reid_tf")
class ChannelGate(keras.layers.Layer):
    """The unified aggregation gate: channel weights in (0, 1) from the stream's own global
    average (a two-layer MLP as 1x1 convolutions, ReLU, sigmoid), the stream times them. One
    gate is shared by the four streams of an OSBlock: that sharing makes it "unified"."""

    def __init__(self, channels: int, reduction: int = GATE_REDUCTION, init: str = "keras", **kwargs):
        super().__init__(**kwargs)
        self.channels, self.reduction, self.init = channels, reduction, init
        self.fc1 = keras.layers.Conv2D(channels // reduction, 1, kernel_initializer=_kernel(init), name="fc1")
        self.fc2 = keras.layers.Conv2D(channels, 1, kernel_initializer=_kernel(init), name="fc2")

    def build(self, input_shape):
        pooled = (input_shape[0], 1, 1, input_shape[-1])
        self.fc1.build(pooled)
        self.fc2.build((input_shape[0], 1, 1, self.channels // self.reduction))

    def call(self, x):
        gate = keras.ops.mean(x, axis=(1, 2), keepdims=True)
        gate = keras.ops.sigmoid(self.fc2(keras.ops.relu(self.fc1(gate))))
        return x * gate

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction, "init": self.init}


@keras.saving.register_keras_serializable("reid_tf")
class TorchKaimingFanOut(keras.initializers.Initializer):
    """torchreid's init of convolutions: kaiming_normal_(mode="fan_out", nonlinearity="relu"),
    std sqrt(2 / fan_out) with PyTorch's fan_out: out channels x kernel area (for a depthwise
    kernel [h, w, C, 1], C x h x w, not Keras' h x w)."""

    def __init__(self, depthwise: bool = False, seed: int | None = None):
        self.depthwise, self.seed = depthwise, seed

    def __call__(self, shape, dtype=None):
        fan_out = shape[0] * shape[1] * (shape[2] if self.depthwise else shape[3])
        return keras.random.normal(shape, stddev=(2.0 / fan_out) ** 0.5, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"depthwise": self.depthwise, "seed": self.seed}


def _kernel(init: str, depthwise: bool = False):
    return TorchKaimingFanOut(depthwise) if init == "torchreid" else "glorot_uniform"


def instance_norm(name: str):
    """InstanceNorm2d(affine=True): each image's channel normalised over its positions."""
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def _conv_bn(x, filters: int, kernel: int, name: str, stride: int = 1, relu: bool = True, init: str = "keras",
             norm: str = "bn"):
    """Conv (no bias) + BN (+ ReLU): torchreid's ConvLayer / Conv1x1 / Conv1x1Linear (`norm="in"`:
    instance norm instead; "none": the bare conv). Padding as PyTorch's (kernel // 2 on every
    side), not TensorFlow's asymmetric "same"."""
    if kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, kernel, strides=stride, use_bias=False, kernel_initializer=_kernel(init),
                            name=f"{name}_conv")(x)
    if norm == "bn":
        x = FusedBatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
    elif norm == "in":
        x = instance_norm(f"{name}_in")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _lite_conv(x, filters: int, name: str, init: str = "keras"):
    """LightConv3x3: a linear 1x1 then a depthwise 3x3, BN, ReLU."""
    x = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=_kernel(init), name=f"{name}_pw")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, depthwise_initializer=_kernel(init, True),
                                     name=f"{name}_dw")(x)
    x = FusedBatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def os_block(x, filters: int, name: str, instance: str | None = None, init: str = "keras"):
    """The omni-scale residual bottleneck: 1x1 down to filters / 4, four streams of 1 to 4 lite
    3x3 convolutions (receptive fields 3, 5, 7, 9), one shared gate summing them, 1x1 up, and the
    input (projected by a 1x1 where the width changes) added before the final ReLU. `instance`:
    instance norm "after" the addition (IBN) or "inside" the branch in place of conv3's BN (AIN)."""
    mid = filters // BOTTLENECK_REDUCTION
    squeezed = _conv_bn(x, mid, 1, f"{name}_conv1", init=init)
    gate = ChannelGate(mid, init=init, name=f"{name}_gate")
    streams = []
    for depth in range(1, 5):
        s = squeezed
        for i in range(depth):
            s = _lite_conv(s, mid, f"{name}_conv2{'abcd'[depth - 1]}_{i}", init)
        streams.append(gate(s))
    x2 = keras.layers.Add(name=f"{name}_aggregate")(streams)
    x3 = _conv_bn(x2, filters, 1, f"{name}_conv3", relu=False, init=init,
                  norm="none" if instance == "inside" else "bn")
    if instance == "inside":
        x3 = instance_norm(f"{name}_in")(x3)
    if x.shape[-1] != filters:
        x = _conv_bn(x, filters, 1, f"{name}_downsample", relu=False, init=init)
    out = keras.layers.Add(name=f"{name}_add")([x3, x])
    if instance == "after":
        out = instance_norm(f"{name}_in")(out)
    return keras.layers.ReLU(name=f"{name}_out")(out)


def variant(name: str) -> str | None:
    """"ibn", "ain" or None (the plain OSNet)."""
    return "ibn" if "_ibn_" in name else "ain" if "_ain_" in name else None


def osnet(name: str, input_shape: tuple[int, int, int], init: str = "keras") -> keras.Model:
    """An OSNet of `WIDTHS[name]` from pixels (already normalised) to conv5's feature map; `init`:
    Keras' initialisers, or torchreid's ("torchreid")."""
    c1, c2, c3, c4 = WIDTHS[name]
    instance = INSTANCE_NORM.get(variant(name), ((None,) * BLOCKS_PER_STAGE,) * 3)
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, c1, 7, "conv1", stride=2, init=init, norm="in" if variant(name) else "bn")
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)  # after ReLU: zeros pad as -inf would
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (filters, reduce) in enumerate(((c2, True), (c3, True), (c4, False)), start=2):
        for block in range(BLOCKS_PER_STAGE):
            x = os_block(x, filters, f"conv{stage}_{block}", instance[stage - 2][block], init)
        if reduce:  # transition: 1x1 conv, then a 2x2 average pool halves the map
            x = _conv_bn(x, filters, 1, f"conv{stage}_transition", init=init)
            x = keras.layers.AveragePooling2D(2, name=f"conv{stage}_pool")(x)
    x = _conv_bn(x, c4, 1, "conv5", init=init)
    return keras.Model(inputs, x, name=name)
