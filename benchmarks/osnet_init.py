"""What torchreid's initialisation (--backbone_init=torchreid: Kaiming normal, fan-out) does to the
OSNet quickstart, against Keras' default (Glorot uniform): the same flagfile, each init and seed a
run of its own, side by side in one invocation.

  python benchmarks/osnet_init.py [--seeds=0,1] [--output_json=F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--output_json")
    parser.add_argument("--work_dir", default=os.path.join(REPO, "runs", "osnet_init"))
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from reid_tf import run_dir

    rows = []
    for seed in map(int, args.seeds.split(",")):
        for init in ("keras", "torchreid"):
            out = os.path.join(args.work_dir, f"{init}-seed{seed}")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "reid_tf.train", "--flagfile=flags/quickstart_osnet.cfg",
                            f"--backbone_init={init}", f"--seed={seed}", f"--output_dir={out}"], check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)
            validations = run_dir.read_validations(os.path.join(out, run_dir.VALIDATIONS))
            first, last = validations[0], validations[-1]
            rows.append({"init": init, "seed": seed, "mAP_before": first["mAP"], "mAP_after": last["mAP"],
                         "rank1_after": last["rank1"], "step": last["step"],
                         "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"flagfile": "flags/quickstart_osnet.cfg", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
