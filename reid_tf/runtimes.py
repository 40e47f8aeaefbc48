"""Running a tracker's model as a tracker feeds it, for the export's own check and for reading it
back (`exported.open_export`): boxmot's input standardisation and an ONNX Runtime session."""

from __future__ import annotations

import numpy as np

from reid_tf import convert
from reid_tf.constants import IMAGENET_MEAN, IMAGENET_STD


def standardised(pixels: np.ndarray) -> np.ndarray:
    """RGB pixels [N, H, W, 3] in [0, 255] as boxmot feeds a model: NCHW, /255, ImageNet mean/std."""
    unit = np.asarray(pixels, np.float32) / 255.0
    return ((unit - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)).transpose(0, 3, 1, 2)


def tracker_onnx_run(model: str | bytes, threads: int | None = None):
    """A tracker ONNX (NCHW input) in ONNX Runtime: a function of its input batch."""
    try:
        import onnxruntime
    except ImportError:
        raise convert.ConversionError("running a .onnx model needs onnxruntime: pip install -e '.[onnx]'") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": np.asarray(x, np.float32)})[0]
