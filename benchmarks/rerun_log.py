"""The 2017 training log, re-run in miniature through its re-read flagfiles and the user's command.

    python benchmarks/rerun_log.py --output_dir=runs/log --summaries=docs/training_log

First the ImageNet stand-in (benchmarks/imagenet_standin.py: ResNet-50 v2 pretrained at both sizes
used) and its raw features, scored at each size over five validation splits. Then every row of the
log (and the revised note's 7.19 row, and BoT) with `python -m reid_tf.train --flagfile=flags/ROW.cfg`
plus overrides of the data, the scale and the weights file only, at seeds 0-2; the controls the
verdicts compare with; seeds 3-4 of the baseline and of every run a verdict compares against.
Scale: images 224x112 -> 64x32 (2/7) and 256x128 -> 72x36 (the nearest even size of the same
aspect), every step count x 1/100. Each run's compact summary (validation lines, first-step
losses, effective flags, seed, the stand-in's fingerprint) goes to --summaries as it finishes;
started again, the script skips finished runs (those whose summary is in --summaries from this
stand-in, which is deterministic on one kind of CPU, so a fresh clone there resumes) and starts a
killed one again from its first step (a resumed run draws other batches, so its lines would not
reproduce from its flags and seed alone). It refuses to mix stand-ins: where the summaries came from another
one (another kind of CPU builds other last bits), it stops, unless --replace_summaries starts the
set again. The stand-in's own summary goes to --summaries too. tools/report.py --training_log=DIR
writes docs/training_log.md from the summaries.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from absl import flags as absl_flags  # noqa: E402

from reid_tf import training_log  # noqa: E402

SIZES = {(224, 112): (64, 32), (256, 128): (72, 36)}  # the miniature's input sizes
STEP_SCALE = 1 / 100
STEP_FLAGS = ("max_steps", "decay_steps", "checkpoint_every", "eval_every", "warmup_steps")
SYNTHETIC_IDS = 1501  # Market-1501's identities: 751 train, 750 test
SEEDS, MORE_SEEDS = (0, 1, 2), (3, 4)
FEATURE_SEEDS = (0, 1, 2, 3, 4)


def flagfile_values(name: str) -> dict[str, str]:
    """The flags a flagfile sets (nested flagfiles expanded by absl, the last value winning)."""
    args = absl_flags.FlagValues().read_flags_from_files([f"--flagfile=flags/{name}.cfg"], force_gnu=True)
    return dict(arg.lstrip("-").partition("=")[::2] for arg in args if "=" in arg)


def scaled(values: dict[str, str]) -> list[str]:
    """The size and step flags of a row, each times its factor."""
    size = (int(values["image_height"]), int(values["image_width"]))
    out = [f"--image_height={SIZES[size][0]}", f"--image_width={SIZES[size][1]}"]
    out += [f"--{k}={max(1, round(int(values[k]) * STEP_SCALE))}" for k in STEP_FLAGS if k in values]
    if values.get("lr_boundaries"):
        steps = [str(max(1, round(int(b) * STEP_SCALE))) for b in values["lr_boundaries"].split(",")]
        out.append(f"--lr_boundaries={','.join(steps)}")
    return out


def other_standins(summaries: str, fingerprint: str) -> dict[str, tuple[str, str]]:
    """{summary file: (its stand-in's fingerprint, the CPU it was made on)} of the summaries (and the
    stand-in's own) that did not start from the stand-in `fingerprint`."""
    out = {}
    paths = sorted(glob.glob(os.path.join(summaries, "runs", "*.json"))) + [os.path.join(summaries, "standin.json")]
    for path in paths:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                s = json.load(f)
            made_from = s.get("standin", s.get("fingerprint"))
            if made_from != fingerprint:
                out[path] = (made_from, s.get("cpu", "a CPU not recorded"))
    return out


def plan() -> list[tuple[str, int]]:
    """(run name, seed) in the order they run: seed by seed, so that a stop leaves whole seeds. The
    controls of what the 2017 code never ran (its augmentation's ops) are left out."""
    names = [r.name for r in training_log.RUNS if not r.never_ran]
    five = training_log.five_seed_runs()
    order = [(n, s) for s in SEEDS for n in names]
    return order + [(n, s) for s in MORE_SEEDS for n in names if n in five]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/log", help="relative to the repository root")
    parser.add_argument("--summaries", default="docs/training_log", help="where each run's summary goes")
    parser.add_argument("--standin_steps", type=int, default=1500)
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    parser.add_argument("--replace_summaries", action="store_true",
                        help="delete the summaries made from another stand-in and start the set again")
    args = parser.parse_args()
    out = os.path.relpath(os.path.abspath(args.output_dir), REPO)  # paths in flags stay relative
    os.makedirs(os.path.join(REPO, out, "logs"), exist_ok=True)
    data = ["--dataset=synthetic", f"--synthetic_ids={SYNTHETIC_IDS}",
            f"--data_dir={out}/data/synthetic-{SYNTHETIC_IDS}ids"]
    standin = f"{out}/standin"
    weights = f"{standin}/resnet50v2_standin.weights.h5"

    def execute(name: str, command: list[str]) -> None:
        print(f"{time.strftime('%H:%M:%S')} {name}: {' '.join(command)}", flush=True)
        if args.dry_run:
            return
        start = time.time()
        with open(os.path.join(REPO, out, "logs", f"{name}.log"), "a", encoding="utf-8") as log:
            done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            sys.exit(f"failed ({done.returncode}): {name}; its log: {out}/logs/{name}.log (run again to resume)")
        print(f"{time.strftime('%H:%M:%S')} {name}: {time.time() - start:.0f} s", flush=True)

    def summary_path(name: str, seed: int) -> str:
        return os.path.join(REPO, args.summaries, "runs", f"{name}-seed{seed}.json")

    def train(name: str, flagfile: str, seed: int, extra: list[str]) -> None:
        folder = f"{out}/runs/{name}-seed{seed}"
        values = flagfile_values(flagfile)
        max_steps = max(1, round(int(values["max_steps"]) * STEP_SCALE)) if "max_steps=0" not in extra else 0
        summary = summary_path(name, seed)
        if finished(summary) and (name, seed) not in parents_needed:
            return  # a committed summary: a fresh clone resumes where the last one stopped
        if os.path.isdir(os.path.join(REPO, folder, "export", str(max_steps))):
            if not finished(summary) and not args.dry_run:
                training_log.write_summary(os.path.join(REPO, folder), name, seed, summary, fingerprint)
            return
        if os.path.isdir(os.path.join(REPO, folder)) and not args.dry_run:
            shutil.rmtree(os.path.join(REPO, folder))  # killed: its lines must come from flags and seed alone
        command = [sys.executable, "-m", "reid_tf.train", f"--flagfile=flags/{flagfile}.cfg", *data,
                   *scaled(values), "--log_every=10", "--keep_checkpoints=1", "--eval_before_training",
                   f"--seed={seed}", f"--output_dir={folder}", *extra]
        if values.get("backbone_weights") == "imagenet":
            command.append(f"--backbone_weights={weights}")
        execute(f"{name}-seed{seed}", command)
        if not args.dry_run:
            training_log.write_summary(os.path.join(REPO, folder), name, seed, summary, fingerprint)

    def finished(summary: str) -> bool:
        """Its summary is there and started from this stand-in (every run here descends from it)."""
        if not os.path.exists(summary):
            return False
        with open(summary, encoding="utf-8") as f:
            return json.load(f).get("standin") == fingerprint

    if not os.path.exists(os.path.join(REPO, weights)):
        execute("standin", [sys.executable, "benchmarks/imagenet_standin.py", f"--output={standin}",
                            f"--steps={args.standin_steps}"])
    fingerprint = None
    if not args.dry_run:
        with open(os.path.join(REPO, standin, "standin.json"), encoding="utf-8") as f:
            fingerprint = json.load(f)["fingerprint"]
        others = other_standins(os.path.join(REPO, args.summaries), fingerprint)
        if others and not args.replace_summaries:
            kinds = sorted({f"{p} (made on {cpu})" for p, cpu in others.values()})
            sys.exit(f"{args.summaries}: {len(others)} summaries start from stand-in {'; '.join(kinds)}, not this"
                     f" machine's {fingerprint} ({training_log.cpu_kind()}): run on that kind of CPU, or pass"
                     " --replace_summaries to start the set again")
        for path in others:
            os.remove(path)
        os.makedirs(os.path.join(REPO, args.summaries), exist_ok=True)
        shutil.copyfile(os.path.join(REPO, standin, "standin.json"),
                        os.path.join(REPO, args.summaries, "standin.json"))
    only = set(args.only.split(",")) if args.only else None
    parents_needed: set[tuple[str, int]] = set()
    for size in ((64, 32), (72, 36)):  # the raw features, before any row: at each size used
        for seed in FEATURE_SEEDS:
            name = f"{training_log.FEATURES}_{size[0]}x{size[1]}"
            if only is None or name in only:
                train(name, "resnet", seed, ["--head=none", "--max_steps=0", f"--image_height={size[0]}",
                                             f"--image_width={size[1]}", "--note=stand-in features"])
    runs = {r.name: r for r in training_log.RUNS}
    todo = [(name, seed) for name, seed in plan() if only is None or name in only]
    for name, seed in todo:
        parent = runs[name].parent
        if parent and not finished(summary_path(name, seed)) and not os.path.isdir(
                os.path.join(REPO, out, "runs", f"{parent}-seed{seed}")):
            parents_needed.add((parent, seed))  # its checkpoint is gone: train it again first
    for name, seed in todo:
        run = runs[name]
        extra = list(run.overrides)
        if run.parent:  # the log's "train after": this re-run's parent run of the same seed
            extra.append(f"--init_checkpoint={out}/runs/{run.parent}-seed{seed}")
        train(name, run.flagfile, seed, extra)


if __name__ == "__main__":
    main()
