"""Which input setting makes the stand-in's raw features score differently at the log re-run's two
sizes: the raw features (no re-ID training) at 64x32 and 72x36 over five validation splits, as the
re-run scores them, then with one setting changed at a time; d = 72x36 minus 64x32, paired by seed.

    python benchmarks/standin_sizes.py [--vary=--pixel_range=backbone,--crop=none] [--large=80x40]
        [--output_json=docs/training_log_intended/standin_sizes.json]

Run it after benchmarks/rerun_log.py has made the stand-in and the data under runs/log/. Its first
row reproduces the committed standin_features_* summaries (the same flags and seeds); --large
scores another larger size with the 72x36 runs' flags (e.g. 80x40, where the original's centre
crop drops whole columns evenly: width // 8 each side, as at 224x112 and 256x128).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ("64x32", "72x36")
SEEDS = (0, 1, 2, 3, 4)


def features_map(summary_dir: str, size: str, seed: int, change: str, output_dir: str, at: str = "") -> float:
    """mAP at step 0 of the committed raw-features run of `size` and `seed`, with `change` added
    (and scored at input size `at` instead, where given)."""
    path = os.path.join(summary_dir, "runs", f"standin_features_{size}-seed{seed}.json")
    if not os.path.exists(path):
        sys.exit(f"{path} not found: --summaries names the folder of the re-run's summaries"
                 " (docs/training_log_intended)")
    with open(path, encoding="utf-8") as f:
        flags = [f for f in json.load(f)["flags"] if not f.startswith("--output_dir=")]
    if at:
        height, width = at.split("x")
        flags += [f"--image_height={height}", f"--image_width={width}"]
    out = os.path.join(output_dir, f"{change.strip('-').replace('=', '_') or 'committed'}-{at or size}-seed{seed}")
    if not os.path.exists(os.path.join(out, "validation.jsonl")):
        done = subprocess.run([sys.executable, "-m", "reid_tf.train", *flags, *([change] if change else []),
                               f"--output_dir={out}"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode:  # the run's own one line (a missing stand-in or data folder, a bad flag)
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            sys.exit(f"{out}: {last} (benchmarks/rerun_log.py makes the stand-in and data under runs/log/)")
    with open(os.path.join(out, "validation.jsonl"), encoding="utf-8") as f:
        return float(json.loads(f.readline())["mAP"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summaries", default="docs/training_log_intended")
    parser.add_argument("--output_dir", default="runs/standin_sizes")
    parser.add_argument("--vary", default="--pixel_range=backbone,--crop=none",
                        help="comma-separated flags, each tried alone against the committed settings")
    parser.add_argument("--large", default="", help="also score this larger size HxW against 64x32")
    parser.add_argument("--output_json", default="", help="write the rows here as well")
    args = parser.parse_args()
    print("| change | small | large | d (large - small) | SE |\n|---|---|---|---|---|")
    rows = []
    tries = [(change, "72x36", "") for change in ["", *filter(None, args.vary.split(","))]]
    tries += [("", "72x36", args.large)] if args.large else []
    for change, large, at in tries:
        small = np.array([features_map(args.summaries, "64x32", s, change, args.output_dir) for s in SEEDS])
        big = np.array([features_map(args.summaries, large, s, change, args.output_dir, at) for s in SEEDS])
        diffs = big - small
        row = {"change": change or "as committed", "small": "64x32", "large": at or large,
               "small_mAP": small.round(6).tolist(), "large_mAP": big.round(6).tolist(),
               "mean_difference": round(float(diffs.mean()), 6),
               "standard_error": round(float(diffs.std(ddof=1) / math.sqrt(len(diffs))), 6)}
        rows.append(row)
        print(f"| {row['change']} | 64x32 {small.mean():.3f} ± {small.std(ddof=1):.3f} | {row['large']}"
              f" {big.mean():.3f} ± {big.std(ddof=1):.3f} | {row['mean_difference']:+.3f} |"
              f" {row['standard_error']:.3f} |", flush=True)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump({"command": "python benchmarks/standin_sizes.py " + " ".join(sys.argv[1:]), "seeds": SEEDS,
                       "rows": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
