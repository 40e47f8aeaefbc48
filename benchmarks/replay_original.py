"""The 2017 trainer, run on TF 1.2.1, against reid_tf replaying its records (tools/replay_original.py's
library): the figures of docs/original.md's "Checked by running the original".

  python benchmarks/replay_original.py --output_json=docs/benchmarks/original_replay.json \\
      [--root=WORK]   # a run_all.sh --save_every_step folder: teacher forcing, F from the original's C
      [--extra=WORK2/out]   # records of another seed, P x K and size, made the same way

Parts: every shared record free-running; each quirk flag that acts in a state flipped (which figure
moves, and by how much); with --root, one step from the original's own checkpoint at step t (loss(t)
and loss(t + 1)) and F continued from the original's C checkpoint.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import common
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from reid_tf import console, original_run  # noqa: E402
from reid_tf.errors import ReidError  # noqa: E402

SHARED = os.path.join(os.path.dirname(REPO), "shared", "oracles", "original_training")
# (state, flag flipped, what the log flagfile has): each quirk flag acting in that state.
FLIPS = [
    ("A", "--pixel_range=backbone", "unit"),
    ("B", "--backbone_bn=train", "frozen"),
    ("D", "--backbone_bn=frozen", "train_no_update"),
    ("A", "--head_bn=batch_no_update", "inference_init"),
    ("C", "--head_bn=inference_init", "batch_no_update"),
    ("A", "--trainable=all", "head"),
    ("A", "--nostaircase", "staircase"),
    ("A", "--adam_epsilon=1e-7", "1e-8"),
    ("B", "--adam_epsilon=1e-7", "1e-8"),
    ("A", "--margin=0.3", "soft"),
    ("A", "--mining=batch_hardest", "batch_hard"),
    ("A", "--embedding_bias", "no bias"),
    ("A", "--head_init=keras_default", "truncated_normal"),
]


def replay(record: str, work: str, overrides=(), init=None) -> dict:
    began = time.perf_counter()
    out = original_run.replay_record(record, os.path.join(work, "out.npz"), work, list(overrides), init,
                                     os.path.join(REPO, "flags"))
    with np.load(record) as arrays:
        figures = original_run.compare(out, arrays)
    return {**figures, "seconds": round(time.perf_counter() - began, 1)}


def free_running(records: list[str], scratch: str) -> dict:
    rows = {}
    work = os.path.join(scratch, "free")  # one folder: F reuses the replay of its C
    for path in sorted(records, key=lambda p: (os.path.basename(p)[-9:], os.path.basename(p))):  # C before F
        name = os.path.basename(path)[:-4]
        rows[name] = replay(path, work)
        print(name, json.dumps(rows[name]), flush=True)
    return rows


def flips(scratch: str, only: str = "") -> list[dict]:
    rows = []
    for state, flag, original in FLIPS:
        if only and only not in flag:
            continue
        record = os.path.join(SHARED, f"original_train_{state}_seed0.npz")
        try:
            figures = replay(record, tempfile.mkdtemp(dir=scratch), [flag])
        except ReidError as e:  # refused in one line: the flip cannot even start
            figures = {"refused": str(e)}
        rows.append({"state": state, "flag": flag, "original": original, **figures})
        print(state, flag, json.dumps(figures), flush=True)
    return rows


def teacher_forcing(root: str, scratch: str, steps: tuple[int, ...] = ()) -> list[dict]:
    rows = []
    for record in sorted(glob.glob(os.path.join(root, "out", "original_train_[A-E]_seed*.npz"))):
        name = os.path.basename(record)[:-4]
        state, seed = name.split("_")[2], name.split("_")[3]
        every = os.path.join(root, state, seed, "every_step")
        with np.load(record) as arrays:
            losses = arrays["loss"]
        for t in sorted(int(n[5:-6]) for n in os.listdir(every) if n.endswith(".index")):
            if 0 < t < len(losses) - 1 and (not steps or t in steps):
                out = original_run.replay_record(record, os.path.join(scratch, f"{name}_{t}.npz"),
                                                 tempfile.mkdtemp(dir=scratch), [f"--max_steps={t + 2}"],
                                                 os.path.join(every, f"ckpt-{t}"), os.path.join(REPO, "flags"))
                rows.append({"record": name, "t": t, "loss_t": float(abs(out["loss"][0] / losses[t] - 1)),
                             "loss_t1": float(abs(out["loss"][1] / losses[t + 1] - 1))})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=SHARED)
    parser.add_argument("--root", default="", help="a run_all.sh --save_every_step work folder")
    parser.add_argument("--extra", default="", help="a folder of records made with other settings")
    parser.add_argument("--parts", default="free,flips,teacher,extra")
    parser.add_argument("--output_json", default="")
    parser.add_argument("--update", action="store_true", help="keep the parts of --output_json not run now")
    parser.add_argument("--flip", default="", help="only the flips whose flag contains this")
    parser.add_argument("--teacher_steps", default="", help="only these t (comma-separated)")
    args = parser.parse_args()
    console.quiet()
    parts = args.parts.split(",")
    given = [name for name in ("root", "extra") if getattr(args, name)]  # folders of this machine: named, not kept
    result = {"cpu": common.cpu_kind(), "parts": parts, "folders_given": given}
    if args.update and os.path.exists(args.output_json):
        with open(args.output_json, encoding="utf-8") as f:
            old = json.load(f)
        result = {**old, "cpu": result["cpu"], "parts": sorted(set(old.get("parts", [])) | set(parts)),
                  "folders_given": sorted(set(old.get("folders_given", [])) | set(given))}
    with tempfile.TemporaryDirectory() as scratch:
        if "free" in parts:
            result["records"] = free_running(glob.glob(os.path.join(args.records, "original_train_*.npz")), scratch)
        if "flips" in parts:
            done = [r for r in result.get("flips", []) if args.flip and args.flip not in r["flag"]]
            new = flips(scratch, args.flip)
            result["flips"] = sorted(done + new, key=lambda r: [f[1] for f in FLIPS].index(r["flag"])
                                     if r["flag"] in [f[1] for f in FLIPS] else len(FLIPS))
        if "teacher" in parts and args.root:
            steps = tuple(int(t) for t in args.teacher_steps.split(",") if t)
            result["teacher_forcing"] = teacher_forcing(args.root, scratch, steps)
            c = sorted(glob.glob(os.path.join(args.root, "C", "seed0", "check_point", "*.index")))[-1][:-6]
            result["f_from_original_c"] = replay(os.path.join(args.root, "out", "original_train_F_seed0.npz"),
                                                 os.path.join(scratch, "f_from_c"), init=c)
        if "extra" in parts and args.extra:
            result["extra"] = free_running(glob.glob(os.path.join(args.extra, "original_train_*.npz")), scratch)
            result["extra_setup"] = json.load(open(glob.glob(os.path.join(args.extra, "*.json"))[0]))["harness"]
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
