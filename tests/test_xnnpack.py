"""int8 LiteRT files XNNPACK takes whole: a layer whose calibrated output is almost constant (as
OSNet x0_25's one-unit gates) gets a requantisation scale over XNNPACK's 256, and the fitted file
must load in XNNPACK and embed as the float model does."""

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from tensorflow.lite.tools import flatbuffer_utils  # noqa: E402

from reid_tf import convert, xnnpack  # noqa: E402


def _gated_model(calibration: np.ndarray) -> keras.Model:
    """Pooled features times a gate, sigmoid(fc2(relu(fc1(.)))), whose one hidden unit is just
    above zero on these images: an OSNet x0_25 gate whose hidden unit is nearly dead."""
    inputs = keras.Input((16, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inputs / 255.0))
    hidden = keras.layers.Dense(1, activation="relu", name="hidden")
    gate = keras.layers.Dense(8, activation="sigmoid")(hidden(pooled))
    model = keras.Model(inputs, keras.layers.Dense(16)(keras.layers.Multiply()([pooled, gate])))
    features = keras.Model(inputs, pooled)(calibration).numpy()
    w = np.ones((8, 1), np.float32)
    hidden.set_weights([w, -np.array([(features @ w).max() - 1e-5], np.float32)])  # output in [0, 1e-5]
    return model


def _xnnpack_loads(flatbuffer: bytes) -> bool:
    try:
        runner = Interpreter(model_content=flatbuffer).get_signature_runner()
        runner(images=np.zeros((1, 16, 8, 3), np.float32))
    except RuntimeError as e:
        assert "XNNPACK" in str(e)
        return False
    return True


def test_fitted_int8_file_loads_in_xnnpack_and_embeds_as_float():
    images = np.random.default_rng(0).uniform(0, 255, (64, 16, 8, 3)).astype(np.float32)
    model = _gated_model(images)
    function = convert.embedding_function(model, 16, 8)
    fitted = convert.to_tflite(function, "int8", images)  # test_unfitted_...: the fitting had work to do
    assert not xnnpack.too_fine(flatbuffer_utils.convert_bytearray_to_object(bytearray(fitted)))
    assert _xnnpack_loads(fitted)
    reference = model(images).numpy()
    got = convert.tflite_embed_fn(fitted)(images)
    cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.99


def test_unfitted_file_is_what_xnnpack_refuses(monkeypatch):
    """The same conversion without the fitting: XNNPACK refuses it (the case the fitting is for)."""
    images = np.random.default_rng(0).uniform(0, 255, (64, 16, 8, 3)).astype(np.float32)
    monkeypatch.setattr(xnnpack, "fitted", lambda flatbuffer: (flatbuffer, 0))
    raw = convert.to_tflite(convert.embedding_function(_gated_model(images), 16, 8), "int8", images)
    assert xnnpack.too_fine(flatbuffer_utils.convert_bytearray_to_object(bytearray(raw)))
    assert not _xnnpack_loads(raw)
