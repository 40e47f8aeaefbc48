"""Re-run one run of the training-log re-run from its committed summary (its effective flags and
seed) and compare every validation line with the summary's.

  python benchmarks/reproduce_run.py docs/training_log_intended/runs/resnet_softmax-seed0.json [--output_dir=runs/repro]

Run it from the folder the re-run used (its flags name the stand-in's weights and the data under
runs/log/, which `benchmarks/rerun_log.py` makes), on the kind of CPU that made the summary (its
`cpu`). Exit status 0 when every line matches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-6  # the validation lines hold six decimals


def mismatches(committed: list[dict], reproduced: list[dict]) -> list[str]:
    """Each (step, key) whose figure differs by more than the lines' rounding; missing steps too."""
    by_step = {row["step"]: row for row in reproduced}
    out = []
    for row in committed:
        mine = by_step.get(row["step"])
        if mine is None:
            out.append(f"step {row['step']}: not reproduced")
            continue
        for key, value in row.items():
            if isinstance(value, float) and abs(mine.get(key, float("nan")) - value) > TOLERANCE:
                out.append(f"step {row['step']} {key}: committed {value}, reproduced {mine.get(key)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary")
    parser.add_argument("--output_dir", default="runs/repro")
    args = parser.parse_args()
    with open(args.summary) as f:
        summary = json.load(f)
    out = os.path.join(args.output_dir, summary["run"])
    flags = [f for f in summary["flags"] if not f.startswith("--output_dir=")] + [f"--output_dir={out}"]
    subprocess.run([sys.executable, "-m", "reid_tf.train", *flags], check=True, stdout=subprocess.DEVNULL)
    sys.path.insert(0, REPO)
    from reid_tf import console

    console.quiet(timestamps=False)
    from reid_tf import run_dir, training_log

    found = mismatches(summary["validations"], run_dir.read_validations(os.path.join(out, run_dir.VALIDATIONS)))
    for line in found:
        print(line)
    here = training_log.cpu_kind()
    if summary.get("cpu", here) != here:
        print(f"made on {summary['cpu']}, reproduced on {here}: another kind of CPU sums in another order,"
              " so the last bits (and, through training, the figures) are not expected to match")
    print(f"{summary['run']}: {len(summary['validations'])} validation lines,"
          f" {'all reproduced' if not found else f'{len(found)} figures differ'}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
