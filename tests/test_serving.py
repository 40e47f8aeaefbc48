import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import tensorflow as tf
import warm_python
from helpers import REPO
from PIL import Image

from reid_tf import config as C
from reid_tf import datasets, export_lib, serving
from reid_tf import model as model_lib


@pytest.fixture(scope="module")
def exported(market_dir, tmp_path_factory):
    config = C.RunConfig(data=C.DataConfig(image_height=64, image_width=32),
                         model=C.ModelConfig(backbone="small", backbone_weights="none"))
    base = str(tmp_path_factory.mktemp("serving"))
    path = export_lib.export_saved_model(model_lib.build_run_model(config, "none"), config, base, 1, 0)
    files = [r.path for r in datasets.market.load_market1501(market_dir)["query"][:3]]
    images = [open(f, "rb").read() for f in files]
    signature = tf.saved_model.load(path).signatures["serving_bytes"]
    expected = signature(image_bytes=tf.constant(images))["embeddings"].numpy()
    return {"base": base, "path": path, "files": files, "images": images, "expected": expected,
            "signature": signature}


def test_rest_body_from_files(exported):
    body = serving.rest_request_body(exported["images"], "serving_bytes")
    assert body["signature_name"] == "serving_bytes"
    assert [base64.b64decode(i["b64"]) for i in body["instances"]] == exported["images"]
    json.dumps(body)  # serialisable as sent


def test_grpc_request_from_files(exported):
    request = serving.grpc_request(exported["images"], "reid", "serving_bytes")
    assert request.model_spec.name == "reid" and request.model_spec.signature_name == "serving_bytes"
    tensor = request.inputs["image_bytes"]
    assert tensor.dtype == tf.string.as_datatype_enum
    assert [d.size for d in tensor.tensor_shape.dim] == [3]
    assert list(tensor.string_val) == exported["images"]


def test_parse_rest_response_and_errors():
    rows = {"predictions": [{"embeddings": [1.0, 2.0], "embeddings_normalized": [0.4, 0.9]}]}
    np.testing.assert_array_equal(serving.parse_rest_response(rows), [[1.0, 2.0]])
    with pytest.raises(serving.ServingError, match="not a JPEG"):
        serving.parse_rest_response({"error": "image_bytes: not a JPEG or PNG image"})


class _StandInRest(BaseHTTPRequestHandler):
    """TF Serving's REST predict route, backed by the SavedModel: a local stand-in."""

    signature = None

    def do_POST(self):  # noqa: N802 - http.server's naming
        if not self.path.endswith("/v1/models/reid:predict"):
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        images = [base64.b64decode(i["b64"]) for i in body["instances"]]
        try:
            out = self.signature(image_bytes=tf.constant(images))
            rows = [{k: v.numpy()[i].tolist() for k, v in out.items()} for i in range(len(images))]
            payload, code = {"predictions": rows}, 200
        except tf.errors.InvalidArgumentError as e:
            payload, code = {"error": e.message}, 400
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_rest_round_trip_and_client_tool(exported):
    _StandInRest.signature = exported["signature"]
    server = HTTPServer(("127.0.0.1", 0), _StandInRest)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        got = serving.predict_rest(exported["images"], "127.0.0.1", port, timeout=60)
        np.testing.assert_allclose(got, exported["expected"], atol=1e-5)
        with pytest.raises(serving.ServingError, match="HTTP 400.*not a JPEG or PNG"):
            serving.predict_rest([b"garbage"], "127.0.0.1", port, timeout=60)
        proc = warm_python.run(
            [sys.executable, os.path.join(REPO, "tools", "serving_client.py"),
             f"--images={','.join(exported['files'][:2])}", f"--port={port}", "--host=127.0.0.1",
             "--distance"], capture_output=True, text=True, timeout=120)
        distance = np.linalg.norm(exported["expected"][0] - exported["expected"][1])
        assert proc.stdout.startswith("distance "), proc.stderr[-2000:]
        assert abs(float(proc.stdout.split()[1]) - distance) < 1e-4
    finally:
        server.shutdown()
    with pytest.raises(serving.ServingError, match="is TF Serving running"):
        serving.predict_rest(exported["images"], "127.0.0.1", port, timeout=5)


def test_grpc_round_trip(exported):
    grpc = pytest.importorskip("grpc")
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class StandIn(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - the service's naming
            images = tf.make_ndarray(request.inputs["image_bytes"]).tolist()
            out = exported["signature"](image_bytes=tf.constant(images))
            response = predict_pb2.PredictResponse()
            for name in request.output_filter or out:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(out[name].numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(StandIn(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        got = serving.predict_grpc(exported["images"], "127.0.0.1", port, timeout=60)
        np.testing.assert_allclose(got, exported["expected"], atol=1e-5)
    finally:
        server.stop(0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None,
                    reason="tensorflow_model_server is not on PATH")
def test_live_tensorflow_model_server(exported):
    rest, grpc_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        ["tensorflow_model_server", f"--port={grpc_port}", f"--rest_api_port={rest}",
         "--model_name=reid", f"--model_base_path={exported['base']}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):  # up to a minute for the model to load
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{rest}/v1/models/reid", timeout=2)
                break
            except OSError:
                time.sleep(1)
        np.testing.assert_allclose(
            serving.predict_rest(exported["images"], "127.0.0.1", rest), exported["expected"], atol=1e-4)
        np.testing.assert_allclose(
            serving.predict_grpc(exported["images"], "127.0.0.1", grpc_port), exported["expected"],
            atol=1e-4)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_grpc_without_the_serving_extra_is_one_line(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 64)).save(image)
    script = ("import runpy, sys; sys.modules['tensorflow_serving'] = None;"  # as if not installed
              f" sys.argv = ['serving_client.py', '--images={image}', '--protocol=grpc'];"
              f" runpy.run_path({os.path.join(REPO, 'tools', 'serving_client.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        'error: --protocol=grpc needs tensorflow_serving: pip install -e ".[serving]"')
