"""Gallery search at 10^6 embeddings, 128-d and 2048-d: for each kind of index, the time to build it,
the time for 100 queries, the memory it adds, and recall@10 against exact search. Each kind runs in
a fresh process (its peak memory its own); exact search comes first, its top-10 the reference.

  python benchmarks/gallery_scale.py [--n=1000000] [--dims=128,2048] [--output_json=F]

The embeddings are re-ID-like, not uniform noise (on which every approximate index does worst):
identities' centres plus noise, 10 images each. Kinds: faiss's exact IndexFlatL2, our numpy exact
search (`reid_tf.gallery.exact_search`, what tools/gallery.py runs without faiss: it must return the
same rows), HNSW32, IVF4096-Flat and IVF4096-PQ, the last two at two nprobe values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KINDS = ("flat", "numpy", "hnsw", "ivf_flat", "ivf_pq")
K, QUERIES, PER_ID, CHUNK = 10, 100, 10, 1 << 16

CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[5])
kind, n, dim, reference = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
K, QUERIES, PER_ID, CHUNK = {K}, {QUERIES}, {PER_ID}, {CHUNK}


def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


ids = n // PER_ID
rng = np.random.default_rng(0)
centres = rng.standard_normal((min(ids, 20000), dim), dtype=np.float32)


def chunk(start, stop):  # rows start..stop: a centre plus noise, the same in every process
    r = np.random.default_rng(start)
    pids = (np.arange(start, stop) // PER_ID) % len(centres)
    return centres[pids] + 0.7 * r.standard_normal((stop - start, dim), dtype=np.float32)


queries = centres[rng.integers(0, len(centres), QUERIES)] + 0.7 * rng.standard_normal((QUERIES, dim), dtype=np.float32)
base = rss_mib()
import faiss
faiss.omp_set_num_threads(int(sys.argv[6]))
start = time.perf_counter()
if kind == "numpy":
    gallery = np.empty((n, dim), np.float32)
    for s in range(0, n, CHUNK):
        gallery[s:s + CHUNK] = chunk(s, min(n, s + CHUNK))
else:
    if kind == "flat":
        index = faiss.IndexFlatL2(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32)
    else:
        quantizer = faiss.IndexFlatL2(dim)
        index = (faiss.IndexIVFFlat(quantizer, dim, 4096) if kind == "ivf_flat"
                 else faiss.IndexIVFPQ(quantizer, dim, 4096, dim // 32 if dim > 128 else 16, 8))
        sample = np.concatenate([chunk(s, min(n, s + CHUNK)) for s in range(0, min(n, 160 * 4096 // 2), CHUNK)])
        index.train(sample[: 40 * 4096])
        del sample
    for s in range(0, n, CHUNK):
        index.add(chunk(s, min(n, s + CHUNK)))
build = time.perf_counter() - start
memory = rss_mib() - base
settings = {"flat": [None], "numpy": [None], "hnsw": [64, 256], "ivf_flat": [16, 64], "ivf_pq": [16, 64]}[kind]
rows = []
truth = np.load(reference) if kind != "flat" else None
for setting in settings:
    if kind == "numpy":
        from reid_tf.gallery import exact_search
        run = lambda: exact_search(queries, gallery, K, engine="numpy")
    else:
        if kind == "hnsw":
            index.hnsw.efSearch = setting
        elif setting:
            index.nprobe = setting
        run = lambda: index.search(queries, K)[::-1]
    run()
    start = time.perf_counter()
    found, _ = run()
    seconds = time.perf_counter() - start
    if kind == "flat":
        np.save(reference, found)
        recall = 1.0
    else:
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)]))
    row = {"kind": kind, "setting": setting, "n": n, "dim": dim, "build_s": round(build, 2),
           "query_100_s": round(seconds, 4), "memory_mib": round(memory), "recall_at_10": round(recall, 4)}
    if kind == "numpy":
        row["same_rows_as_faiss"] = bool((found == truth).all())
    rows.append(row)
print(json.dumps(rows))
""".replace("{K}", str(K)).replace("{QUERIES}", str(QUERIES)).replace("{PER_ID}", str(PER_ID)).replace(
    "{CHUNK}", str(CHUNK))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dims", default="128,2048")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output_json")
    parser.add_argument("--work_dir", default=os.path.join(REPO, "runs", "gallery_scale"))
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    results = []
    for dim in map(int, args.dims.split(",")):
        reference = os.path.join(args.work_dir, f"exact_{args.n}_{dim}.npy")
        for kind in args.kinds.split(","):
            child = subprocess.run([sys.executable, "-c", CHILD, kind, str(args.n), str(dim), reference, REPO,
                                    str(args.threads)], capture_output=True, text=True)
            if child.returncode:
                print(f"{kind} {dim}-d failed: {child.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            for row in json.loads(child.stdout.strip().splitlines()[-1]):
                results.append(row)
                print(json.dumps(row), flush=True)
            if args.output_json:  # after each kind: a stopped run keeps what it measured
                with open(args.output_json, "w") as f:
                    json.dump({"threads": args.threads, "queries": QUERIES, "k": K, "rows": results}, f, indent=2)


if __name__ == "__main__":
    main()
