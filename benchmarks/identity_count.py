"""How many identities does your own data need? The quickstart's recipe trained on a folder per
identity (`--dataset=folders`) holding the first N training identities of the synthetic set (all
their images, cameras as folders), the same number of steps and images for every N, then scored
with tools/eval.py on the synthetic set's 100 test identities, which no run trained on.

  python benchmarks/identity_count.py --counts=10,20,40,80 --output_json=docs/benchmarks/identity_count.json

Resumable: a count whose run has its export is scored again, not trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from reid_tf import datasets
from reid_tf.datasets.market import load_market1501

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = ["--flagfile=flags/quickstart.cfg", "--dataset=folders", "--return_id_num=8", "--image_num_every_id=8",
          "--valid_ids=0", "--train_eval_ids=0", "--noeval_before_training", "--eval_every=300"]


def identity_tree(records: list, count: int, root: str) -> str:
    """DATA_DIR/<pid>/c<camera>/<image> of the first `count` identities, as links to the images."""
    chosen = sorted({r.pid for r in records})[:count]
    for r in records:
        if r.pid in chosen:
            folder = os.path.join(root, f"{r.pid:04d}", f"c{r.camid}")
            os.makedirs(folder, exist_ok=True)
            link = os.path.join(folder, os.path.basename(r.path))
            if not os.path.exists(link):
                os.symlink(os.path.abspath(r.path), link)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="10,20,40,80")
    parser.add_argument("--work_dir", default="runs/identity_count")
    parser.add_argument("--output_json")
    args = parser.parse_args()
    folder = datasets.synthetic_cache_dir(200)
    datasets.ensure_synthetic(folder, 200)
    train = load_market1501(folder)["train"]
    rows = []
    for count in map(int, args.counts.split(",")):
        data_dir = identity_tree(train, count, os.path.join(args.work_dir, "data", f"ids{count}"))
        run = os.path.join(args.work_dir, "runs", f"ids{count}")
        start = time.time()
        if not os.path.isdir(os.path.join(run, "export")):
            subprocess.run([sys.executable, "-m", "reid_tf.train", *RECIPE, f"--data_dir={data_dir}",
                            f"--output_dir={run}"], cwd=REPO, check=True)
        scores = os.path.join(run, "test_scores.json")
        subprocess.run([sys.executable, "tools/eval.py", f"--model={run}", "--dataset=synthetic",
                        f"--output_json={scores}"], cwd=REPO, check=True)
        with open(scores) as f:
            s = json.load(f)
        images = sum(1 for r in train if r.pid in sorted({r.pid for r in train})[:count])
        rows.append({"identities": count, "images": images, "mAP": s["mAP"], "rank1": s["rank1"],
                     "seconds": round(time.time() - start)})
        print(f"{count} identities ({images} images): test mAP {s['mAP']:.3f}, rank-1 {s['rank1']:.3f}", flush=True)
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"recipe": RECIPE, "test_identities": 100, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
