"""The README's quickstart command as a new user runs it: an empty cache (the synthetic set is
generated), training, validation and the export, timed from outside; writes the wall time, the
validation mAP before and after, the peak memory and the run folder's size, per CPU kind.

  python benchmarks/quickstart.py [--flagfile=flags/quickstart.cfg] --output_json=docs/benchmarks/quickstart_KIND.json
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from common import cpu_kind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def folder_mib(path: str) -> float:
    return sum(os.path.getsize(os.path.join(top, n)) for top, _, names in os.walk(path) for n in names) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flagfile", default="flags/quickstart.cfg")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="reid_tf-quickstart-")
    out = os.path.join(scratch, "run")
    env = {**os.environ, "XDG_CACHE_HOME": os.path.join(scratch, "cache")}  # nothing generated before
    try:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "reid_tf.train", f"--flagfile={args.flagfile}",
                               f"--output_dir={out}"], cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"the quickstart failed:\n{done.stderr[-2000:]}")
        rows = [json.loads(line) for line in open(os.path.join(out, "validation.jsonl"))]
        result = {"cpu": cpu_kind(), "flagfile": args.flagfile, "wall_s": round(wall, 1),
                  "mAP_before": rows[0]["mAP"], "mAP_after": rows[-1]["mAP"], "rank1_before": rows[0]["rank1"],
                  "rank1_after": rows[-1]["rank1"], "steps": rows[-1]["step"],
                  "curve": [{"step": r["step"], "mAP": r["mAP"]} for r in rows],
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
                  "run_folder_mib": round(folder_mib(out), 1), "console_last": done.stdout.strip().splitlines()[-2]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
