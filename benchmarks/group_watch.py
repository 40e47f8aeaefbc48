"""What surviving a lost worker costs per step: two localhost workers training as shipped, against
the same without the group watch (the probe of the collective executor every 5 s) and without
the per-step stop agreement (one scalar all-reduce a step); rounds interleaved, steps/s from the
chief's console.

  python benchmarks/group_watch.py [--steps=300] [--rounds=2] [--backbone=small]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from reid_tf import synthetic  # noqa: E402
from reid_tf.localhost import worker_envs  # noqa: E402

DRIVER = r"""
import os, runpy, sys
from reid_tf import distribute, group
if os.environ["VARIANT"] in ("no_watch", "neither"):
    group.GroupWatch.__enter__ = lambda self: self
if os.environ["VARIANT"] == "neither":
    distribute.make_any_worker = lambda strategy: bool
sys.argv = ["reid_tf.train"] + sys.argv[1:]
runpy.run_module("reid_tf.train", run_name="__main__", alter_sys=True)
"""


def steps_per_second(variant: str, flags: list[str]) -> float:
    procs = []
    for env in worker_envs(2, VARIANT=variant):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", DRIVER, *flags],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    err = [p.communicate()[1] for p in procs][0]
    rates = [float(r) for r in re.findall(r"([\d.]+) images/s", err)][2:]  # after tracing
    batch = 8
    return sum(rates) / len(rates) / batch


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backbone", default="small")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="reid_tf-watch-")
    data = os.path.join(root, "market")
    synthetic.make_synthetic_market(data, num_ids=24, num_cameras=3, images_per_camera=2, height=64, width=32)
    results = {v: [] for v in ("as shipped", "no_watch", "neither")}
    for round_ in range(args.rounds):
        for variant in results:
            out = os.path.join(root, f"{variant}-{round_}")
            flags = [
                "--dataset=market1501",
                f"--data_dir={data}",
                "--image_height=64",
                "--image_width=32",
                f"--backbone={args.backbone}",
                "--backbone_weights=none",
                "--return_id_num=4",
                "--image_num_every_id=2",
                "--valid_ids=2",
                "--train_eval_ids=2",
                f"--max_steps={args.steps}",
                f"--checkpoint_every={args.steps}",
                f"--eval_every={args.steps}",
                "--log_every=25",
                f"--output_dir={out}",
            ]
            results[variant].append(steps_per_second(variant, flags))
            print(f"round {round_}: {variant:10} {results[variant][-1]:.2f} steps/s", flush=True)
    shipped = sum(results["as shipped"]) / args.rounds
    for variant in ("no_watch", "neither"):
        other = sum(results[variant]) / args.rounds
        cost = (1 - shipped / other) * 100
        print(f"as shipped vs {variant}: {shipped / other:.3f}x the steps/s ({cost:+.1f}% per-step cost)")


if __name__ == "__main__":
    main()
