"""BoT's tricks on the synthetic set, ResNet50 from scratch at 64x32: the same steps and seed for
every variant, each a run folder of the real trainer (`python -m reid_tf.train`), then one table
of validation mAP by `tools/report.py`.

    python benchmarks/bot_ablation.py [--steps=300] [--eval_every=50] [--runs=runs/ablation] [--only=NAME,...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIPLET_ONLY = ["--id_loss_weight=0", "--label_smoothing=0", "--neck=none", "--warmup_steps=0"]
PLUS = {"center_loss": ["--center_loss_weight=5e-4"], "last_stride_1": ["--last_stride=1"],
        "random_erasing": ["--augment=bot"], "weight_decay": ["--weight_decay=5e-4"],
        "hinge_0.3": ["--margin=0.3"]}
# The quickstart is BoT's ID loss + label smoothing + BNNeck + warm-up; "bot" adds the rest.
VARIANTS = {
    "triplet_only": TRIPLET_ONLY,
    "quickstart": [],
    "quickstart-id_loss": ["--id_loss_weight=0", "--label_smoothing=0"],
    "quickstart-bnneck": ["--neck=none"],
    "quickstart-label_smoothing": ["--label_smoothing=0"],
    "quickstart-warmup": ["--warmup_steps=0"],
    "bot": [flag for extra in PLUS.values() for flag in extra],
}
EXTRA = {f"quickstart+{name}": extra for name, extra in PLUS.items()}  # one trick added: --only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--runs", default=os.path.join(REPO, "runs", "ablation"))
    parser.add_argument("--only", default="", help="comma-separated variant names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    known = {**VARIANTS, **EXTRA}
    for name in names:
        out = os.path.join(args.runs, name)
        flags = ["--flagfile=flags/quickstart_resnet50.cfg", f"--max_steps={args.steps}",
                 f"--eval_every={args.eval_every}", f"--checkpoint_every={args.steps}", f"--output_dir={out}",
                 f"--note=ablation: {name}", *known[name]]
        start = time.time()
        done = subprocess.run([sys.executable, "-m", "reid_tf.train", *flags], cwd=REPO,
                              capture_output=True, text=True)
        print(f"{name}: exit {done.returncode}, {time.time() - start:.0f} s", flush=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
    subprocess.run([sys.executable, "tools/report.py", args.runs, "--baseline",
                    os.path.join(args.runs, "quickstart"), f"--output={args.runs}/report.md"], cwd=REPO)
    print(open(os.path.join(args.runs, "report.md")).read())


if __name__ == "__main__":
    main()
