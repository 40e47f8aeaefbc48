"""One trained run exported to every format, precision and quantisation, each scored on the run's
test split (mAP, rank-1) and timed at batch 1 (median latency) and batch 64 (images/s). Every
export runs in its own process that loads only its runtime (TensorFlow, LiteRT or ONNX Runtime,
never two), all in one window; the images are decoded once, by the evaluation pipeline, and handed
over as arrays. Default: the quickstart's run on its synthetic test split.

  python benchmarks/deploy_formats.py [--run=runs/quickstart] [--data_dir=SYNTHETIC] [--repeats=50]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

VARIANTS = [  # (format, precision or quantisation)
    ("saved_model", "float32"), ("saved_model", "bfloat16"), ("saved_model", "float16"),
    ("tflite", "none"), ("tflite", "float16"), ("tflite", "dynamic_range"), ("tflite", "int8"),
    ("onnx", "none"),
]


def runtime_embed_fn(folder: str, threads: int):
    """The export's embedding function in its own runtime only (this process loads no other)."""
    names = os.listdir(folder)
    if "model.tflite" in names:
        from ai_edge_litert.interpreter import Interpreter

        run = Interpreter(model_path=os.path.join(folder, "model.tflite"), num_threads=threads) \
            .get_signature_runner()
        return lambda x: run(images=x)["embeddings"]
    if "model.onnx" in names:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        return lambda x: session.run(["embeddings"], {"images": x})[0]
    import tensorflow as tf

    signature = tf.saved_model.load(folder).signatures["serving_default"]
    return lambda x: signature(images=tf.constant(x))["embeddings"].numpy()


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(folder: str, arrays: str, repeats: int) -> None:
    """Child process: embeddings of the test images (saved beside `arrays`) and the timings."""
    data = np.load(arrays)
    embed = runtime_embed_fn(folder, os.cpu_count())
    features = np.concatenate([embed(data["images"][i:i + 64]) for i in range(0, len(data["images"]), 64)])
    np.save(arrays.replace(".npz", "-features.npy"), features)
    latency = median_seconds(lambda: embed(data["one"]), repeats)
    per_batch = median_seconds(lambda: embed(data["batch"]), max(3, repeats // 10))
    print(json.dumps({"latency_ms": latency * 1000, "images_per_s": 64 / per_batch}))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="runs/quickstart")
    parser.add_argument("--data_dir", default=None, help="test split (default: the run's synthetic set)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", default="", help="comma-separated FORMAT:VARIANT")
    parser.add_argument("--measure", default="", help=argparse.SUPPRESS)  # child: an export folder
    parser.add_argument("--arrays", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.arrays, args.repeats)
        return
    from reid_tf import data, datasets, evaluate, export_lib, run_dir

    config = run_dir.load_config(args.run)
    data_dir = (args.data_dir or config.data.data_dir
                or datasets.synthetic_cache_dir(config.data.synthetic_ids))
    splits = datasets.market.load_market1501(data_dir)
    h, w = config.data.image_height, config.data.image_width
    records = splits["query"] + splits["gallery"]
    images = np.concatenate([x.numpy() for x, _, _ in data.eval_dataset(records, h, w)])
    rng = np.random.default_rng(0)
    one, batch = (rng.uniform(0, 255, (n, h, w, 3)).astype(np.float32) for n in (1, 64))
    variants = [tuple(v.split(":")) for v in args.only.split(",")] if args.only else VARIANTS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arrays = os.path.join(tmp, "arrays.npz")
        np.savez(arrays, images=images, one=one, batch=batch)
        folders = {}
        for fmt, variant in variants:  # every export first, so the timings share one window
            kwargs = {"precision": variant} if fmt == "saved_model" else {"quantize": variant}
            folders[fmt, variant] = export_lib.export_run(args.run, os.path.join(tmp, f"{fmt}-{variant}"),
                                                      fmt=fmt, **kwargs)
        for (fmt, variant), folder in folders.items():
            command = [sys.executable, os.path.abspath(__file__), f"--measure={folder}", f"--arrays={arrays}",
                       f"--repeats={args.repeats}"]
            done = subprocess.run(command, capture_output=True, text=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            timing = [x for x in done.stdout.splitlines() if x.startswith("{")]
            if done.returncode or not timing:
                print(f"{fmt} {variant}: failed\n{done.stderr[-1500:]}")
                continue
            features = np.load(arrays.replace(".npz", "-features.npy"))
            q, g = features[:len(splits["query"])], features[len(splits["query"]):]
            pid = np.array([r.pid for r in records])
            cam = np.array([r.camid for r in records])
            n = len(splits["query"])
            scores = evaluate.score(q, g, pid[:n], pid[n:], cam[:n], cam[n:])
            size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(folder) for f in fs
                       if f != "reid_config.json")
            rows.append({"format": fmt, "variant": variant, "mAP": scores["mAP"], "rank1": scores["rank1"],
                         "MiB": size / 2**20, **json.loads(timing[-1])})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"\n| format | precision / quantisation | mAP | rank-1 | size (MiB) | batch-1 latency (ms) |"
          f" batch-64 images/s | latency vs {base['format']} {base['variant']} |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        speedup = base["latency_ms"] / r["latency_ms"]
        print(f"| {r['format']} | {r['variant']} | {r['mAP']:.4f} | {r['rank1']:.4f} | {r['MiB']:.1f} |"
              f" {r['latency_ms']:.2f} | {r['images_per_s']:.0f} | {speedup:.2f}x |")


if __name__ == "__main__":
    main()
