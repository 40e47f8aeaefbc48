"""What one re-clustering of a target costs (reid_tf.clusters.pseudo_labels: exact k-reciprocal
Jaccard distances, then scikit-learn's DBSCAN) beside its floor, the exact k-nearest-neighbour search
of the same features (faiss' IndexFlatL2, k1 + 1 neighbours), in the same process, with its peak memory.

    python benchmarks/cluster_scale.py --sizes=10000,30000,100000 --dims=128,2048 \
        --output_json=docs/benchmarks/cluster_scale.json

The features are drawn as a re-ID target looks to a model: identities of about 15 images, each a
unit centre plus noise, so DBSCAN finds clusters as it does on real targets. Each size runs in a
process of its own, so that its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from common import cpu_kind, peak_rss_mib


def features(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 15), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    ids = rng.integers(0, len(centres), n)
    x = centres[ids] + rng.normal(scale=0.5 / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    return x, ids


def measure(n: int, dim: int) -> dict:
    import faiss

    from reid_tf import clusters

    x, ids = features(n, dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    settings = clusters.ClusterSettings()
    began = time.perf_counter()
    index = faiss.IndexFlatL2(dim)
    index.add(x)
    index.search(x, settings.k1 + 1)
    floor = time.perf_counter() - began
    began = time.perf_counter()
    labels = clusters.pseudo_labels(x, settings)
    seconds = time.perf_counter() - began
    report = clusters.report(labels, ids)
    return {"images": n, "dim": dim, "clustering_s": round(seconds, 2), "knn_floor_s": round(floor, 2),
            "ratio": round(seconds / floor, 2), "peak_rss_gib": round(peak_rss_mib() / 1024, 2), **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--dims", default="128,2048")
    parser.add_argument("--one", default="", help="(internal) N,DIM: measure one size in this process")
    parser.add_argument("--output_json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*map(int, args.one.split(",")))))
        return
    rows = []
    for n in map(int, args.sizes.split(",")):
        for dim in map(int, args.dims.split(",")):
            out = subprocess.run([sys.executable, __file__, f"--one={n},{dim}"], check=True, capture_output=True,
                                 text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{n:>7} x {dim:<5} clustering {r['clustering_s']:8.1f} s, kNN floor {r['knn_floor_s']:7.1f} s,"
                  f" ratio {r['ratio']:5.2f}, peak {r['peak_rss_gib']:.2f} GiB; {r['clusters']} clusters,"
                  f" {r['outliers']} outliers, purity {r['purity']:.3f}, NMI {r['nmi']:.3f}", flush=True)
            if args.output_json:  # row by row: a stopped run keeps what it measured
                with open(args.output_json, "w", encoding="utf-8") as f:
                    json.dump({"cpu": cpu_kind(), "rows": rows}, f, indent=2)
                    f.write("\n")


if __name__ == "__main__":
    main()
