"""The original training log, re-run: every row through its own flagfile and the user's commands.

    python benchmarks/rerun_log.py --output_dir=runs/log                 # miniature, on a CPU
    python benchmarks/rerun_log.py --output_dir=runs/log --data_dir=data/market1501 \\
        --backbone_weights=imagenet --scale=1                           # the log itself, on a GPU

In miniature (the default) it first pretrains the ImageNet stand-in (benchmarks/imagenet_standin.py)
and scores its pooled features on the validation identities ("ImageNet features"); the data is a
synthetic Market-1501 of 1501 identities. Then it trains each row with `python -m reid_tf.train
--flagfile=flags/ROW.cfg` plus overrides for the data, the scale and the weights file only:
every image size times --scale (224x112 -> 64x32), every step count times --step_scale (steps,
decay steps, checkpoint, validation, warm-up and boundaries), one checkpoint kept per row. The
warm-started "hardest" row starts from this re-run's resnet_finetuning. Then rows of the seed
spread (the same row, other seeds), then `tools/report.py` with the log's results beside ours.
Started again, it skips finished rows and resumes a killed one (the trainer resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from absl import flags as absl_flags  # noqa: E402

# The log's rows in its order: flagfile, date, the log's result, the log's conclusion (its words).
ROWS = [
    ("resnet", "7.10", "step 20000, mAP 0.52", "baseline"),
    ("resnet_softmax", "7.11", "output features tend to 0", "softmax is worse"),
    ("resnet_no_pool", "7.11", "output features tend to 0", "delete global pool is worse"),
    ("resnet_finetuning", "7.11", "step 15000, mAP 0.88", "fine tuning resnet is perfect"),
    ("resnet_finetuning_hardest", "7.11", "step 25000, mAP 0.89",
     "batch hardest triplet loss seems no much help"),
    ("resnet_noprocess", "7.11", "step 30000, mAP 0.92 (train 0.97)",
     "no data enhancement seems ok, maybe train data set is big enough"),
    ("resnet_enhance", "7.12", "step 25000, mAP 0.92 (train 0.98)", "update data enhancement seems good"),
    ("resnet_enhance_rerank", "7.13", "step 30000, mAP 0.89 (train 0.98)", "re-ranking is helpful"),
    ("resnet_fc", "7.14", "step 15000, mAP 0.78",
     "one fc is not good. fc init should small enough so loss near 0.7!!!"),
    ("resnet_IDE", "7.16", "step 5000, mAP 0.4????", "big image seems not good"),
    ("resnet_maxpool", "7.16", "step 30000, mAP 0.18????", "dropout is worse"),
    ("resnet_256", "7.17", "step 5000, mAP 0.41????", "big output dim is bad"),
    ("resnet_100", "7.18", "step 40000, mAP 0.87 (train 0.988)", "decrease output dim seems just so so"),
    ("resnet_bot", "(BoT)", "BoT on Market-1501: mAP 0.859, rank-1 0.945",
     "not in the log: the strong baseline"),
]
STEP_FLAGS = ("max_steps", "decay_steps", "checkpoint_every", "eval_every", "warmup_steps", "log_every")
SIZE_FLAGS = ("image_height", "image_width")
MINIATURE_SCALE = 64 / 224
MINIATURE_STEP_SCALE = 1 / 50
SYNTHETIC_IDS = 1501  # Market-1501's identities: 751 train, 750 test


def flagfile_values(name: str) -> dict[str, str]:
    """The flags a flagfile sets (nested flagfiles expanded by absl, the last value winning)."""
    args = absl_flags.FlagValues().read_flags_from_files([f"--flagfile=flags/{name}.cfg"], force_gnu=True)
    values = {}
    for arg in args:
        key, _, value = arg.lstrip("-").partition("=")
        values[key] = value
    return values


def scaled(values: dict[str, str], scale: float, step_scale: float) -> list[str]:
    """The size and step flags of a row, each times its one factor."""
    out = [f"--{k}={round(int(values[k]) * scale)}" for k in SIZE_FLAGS if k in values]
    out += [f"--{k}={max(1, round(int(values[k]) * step_scale))}" for k in STEP_FLAGS if k in values]
    if values.get("lr_boundaries"):
        steps = [str(max(1, round(int(b) * step_scale))) for b in values["lr_boundaries"].split(",")]
        out.append(f"--lr_boundaries={','.join(steps)}")
    return out


def run(command: list[str], log_path: str) -> float:
    """Run a command from the repository root, its output into a log file; stop on failure."""
    start = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        with open(log_path, encoding="utf-8") as log:
            tail = log.read().splitlines()[-5:]
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n  " + "\n  ".join(tail) +
                 f"\n  (whole log: {log_path}; run the same command again to resume)")
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/log")
    parser.add_argument("--data_dir", default="", help="a Market-1501 folder; default: the synthetic set")
    parser.add_argument("--backbone_weights", default="",
                        help="imagenet, or a file; default: the stand-in, pretrained first")
    parser.add_argument("--scale", type=float, default=MINIATURE_SCALE, help="factor of every image size")
    parser.add_argument("--step_scale", type=float, default=None,
                        help="factor of every step count (default: 1 at --scale=1, else"
                        f" {MINIATURE_STEP_SCALE})")
    parser.add_argument("--standin_steps", type=int, default=1500)
    parser.add_argument("--seeds", default="1,2", help="more seeds of the spread rows (seed 0 is the row)")
    parser.add_argument("--spread_rows", default="resnet,resnet_finetuning")
    parser.add_argument("--only", default="", help="comma-separated rows (default: all)")
    parser.add_argument("--report_only", action="store_true", help="only write the report of what ran")
    args = parser.parse_args()
    step_scale = args.step_scale if args.step_scale is not None else (
        1.0 if args.scale == 1 else MINIATURE_STEP_SCALE)
    out = os.path.abspath(args.output_dir)
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    python = sys.executable
    timings = _load(os.path.join(out, "timings.json"))

    def timed(name, command):
        seconds = run(command, os.path.join(logs, f"{name}.log"))
        timings[name] = round(timings.get(name, 0) + seconds)
        _save(os.path.join(out, "timings.json"), timings)
        print(f"{name}: {seconds:.0f} s", flush=True)

    data = [f"--data_dir={args.data_dir}"] if args.data_dir else [
        "--dataset=synthetic", f"--synthetic_ids={SYNTHETIC_IDS}",
        f"--data_dir={os.path.join(out, 'data', f'synthetic-{SYNTHETIC_IDS}ids')}"]
    weights = args.backbone_weights
    if not weights and not args.report_only:
        standin = os.path.join(out, "standin")
        if not os.path.exists(os.path.join(standin, "resnet50_standin.weights.h5")):
            timed("standin", [python, "benchmarks/imagenet_standin.py", f"--output={standin}",
                              f"--steps={args.standin_steps}"])
        weights = os.path.join(standin, "resnet50_standin.weights.h5")

    def row_command(name, folder, extra=()):
        values = flagfile_values(name)
        command = [python, "-m", "reid_tf.train", f"--flagfile=flags/{name}.cfg", *data,
                   *scaled(values, args.scale, step_scale), "--keep_checkpoints=1",
                   f"--output_dir={folder}", *extra]
        if values.get("backbone_weights") == "imagenet":
            command.append(f"--backbone_weights={weights}")
        if values.get("init_checkpoint"):  # the log's warm start: this re-run's parent row
            parent = os.path.basename(values["init_checkpoint"].rstrip("/"))
            command.append(f"--init_checkpoint={os.path.join(out, 'rows', parent)}")
        return command, max(1, round(int(values["max_steps"]) * step_scale))

    def train(name, folder, extra=()):
        command, max_steps = row_command(name, folder, extra)
        if os.path.isdir(os.path.join(folder, "export", str(max_steps))):
            return  # finished
        timed(os.path.basename(folder), command)

    if not args.report_only:
        if not args.backbone_weights:  # what the stand-in's features give before any re-ID training
            features = os.path.join(out, "standin", "features")
            if not os.path.exists(os.path.join(features, "validation.jsonl")):
                command, _ = row_command("resnet", features, [
                    "--head=none", "--max_steps=0", "--eval_before_training", "--note=stand-in features"])
                timed("standin_features", command)
        only = set(args.only.split(",")) if args.only else None
        for name, *_ in ROWS:
            if only is None or name in only:
                train(name, os.path.join(out, "rows", name), [f"--note=log: {ROWS_BY_NAME[name][3]}"])
        for name in args.spread_rows.split(","):
            for seed in filter(None, args.seeds.split(",")):
                if only is None or name in only:
                    train(name, os.path.join(out, "seeds", f"{name}-seed{seed}"), [f"--seed={seed}"])
    reference = os.path.join(out, "original_log.json")
    _save(reference, {name: f"{date}: {result}" for name, date, result, _ in ROWS})
    subprocess.run([python, "tools/report.py", os.path.join(out, "rows"), f"--reference={reference}",
                    f"--output={os.path.join(out, 'report.md')}", f"--plot={os.path.join(out, 'curves.png')}",
                    f"--json={os.path.join(out, 'report.json')}"], cwd=REPO, check=True)
    subprocess.run([python, "tools/report.py", os.path.join(out, "seeds"), os.path.join(out, "standin"),
                    f"--output={os.path.join(out, 'seeds.md')}", f"--json={os.path.join(out, 'seeds.json')}"],
                   cwd=REPO, check=False)
    total = sum(timings.values())
    print(f"training, validation and export: {total / 60:.0f} min in all (per step: {timings})")


ROWS_BY_NAME = {row[0]: row for row in ROWS}


def _load(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _save(path: str, value: dict) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
