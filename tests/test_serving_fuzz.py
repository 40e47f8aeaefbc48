"""Hostile input to the exported signatures, called as TF Serving calls them: every case is
served or refused with an error, quickly, and the process's memory stays near its baseline."""

import json
import os
import sys

import pytest
import warm_python

from reid_tf import config as C
from reid_tf import export_lib
from reid_tf import model as model_lib

# Runs in its own process, so that its peak memory is its own.
FUZZ = r"""
import io, json, resource, struct, sys, time, zlib
import numpy as np
import tensorflow as tf
from PIL import Image
sys.path.insert(0, sys.argv[2])
from helpers import png_claiming

loaded = tf.saved_model.load(sys.argv[1])
serve_bytes, serve_images = loaded.signatures["serving_bytes"], loaded.signatures["serving_default"]
rng = np.random.default_rng(0)
photo = rng.integers(0, 255, (128, 64, 3), np.uint8)

def encode(array, fmt, mode=None, **kw):
    out = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(out, fmt, **kw)
    return out.getvalue()

def sof_claiming(jpeg, height, width):  # rewrite the baseline JPEG's SOF0 frame size
    at = jpeg.index(b"\xff\xc0")
    return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]

def bomb(width, height):  # a real PNG of zeros: ~0.4 MB that decodes to width*height*3 bytes
    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return png_claiming(width, height, body)

jpeg, png = encode(photo, "JPEG"), encode(photo, "PNG")
cases = [("empty", [b""])]
cases += [(f"random bytes {i}", [rng.bytes(int(rng.integers(1, 5000)))]) for i in range(12)]
cases += [(f"JPEG magic then noise {i}", [b"\xff\xd8\xff" + rng.bytes(int(rng.integers(1, 3000)))])
          for i in range(4)]
cases += [(f"PNG signature then noise {i}", [b"\x89PNG\r\n\x1a\n" + rng.bytes(int(rng.integers(1, 3000)))])
          for i in range(4)]
for name, good in (("JPEG", jpeg), ("PNG", png)):
    cases += [(f"{name} truncated at {n}", [good[:n]])
              for n in sorted(rng.integers(1, len(good), 8).tolist())]
    for i in range(4):
        broken = bytearray(good)
        for at in rng.integers(20, len(good), 8):
            broken[at] ^= 0xFF
        cases.append((f"{name} corrupt {i}", [bytes(broken)]))
cases += [
    ("decompression bomb: PNG 20000x20000 of zeros", [bomb(20000, 20000)]),
    ("PNG header claims 20000x20000", [png_claiming(20000, 20000)]),
    ("PNG header claims 4097x4097", [png_claiming(4097, 4097)]),
    ("PNG of 0 width", [png_claiming(0, 64)]),
    ("PNG of 0 height", [png_claiming(64, 0)]),
    ("JPEG header claims 30000x30000", [sof_claiming(jpeg, 30000, 30000)]),
    ("JPEG of 0 height", [sof_claiming(jpeg, 0, 64)]),
    ("grayscale PNG", [encode(photo, "PNG", "L")]),
    ("RGBA PNG", [encode(photo, "PNG", "RGBA")]),
    ("16-bit PNG", [encode((photo[..., 0].astype(np.uint16) * 257), "PNG")]),
    ("palette PNG", [encode(photo, "PNG", "P")]),
    ("grayscale JPEG", [encode(photo, "JPEG", "L")]),
    ("progressive JPEG", [encode(photo, "JPEG", progressive=True)]),
    ("CMYK JPEG", [encode(photo, "JPEG", "CMYK")]),
    ("a good image beside a bomb", [jpeg, png_claiming(20000, 20000)]),
    ("256 images", [jpeg] * 256),
    ("257 images", [jpeg] * 257),
]

def call(name, images):
    if name.startswith("pixels"):
        return serve_images(images=images)
    return serve_bytes(image_bytes=tf.constant(images))

call("warm-up", [jpeg, png])
call("pixels", tf.zeros([2, 128 // 2, 64 // 2, 3]))
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
results = []
for name, images in cases + [("pixels 257", tf.zeros([257, 64, 32, 3])),
                             ("pixels 256", tf.zeros([256, 64, 32, 3]))]:
    start = time.perf_counter()
    try:
        shape = list(call(name, images)["embeddings"].shape)
        outcome, message = "served", str(shape)
    except tf.errors.OpError as e:
        outcome, message = "refused", " ".join(e.message.split())[:300]
    results.append({"name": name, "outcome": outcome, "message": message,
                    "seconds": time.perf_counter() - start})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("FUZZ " + json.dumps({"baseline_mb": baseline, "peak_mb": peak, "results": results}))
"""


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory):
    config = C.RunConfig(data=C.DataConfig(image_height=64, image_width=32),
                         model=C.ModelConfig(backbone="small", backbone_weights="none"))
    path = export_lib.export_saved_model(model_lib.build_run_model(config, "none"), config,
                                     str(tmp_path_factory.mktemp("serving")), 1, 0)
    proc = warm_python.run([sys.executable, "-c", FUZZ, path, os.path.dirname(__file__)],
                          capture_output=True, text=True, timeout=300)
    line = [x for x in proc.stdout.splitlines() if x.startswith("FUZZ ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]  # a crash would end the process
    report = json.loads(line[0][len("FUZZ "):])
    return report, {r["name"]: r for r in report["results"]}


def test_every_case_is_served_or_refused_quickly_within_memory(fuzz_results):
    report, results = fuzz_results
    assert len(results) >= 60
    # A refusal comes before any decoding or model work (measured: milliseconds), so 2 s is a
    # margin no busy machine reaches; what is served is bounded by its memory, not by a clock.
    slow = [(r["name"], round(r["seconds"], 2)) for r in results.values()
            if r["outcome"] == "refused" and r["seconds"] > 2.0]
    assert not slow
    assert report["peak_mb"] - report["baseline_mb"] < 300, report


def test_what_is_refused_and_why(fuzz_results):
    _, results = fuzz_results
    refused = {name for name, r in results.items() if r["outcome"] == "refused"}
    over = ("decompression bomb: PNG 20000x20000 of zeros", "PNG header claims 20000x20000",
            "PNG header claims 4097x4097", "JPEG header claims 30000x30000",
            "a good image beside a bomb")
    for name in over:
        assert "pixels, over the limit of 16777216]" in results[name]["message"], results[name]
    assert "claims 20000x20000 pixels" in results["PNG header claims 20000x20000"]["message"]
    assert "0 width or height" in results["PNG of 0 width"]["message"]
    assert "0 width or height" in results["PNG of 0 height"]["message"]
    assert "JPEG of 0 height" in refused and "empty" in refused
    assert "[image_bytes: an empty string]" in results["empty"]["message"]
    for name in ("257 images", "pixels 257"):
        assert "too many images in one request: 257 > the limit of 256" in results[name]["message"]
    assert results["256 images"]["message"] == "[256, 128]"
    assert results["pixels 256"]["message"] == "[256, 128]"
    for name, r in results.items():
        if name.startswith(("random bytes", "PNG truncated", "JPEG truncated")):
            assert r["outcome"] == "refused", r
    for name in ("grayscale PNG", "RGBA PNG", "16-bit PNG", "palette PNG", "grayscale JPEG",
                 "progressive JPEG"):
        assert results[name]["message"] == "[1, 128]", results[name]
