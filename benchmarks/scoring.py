"""Scoring at scale: evaluate_rank and re_ranking at Market-1501 size (3,368 x 15,913, 128-d), and
re-ranking of a 100,000-image query+gallery set; seconds and peak RSS, each in a fresh process so
the peaks do not mix. Beside them, in the same run, the dense re-ranking of Zhong et al.'s code
on a smaller set, for the speed ratio.

  python benchmarks/scoring.py [--skip_100k] [--dense_n=6000]
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, resource, sys, time
import numpy as np  # no TensorFlow here: the scoring code does not need it, and its import is ~1 GiB


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

what, num_q, num_g = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
ids = 751 if num_q + num_g < 50000 else 4000
centers = rng.normal(size=(ids, 128)).astype(np.float32)
q_pids, g_pids = rng.integers(1, ids, num_q), rng.integers(1, ids, num_g)
qf = centers[q_pids] + 0.8 * rng.normal(size=(num_q, 128)).astype(np.float32)
gf = centers[g_pids] + 0.8 * rng.normal(size=(num_g, 128)).astype(np.float32)
q_cams, g_cams = rng.integers(1, 7, num_q), rng.integers(1, 7, num_g)
base = peak_rss_mib()
start = time.perf_counter()
if what == "evaluate_rank":
    from reid_tf.metrics import euclidean_distances, evaluate_rank
    d = euclidean_distances(qf, gf)
    start = time.perf_counter()
    r = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams)
elif what == "re_ranking":
    from reid_tf.rerank import re_ranking_features
    out = re_ranking_features(qf, gf)
else:  # the dense reference algorithm, for the ratio
    sys.path.insert(0, sys.argv[5])
    from dense_rerank import dense_re_ranking
    from reid_tf.metrics import euclidean_distances
    qg, qq, gg = euclidean_distances(qf, gf), euclidean_distances(qf, qf), euclidean_distances(gf, gf)
    start = time.perf_counter()
    out = dense_re_ranking(qg, qq, gg)
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib(),
                  "before_mib": base}))
"""


def measure(what: str, num_q: int, num_g: int) -> dict:
    tests = os.path.join(os.path.dirname(HERE), "tests")
    proc = subprocess.run([sys.executable, "-c", CHILD, HERE, what, str(num_q), str(num_g), tests],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip_100k", action="store_true")
    parser.add_argument("--dense_n", type=int, default=6000, help="query+gallery of the dense run")
    args = parser.parse_args()
    runs = [("evaluate_rank", 3368, 15913), ("re_ranking", 3368, 15913)]
    n = args.dense_n
    runs += [("re_ranking", n // 6, n - n // 6), ("dense_reference", n // 6, n - n // 6)]
    if not args.skip_100k:
        runs.append(("re_ranking", 11659, 100000 - 11659))
    results = {}
    for what, q, g in runs:
        r = measure(what, q, g)
        results[(what, q, g)] = r
        shown = r.get("error") or (f"{r['seconds']:7.2f} s, peak RSS {r['peak_mib'] / 1024:5.2f} GiB"
                                   f" (inputs and interpreter {r['before_mib'] / 1024:4.2f} GiB)")
        print(f"{what:16} {q:6d} x {g:6d}: {shown}", flush=True)
    small = (n // 6, n - n // 6)
    ours, dense = results[("re_ranking", *small)], results[("dense_reference", *small)]
    if "seconds" in ours and "seconds" in dense:
        print(f"re-ranking at {n} images: {dense['seconds'] / ours['seconds']:.1f}x faster and"
              f" {dense['peak_mib'] / ours['peak_mib']:.1f}x less peak memory than the dense reference")


if __name__ == "__main__":
    main()
