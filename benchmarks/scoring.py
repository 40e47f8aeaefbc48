"""Scoring at scale, each measurement in a fresh process so the peaks do not mix: seconds and peak
RSS of `evaluate.score` (plain, and plain + re-ranked) on synthetic features of MSMT17's test
split (11,659 queries, 15 cameras, 2,048-d) against 10k, 20k, 40k and 82,161 gallery images;
Market-1501's size beside the scoring it replaced (a stable argsort of whole rows), with the
scores compared; and the dense re-ranking of Zhong et al.'s code on a small set, for the ratio.

  python benchmarks/scoring.py [--galleries=10000,20000,40000,82161] [--no_rerank] [--dense_n=6000]
  python benchmarks/scoring.py --verification --output_json=docs/benchmarks/verification_cost.json

--verification: the plain scoring and tools/eval.py's verification figures (every query x gallery
pair into the two histograms, then TAR at FAR, EER, ROC AUC) at MSMT17's size, each in its own
process, `--rounds` times interleaved; their ratio and peak memory.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")

CHILD = r"""
import json, resource, sys, time
import numpy as np


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


what, num_q, num_g, dim, ids, cams = sys.argv[1], *map(int, sys.argv[2:7])
sys.path.insert(0, sys.argv[7])
rng = np.random.default_rng(0)
centers = rng.standard_normal((ids, dim), dtype=np.float32)
q_pids, g_pids = rng.integers(1, ids, num_q), rng.integers(1, ids, num_g)
q_cams, g_cams = rng.integers(1, cams + 1, num_q), rng.integers(1, cams + 1, num_g)


def features(pids):  # an identity's centre plus noise, made row block by row block (float32)
    out = np.empty((len(pids), dim), np.float32)
    for s in range(0, len(pids), 8192):
        noise = rng.standard_normal((min(8192, len(pids) - s), dim), dtype=np.float32)
        out[s:s + 8192] = centers[pids[s:s + 8192]] + 3.0 * noise  # mAP about 0.5
    return out


qf, gf = features(q_pids), features(g_pids)


def product_seconds(a, b, rows, cols=None):  # the matrix product alone, in tiles: a scoring's floor
    cols = cols or len(b)
    start = time.perf_counter()
    for s in range(0, len(a), rows):
        for t in range(0, len(b), cols):
            a[s:s + rows] @ b[t:t + cols].T
    return time.perf_counter() - start


floors = {}
if what in ("plain", "rerank"):
    from reid_tf.metrics import block_rows
    floors["qg_product_s"] = product_seconds(qf, gf, block_rows(len(gf)))
if what == "rerank":
    everything = np.concatenate([qf, gf])
    floors["all_pairs_product_s"] = product_seconds(everything, everything, 8192, 8192)
    del everything
if what in ("plain", "rerank"):
    from reid_tf import evaluate
    base = peak_rss_mib()
    start = time.perf_counter()
    scores = evaluate.score(qf, gf, q_pids, g_pids, q_cams, g_cams, rerank_too=what == "rerank")
elif what == "sorted":  # the scoring this replaced: the whole matrix, then whole rows sorted
    from reid_tf.metrics import euclidean_distances
    from sorted_metrics import sorted_evaluate_rank
    base = peak_rss_mib()
    start = time.perf_counter()
    r = sorted_evaluate_rank(euclidean_distances(qf, gf), q_pids, g_pids, q_cams, g_cams)
    scores = {"mAP": r["mAP"], "mINP": r["mINP"], "rank1": float(r["cmc"][0])}
elif what == "verification":
    from reid_tf import verification
    base = peak_rss_mib()
    start = time.perf_counter()
    figures = verification.summary(verification.pair_histograms(qf, gf, q_pids, g_pids, q_cams, g_cams))
    scores = {"eer": figures["eer"], "roc_auc": figures["roc_auc"], "bin_width": figures["bin_width"]}
else:  # the dense reference re-ranking, and ours on the same set
    from dense_rerank import dense_re_ranking
    from reid_tf.metrics import euclidean_distances
    from reid_tf.rerank import re_ranking_features
    qg, qq, gg = euclidean_distances(qf, gf), euclidean_distances(qf, qf), euclidean_distances(gf, gf)
    base = peak_rss_mib()
    start = time.perf_counter()
    (dense_re_ranking if what == "dense" else lambda *a: re_ranking_features(qf, gf))(qg, qq, gg)
    scores = {}
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib(), "before_mib": base, **floors,
                  **{k: v for k, v in scores.items() if k in ("mAP", "mINP", "rank1", "mAP_rerank", "eer",
                                                              "roc_auc", "bin_width")}}))
"""


def measure(what: str, num_q: int, num_g: int, dim: int, ids: int, cams: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, what, str(num_q), str(num_g), str(dim), str(ids),
                           str(cams), TESTS], capture_output=True, text=True, cwd=os.path.dirname(HERE))
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def show(name: str, r: dict) -> str:
    if "error" in r:
        return f"{name}: {r['error']}"
    extra = ", ".join(f"{k} {r[k]:.6f}" for k in ("mAP", "mAP_rerank") if k in r)
    if "qg_product_s" in r:
        floor = r.get("all_pairs_product_s", r["qg_product_s"])  # re-ranking's: its neighbour search
        extra += f"; floor {floor:.1f} s ({r['seconds'] / floor:.2f}x)"
    return (f"{name}: {r['seconds']:7.1f} s, peak RSS {r['peak_mib'] / 1024:5.2f} GiB (inputs, interpreter"
            f" and TensorFlow {r['before_mib'] / 1024:4.2f} GiB){', ' + extra if extra else ''}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--galleries", default="10000,20000,40000,82161")
    parser.add_argument("--no_rerank", action="store_true")
    parser.add_argument("--dense_n", type=int, default=6000, help="query+gallery of the dense re-ranking run")
    parser.add_argument("--skip_market", action="store_true")
    parser.add_argument("--skip_dense", action="store_true")
    parser.add_argument("--output_json", help="the MSMT17-shaped rows, each with its floor, as JSON")
    parser.add_argument("--verification", action="store_true", help="plain scoring against the verification"
                        " figures at MSMT17's size, side by side (nothing else)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.verification:
        verification_cost(args.rounds, args.output_json)
        return
    rows = []
    for num_g in map(int, args.galleries.split(",")):
        for what in ("plain",) + (() if args.no_rerank else ("rerank",)):
            r = measure(what, 11659, num_g, 2048, 3060, 15)
            print(show(f"MSMT17-shaped, 11659 x {num_g:6d}, 2048-d, {what:6}", r), flush=True)
            rows.append((num_g, what, r))
    print("\n| gallery images | plain: s | plain: peak GiB | plain + re-ranked: s |"
          " plain + re-ranked: peak GiB |")
    print("|---|---|---|---|---|")
    for num_g in sorted({g for g, _, _ in rows}):
        cells = []
        for what in ("plain", "rerank"):
            r = next((r for g, w, r in rows if g == num_g and w == what), {})
            cells += [f"{r['seconds']:.1f}", f"{r['peak_mib'] / 1024:.2f}"] if "seconds" in r else ["-", "-"]
        print(f"| {num_g:,} | " + " | ".join(cells) + " |")
    if not args.skip_market:
        new, old = (measure(w, 3368, 15913, 2048, 751, 6) for w in ("plain", "sorted"))
        print("\n" + show("Market-sized 3368 x 15913, 2048-d, blocks", new))
        print(show("Market-sized 3368 x 15913, 2048-d, sorted rows (before)", old))
        if "mAP" in new and "mAP" in old:
            diff = {k: abs(new[k] - old[k]) for k in ("mAP", "mINP", "rank1")}
            print(f"difference: mAP {diff['mAP']:.2e}, mINP {diff['mINP']:.2e}, rank-1 {diff['rank1']:.2e};"
                  f" {old['seconds'] / new['seconds']:.1f}x faster")
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"dim": 2048, "rows": [{"queries": 11659, "gallery": g, "what": w, **r} for g, w, r in rows
                                             if "seconds" in r]}, f, indent=2)
    if args.skip_dense:
        return
    n = args.dense_n
    ours, dense = (measure(w, n // 6, n - n // 6, 128, 751, 6) for w in ("ours", "dense"))
    if "seconds" in ours and "seconds" in dense:
        print(f"\nre-ranking at {n} images: {dense['seconds'] / ours['seconds']:.1f}x faster and"
              f" {dense['peak_mib'] / ours['peak_mib']:.1f}x less peak memory than the dense reference")


def verification_cost(rounds: int, output_json: str | None) -> None:
    """Seconds and peak RSS of plain scoring and of the verification figures, interleaved, at MSMT17's size."""
    rows = []
    for i in range(rounds):
        for what in ("plain", "verification"):
            r = measure(what, 11659, 82161, 2048, 3060, 15)
            print(show(f"round {i + 1}, 11659 x 82161, 2048-d, {what:12}", r), flush=True)
            rows.append({"round": i + 1, "what": what, **r})
    ratios = [v["seconds"] / p["seconds"] for p, v in zip(rows[::2], rows[1::2]) if "seconds" in p and "seconds" in v]
    print("verification / plain scoring, per round: " + ", ".join(f"{r:.2f}" for r in ratios))
    if output_json:
        with open(output_json, "w") as f:
            json.dump({"queries": 11659, "gallery": 82161, "dim": 2048, "rows": rows, "ratios": ratios}, f, indent=2)


if __name__ == "__main__":
    main()
