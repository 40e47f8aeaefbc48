"""Client side of TF Serving: request bodies for REST and gRPC, and the calls themselves.

The exported model's `serving_bytes` signature takes a batch of encoded JPEG/PNG strings
(`image_bytes`) and returns `embeddings` and `embeddings_normalized`.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from reid_tf.errors import ReidError

BYTES_INPUT = "image_bytes"
OUTPUT = "embeddings"


class ServingError(ReidError, RuntimeError):
    """A failed call to TF Serving; the message says what the server or the network said."""


def rest_request_body(images: Sequence[bytes], signature_name: str = "serving_bytes") -> dict:
    """The JSON body of `POST /v1/models/NAME:predict`: binary inputs go as {"b64": ...}."""
    return {
        "signature_name": signature_name,
        "instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images],
    }


def parse_rest_response(response: dict, output: str = OUTPUT) -> np.ndarray:
    """Embeddings [n, D] from a REST predict answer (row format)."""
    if "error" in response:
        raise ServingError(f"TF Serving answered: {response['error']}")
    rows = response["predictions"]
    return np.array([row[output] if isinstance(row, dict) else row for row in rows], np.float32)


SEARCH_OUTPUTS = ("indices", "paths", "distances")  # a --format=search export's search_bytes


def parse_search_response(response: dict) -> dict[str, np.ndarray]:
    """{indices, paths, distances} [n, k] from a REST answer of a search signature (row format)."""
    if "error" in response:
        raise ServingError(f"TF Serving answered: {response['error']}")
    rows = response["predictions"]
    return {key: np.array([row[key] for row in rows]) for key in SEARCH_OUTPUTS}


def _post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def search_rest(images: Sequence[bytes], host: str = "localhost", port: int = 8501, model_name: str = "reid",
                timeout: float = 30.0) -> dict[str, np.ndarray]:
    """The k nearest gallery entries (indices, paths, distances) of each encoded image, from a
    `--format=search` export in TF Serving (REST)."""
    return _rest(images, host, port, model_name, "search_bytes", timeout, parse_search_response)


def predict_rest(images: Sequence[bytes], host: str = "localhost", port: int = 8501,
                 model_name: str = "reid", signature_name: str = "serving_bytes",
                 timeout: float = 30.0) -> np.ndarray:
    """Embeddings of encoded images from TF Serving's REST API."""
    return _rest(images, host, port, model_name, signature_name, timeout, parse_rest_response)


def _rest(images, host, port, model_name, signature_name, timeout, parse):
    url = f"http://{host}:{port}/v1/models/{model_name}:predict"
    try:
        return parse(_post(url, rest_request_body(images, signature_name), timeout))
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise ServingError(f"{url}: HTTP {e.code}: {_one_line(detail)}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ServingError(f"{url}: {getattr(e, 'reason', e)} (is TF Serving running there?)") from None


def _one_line(detail: str) -> str:
    """The line of a TF error that says what went wrong (an assertion's message if any)."""
    lines = [line.strip() for line in str(detail).splitlines() if line.strip()]
    for line in lines:
        if "assertion failed" in line:
            return line[:300]
    return (lines[0] if lines else "no detail")[:300]


def grpc_request(images: Sequence[bytes], model_name: str = "reid",
                 signature_name: str = "serving_bytes"):
    """A PredictRequest for PredictionService/Predict (needs tensorflow-serving-api)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[BYTES_INPUT].CopyFrom(
        tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)])
    )
    request.output_filter.append(OUTPUT)
    return request


def predict_grpc(images: Sequence[bytes], host: str = "localhost", port: int = 8500,
                 model_name: str = "reid", signature_name: str = "serving_bytes",
                 timeout: float = 30.0) -> np.ndarray:
    """Embeddings of encoded images from TF Serving's gRPC PredictionService."""
    try:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc
    except ModuleNotFoundError as e:
        missing = e.name.split(".")[0]
        raise ServingError(f'--protocol=grpc needs {missing}: pip install -e ".[serving]"') from None
    import tensorflow as tf

    options = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]
    with grpc.insecure_channel(f"{host}:{port}", options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(grpc_request(images, model_name, signature_name), timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(f"{host}:{port}: {e.code().name}: {_one_line(e.details())}") from None
    return tf.make_ndarray(response.outputs[OUTPUT]).astype(np.float32)
