"""int8 LiteRT files that XNNPACK, LiteRT's fast CPU delegate, can take whole.

XNNPACK creates an int8 convolution or fully-connected operator only when its requantisation scale
(input scale x filter scale / output scale, per output channel) is below 256 (its operator
constructors refuse the rest), and then LiteRT runs the whole model on its builtin kernels, several
times slower. Calibration gives an almost constant tensor a tiny scale: OSNet x0_25's aggregation
gates have one hidden unit, near zero on most images, so their first 1x1 convolution fails that
test. Widening such an output's scale until the product fits costs that tensor resolution it never
used (its calibrated range is kept inside the new one); every consumer reads the tensor's scale, so
the graph stays consistent.
"""

from __future__ import annotations

import numpy as np

LIMIT = 256.0  # XNNPACK: requantization scale must be < 256
TARGET = 255.0  # what a widened scale aims at, below the limit
# Builtin operator codes (LiteRT's schema) of the ops whose requantisation XNNPACK checks so.
CONV_LIKE = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED", 67: "TRANSPOSE_CONV"}
_PASSES = 4  # a widened output raises its consumers' scales: check again


def _scale(tensor) -> np.ndarray | None:
    q = tensor.quantization
    return None if q is None or q.scale is None or not len(q.scale) else np.asarray(q.scale, np.float64)


def too_fine(model) -> list[tuple[int, float]]:
    """(output tensor index, requantisation scale) of each conv-like op over XNNPACK's limit."""
    out = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in CONV_LIKE:
                continue
            x, w, y = (_scale(subgraph.tensors[i]) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
            if x is None or w is None or y is None:
                continue  # a float op
            requant = float((x[0] * w / y[0]).max())
            if requant >= LIMIT:
                out.append((int(op.outputs[0]), requant))
    return out


def fitted(flatbuffer: bytes) -> tuple[bytes, int]:
    """The int8 model with every over-fine output scale widened to XNNPACK's range; returns it and
    how many tensors were widened (0: the bytes as they came)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    widened = set()
    for _ in range(_PASSES):
        offending = too_fine(model)
        if not offending:
            break
        tensors = model.subgraphs[0].tensors
        for index, requant in offending:
            tensors[index].quantization.scale = [float(s * requant / TARGET) for s in tensors[index].quantization.scale]
            widened.add(index)
    if not widened:
        return flatbuffer, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), len(widened)
