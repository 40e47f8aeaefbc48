"""How large a gallery the search SavedModel (--format=search) serves: for galleries of 10^4, 10^5
and 10^6 embeddings, the SavedModel's size, the memory of a process that loads it, and the latency
of its `search` signature at batch 1 (one query image: embedding it, then the exact top-10).
Each size is loaded in a fresh process; the top-10 is checked against tools/gallery.py's search.

  python benchmarks/search_serving.py --run=RUN [--sizes=10000,100000,1000000] [--output_json=F]

RUN is a training run (benchmarks/tracker.py leaves one in runs/tracker/); the gallery holds
random embeddings of the model's dimension, which costs search the same as real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

CHILD = r"""
import json, statistics, sys, time
import numpy as np
import tensorflow as tf
sys.path.insert(0, sys.argv[3])
from reid_tf import gallery


def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


export, index_dir = sys.argv[1], sys.argv[2]
before = rss_mib()
loaded = tf.saved_model.load(export)
search = loaded.signatures["search"]
height, width = search.structured_input_signature[1]["images"].shape[1:3]
image = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, height, width, 3)).astype(np.float32))
out = search(images=image)
times = []
for _ in range(20):
    start = time.perf_counter()
    search(images=image)["indices"].numpy()
    times.append(time.perf_counter() - start)
memory = rss_mib() - before
index = gallery.load(index_dir)
from reid_tf import exported
query = exported.open_export(sys.argv[4]).embed(image.numpy())  # the same model's plain export
rows, _ = gallery.exact_search(query, index.embeddings, out["indices"].shape[1], engine="numpy")
print(json.dumps({"latency_ms": round(1000 * statistics.median(times), 2), "loaded_mib": round(memory),
                  "same_as_gallery_tool": bool((rows == out["indices"].numpy()).all())}))
"""


def make_index(folder: str, identity: str, path: str, size: int, dim: int) -> None:
    import numpy as np

    from reid_tf import gallery

    os.makedirs(folder, exist_ok=True)
    meta, rng = gallery.new_meta(identity, path), np.random.default_rng(0)
    for start in range(0, size, 1 << 16):
        n = min(1 << 16, size - start)
        meta = gallery.append(folder, meta, rng.standard_normal((n, dim), dtype=np.float32),
                              [f"crops/{i:07d}_c1s1_{i:06d}_00.jpg" for i in range(start, start + n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--output_json")
    parser.add_argument("--work_dir", default=os.path.join(REPO, "runs", "search_serving"))
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from reid_tf import export_lib, exported
    from reid_tf import model as model_lib

    model, config, step = export_lib.restore_run_model(args.run)
    meta = export_lib.export_metadata(config, step, model_lib.embeddings_of(model.output).shape[-1])
    dim = meta["embedding_dim"]
    rows, plain = [], None
    for size in map(int, args.sizes.split(",")):
        index_dir = os.path.join(args.work_dir, f"index_{size}")
        if not os.path.exists(os.path.join(index_dir, "index.json")):
            make_index(index_dir, exported.identity_of(meta), args.run, size, dim)
        folder = export_lib.export_run(args.run, os.path.join(args.work_dir, f"search_{size}"), fmt="search",
                                       index=index_dir, k=10, overwrite=True)
        disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(folder) for f in fs)
        plain = plain or export_lib.export_run(args.run, os.path.join(args.work_dir, "plain"), overwrite=True)
        child = subprocess.run([sys.executable, "-c", CHILD, folder, index_dir, REPO, plain], capture_output=True,
                               text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if child.returncode:
            print(f"{size}: {child.stderr.strip().splitlines()[-1:]}")
            continue
        row = {"gallery": size, "dim": dim, "savedmodel_mib": round(disk / 2**20), **json.loads(
            child.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"run_backbone": config.model.backbone, "image": [config.data.image_height,
                                                                       config.data.image_width], "rows": rows}, f,
                      indent=2)


if __name__ == "__main__":
    main()
