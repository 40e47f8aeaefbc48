"""The model for edge devices and inference servers: LiteRT (TFLite) and ONNX, each checked against
the Keras model in its own runtime before anything is written.

Both take what `serving_default` takes, float32 RGB pixels [batch, H, W, 3] in [0, 255] (JPEG
decoding belongs to the server side), and output `embeddings` and `embeddings_normalized`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf import console
from reid_tf.config import QUANTIZATIONS
from reid_tf.constants import ONNX_OPSET
from reid_tf.errors import ReidError
from reid_tf.model import embeddings_of

FILE_NAMES = {"tflite": "model.tflite", "onnx": "model.onnx"}
FLOAT_TOLERANCE = 1e-4  # largest |converted - Keras| / largest |Keras| of a float conversion
QUANTIZED_MIN_COSINE = 0.9  # a quantised model's embeddings point the same way, or it is broken


class ConversionError(ReidError, RuntimeError):
    """A conversion that failed or gives other embeddings than the model; one line says which."""


def embedding_function(model, height: int, width: int) -> tf.types.experimental.PolymorphicFunction:
    """The model as a frozen function (weights as constants) of pixels to both embeddings.

    Converters given the model's variables leave them as uninitialised resources: a LiteRT model
    converted so has no weights and outputs NaN. Freezing first puts the weights in the file.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([None, height, width, 3], tf.float32, "images")

    @tf.function(input_signature=[spec], autograph=False)
    def embed(images):
        embeddings = tf.cast(embeddings_of(model(images, training=False)), tf.float32)
        return {"embeddings": embeddings, "embeddings_normalized": tf.math.l2_normalize(embeddings, axis=1)}

    frozen = convert_variables_to_constants_v2(embed.get_concrete_function())

    @tf.function(input_signature=[spec], autograph=False)
    def named(images):  # the frozen function returns a list in sorted-key order: name it again
        embeddings, normalized = frozen(images)
        return {"embeddings": embeddings, "embeddings_normalized": normalized}

    return named


def to_tflite(function, quantize: str = "none", calibration: np.ndarray | None = None) -> bytes:
    """A LiteRT flatbuffer of an `embedding_function`, with a dynamic batch.

    int8 is full-integer (every op in int8; the float32 interface adds one quantize op at the
    input and a dequantize per output), calibrated on `calibration` images.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    with tempfile.TemporaryDirectory() as folder:
        # Converted from a SavedModel of its own, saved without gradients: the converter's own
        # save of a function keeps custom gradients (tf.nn.silu's, EfficientNetV2), fails on them
        # and silently falls back to a file without signatures, which int8 calibration refuses.
        tf.saved_model.save(tf.Module(), folder, signatures=function.get_concrete_function(),
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        return _converted(tf.lite.TFLiteConverter.from_saved_model(folder), quantize, calibration)


def _converted(converter: tf.lite.TFLiteConverter, quantize: str, calibration: np.ndarray | None) -> bytes:
    """The converter's file with `quantize` applied."""
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None or not len(calibration):
            raise ConversionError("int8 quantisation needs calibration images of the run's dataset")

        def representative():
            for image in calibration:
                yield {"images": image[None].astype(np.float32)}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        with console.native_lines_dropped(r"^fully_quantize: ", r"^INFO: Created TensorFlow Lite"):
            flatbuffer = converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many kinds
        raise ConversionError(f"LiteRT conversion failed: {str(e).strip().splitlines()[-1][:200]}") from None
    if quantize == "int8":
        from reid_tf import xnnpack

        flatbuffer, widened = xnnpack.fitted(flatbuffer)
        if widened:
            logging.info("int8: %d output scales widened into XNNPACK's requantisation range", widened)
    return flatbuffer


def to_onnx(function, opset: int = ONNX_OPSET) -> bytes:
    """An ONNX model of an `embedding_function` by tf2onnx, with a dynamic batch."""
    try:
        import tf2onnx
    except ImportError:
        raise ConversionError("ONNX export needs tf2onnx: pip install -e '.[onnx]'") from None
    spec = function.input_signature[0]
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=opset)
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"ONNX conversion failed: {str(e).strip().splitlines()[-1][:200]}") from None
    return proto.SerializeToString()


def tflite_embed_fn(model: str | bytes, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Embeddings of a pixel batch by a LiteRT model (a file path or its bytes) in LiteRT's own
    interpreter (`ai_edge_litert`; `tf.lite.Interpreter` is deprecated)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ConversionError("running a .tflite model needs ai-edge-litert: pip install -e '.[tflite]'") \
            from None
    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}

    def ready(**options):
        with console.native_lines_dropped(r"^INFO: Created TensorFlow Lite XNNPACK delegate"):
            runner = Interpreter(num_threads=threads, **kwargs, **options).get_signature_runner()
            runner(images=np.zeros([1, *runner.get_input_details()["images"]["shape"][1:]], np.float32))
        return runner

    try:
        runner = ready()
    except RuntimeError as e:  # XNNPACK refuses some int8 models (quantisation scales out of its range)
        if "XNNPACK" not in str(e):
            raise ConversionError(f"LiteRT cannot run the model: {str(e).splitlines()[0][:200]}") from None
        from ai_edge_litert.interpreter import OpResolverType

        logging.warning("LiteRT's XNNPACK delegate cannot take this model: its own kernels run it (slower)")
        runner = ready(experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    def embed(images):
        return runner(images=np.asarray(images, np.float32))["embeddings"]

    return embed


def onnx_embed_fn(model: str | bytes, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Embeddings of a pixel batch by an ONNX model in ONNX Runtime (CPU)."""
    try:
        import onnxruntime
    except ImportError:
        raise ConversionError("running a .onnx model needs onnxruntime: pip install -e '.[onnx]'") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def embed(images):
        return session.run(["embeddings"], {"images": np.asarray(images, np.float32)})[0]

    return embed


def compare(reference: np.ndarray, converted: np.ndarray) -> dict:
    """How far converted embeddings are from the reference: largest absolute difference, that
    relative to the largest reference value, and the smallest cosine similarity of a pair."""
    reference, converted = np.asarray(reference, np.float64), np.asarray(converted, np.float64)
    if reference.shape != converted.shape:
        return {"max_abs": float("inf"), "relative": float("inf"), "min_cosine": -1.0}
    diff = np.abs(reference - converted).max()
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(converted, axis=1)
    cosine = (reference * converted).sum(1) / np.maximum(norms, 1e-30)
    return {"max_abs": float(diff), "relative": float(diff / max(np.abs(reference).max(), 1e-30)),
            "min_cosine": float(cosine.min())}


def check(difference: dict, quantize: str, what: str) -> None:
    """Refuse (one line) a converted model whose embeddings are not the model's."""
    finite = all(np.isfinite(v) for v in difference.values())
    if quantize == "none" and finite and difference["relative"] <= FLOAT_TOLERANCE:
        return
    if quantize != "none" and finite and difference["min_cosine"] >= QUANTIZED_MIN_COSINE:
        return
    limit = (f"relative difference {difference['relative']:.3g} > {FLOAT_TOLERANCE:g}" if quantize == "none"
             else f"cosine similarity {difference['min_cosine']:.3g} < {QUANTIZED_MIN_COSINE:g}")
    raise ConversionError(f"{what} gives other embeddings than the model ({limit}): not written")
