"""One trained run exported to every format, precision and quantisation, each scored on the run's
test split (mAP, rank-1) and timed at batch 1 (median latency) and batch 64 (images/s), side by
side in one process. Default: the quickstart's run on its synthetic test split.

  python benchmarks/deploy_formats.py [--run=runs/quickstart] [--data_dir=SYNTHETIC] [--repeats=50]
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import np  # noqa: E402

from reid_tf import datasets, evaluate, export, run_dir  # noqa: E402

VARIANTS = [  # (format, precision or quantisation)
    ("saved_model", "float32"), ("saved_model", "bfloat16"), ("saved_model", "float16"),
    ("tflite", "none"), ("tflite", "float16"), ("tflite", "dynamic_range"), ("tflite", "int8"),
    ("onnx", "none"),
]


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="runs/quickstart")
    parser.add_argument("--data_dir", default=None, help="test split (default: the run's synthetic set)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", default="", help="comma-separated FORMAT:VARIANT")
    args = parser.parse_args()
    config = run_dir.load_config(args.run)
    data_dir = (args.data_dir or config.data.data_dir
                or datasets.synthetic_cache_dir(config.data.synthetic_ids))
    splits = datasets.load_market1501(data_dir)
    h, w = config.data.image_height, config.data.image_width
    rng = np.random.default_rng(0)
    one, batch = (rng.uniform(0, 255, (n, h, w, 3)).astype(np.float32) for n in (1, 64))
    variants = [tuple(v.split(":")) for v in args.only.split(",")] if args.only else VARIANTS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, variant in variants:
            kwargs = {"precision": variant} if fmt == "saved_model" else {"quantize": variant}
            folder = export.export_run(args.run, os.path.join(tmp, f"{fmt}-{variant}"), fmt=fmt, **kwargs)
            files = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
            size = sum(os.path.getsize(f) for f in files if not f.endswith("reid_config.json"))
            embed, _ = evaluate.model_embed_fn(folder)
            q = evaluate.embed_records(embed, splits["query"], h, w)
            g = evaluate.embed_records(embed, splits["gallery"], h, w)
            scores = evaluate.score(q[0], g[0], q[1], g[1], q[2], g[2])
            latency = median_seconds(lambda e=embed: np.asarray(e(one)), args.repeats)
            per_batch = median_seconds(lambda e=embed: np.asarray(e(batch)), max(3, args.repeats // 10))
            rows.append({"format": fmt, "variant": variant, "mAP": scores["mAP"], "rank1": scores["rank1"],
                         "MiB": size / 2**20, "latency_ms": latency * 1000, "images_per_s": 64 / per_batch})
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
