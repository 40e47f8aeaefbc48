"""Soak: N kill -9 at random instants of a tiny run, each followed by the same command again.

  python benchmarks/kill_soak.py [--kills=50] [--seed=0]
  python benchmarks/kill_soak.py --workers=2 --kills=20     # two localhost workers, a random one killed

Prints kills survived / N (the next start resumed, nothing edited by hand) and the steps lost per
kill (the step reached before the kill minus the step resumed from: at most the checkpoint
interval), then lets the run finish and checks every validation.jsonl line and the export. With
--workers=2 each kill lands once the workers train (in a step, a collective, a checkpoint save or
a validation), and it also prints the time from the kill until the last survivor exited.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from reid_tf import synthetic  # noqa: E402
from reid_tf.localhost import worker_envs  # noqa: E402

CHECKPOINT_EVERY = 5


def command(data_dir: str, out: str, max_steps: int) -> list[str]:
    return [sys.executable, "-m", "reid_tf.train", "--dataset=market1501", f"--data_dir={data_dir}",
            "--image_height=64", "--image_width=32", "--backbone=small", "--backbone_weights=none",
            "--return_id_num=4", "--image_num_every_id=2", "--valid_ids=4", "--train_eval_ids=4",
            f"--checkpoint_every={CHECKPOINT_EVERY}", f"--eval_every={CHECKPOINT_EVERY}",
            "--log_every=1", f"--max_steps={max_steps}", f"--output_dir={out}"]


def start_group(cmd: list[str], workers: int, logs: list[str]) -> list[subprocess.Popen]:
    procs = []
    for env, log in zip(worker_envs(workers), logs):
        with open(log, "w") as f:
            procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=f, env=env))
    return procs


def group_soak(args, rng, data_dir: str, out: str, root: str) -> None:
    """Kill a random worker of a two-worker group once it trains; time until the other exits."""
    cmd = command(data_dir, out, 100_000) + ["--heartbeat_timeout=10"]
    survived, lost, exits, reached = 0, [], [], None
    line = re.compile(r"^error: lost worker \d+ \(localhost:\d+\): .* start every worker again", re.M)
    for kill in range(args.kills):
        logs = [os.path.join(root, f"attempt-{kill}-worker{i}.log") for i in range(args.workers)]
        procs = start_group(cmd, args.workers, logs)
        deadline = time.time() + 120
        while time.time() < deadline and not re.search(r"step \d+/", open(logs[0]).read()):
            time.sleep(0.2)  # the workers have met and train
        time.sleep(rng.uniform(0.0, 8.0))
        victim = rng.randrange(args.workers)
        killed_at = time.time()
        procs[victim].send_signal(signal.SIGKILL)
        others = [p for i, p in enumerate(procs) if i != victim]
        for p in others:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
        exits.append(time.time() - killed_at)
        procs[victim].wait()
        text = open(logs[0]).read()
        resumed = re.search(r"resumed from \S+ at step (\d+)", text)
        if reached is not None and resumed:
            lost.append(reached - int(resumed.group(1)))
        ok = all(p.returncode not in (0, None) for p in others) and all(
            line.search(open(logs[i]).read()) and "Traceback" not in open(logs[i]).read()
            for i in range(args.workers) if i != victim)
        survived += bool(ok)
        steps = re.findall(r"step (\d+)/", text)
        reached = int(steps[-1]) if steps else (int(resumed.group(1)) if resumed else reached)
        print(f"kill {kill}: worker {victim} at step {reached}; the other exited after {exits[-1]:.1f} s"
              f"{'' if ok else ' WITHOUT the line'}", flush=True)
    final_logs = [os.path.join(root, f"final-worker{i}.log") for i in range(args.workers)]
    procs = start_group(command(data_dir, out, (reached or 0) + 2), args.workers, final_logs)
    codes = [p.wait(timeout=300) for p in procs]
    rows = [json.loads(row) for row in open(os.path.join(out, "validation.jsonl"))]
    steps = [r["step"] for r in rows]
    assert codes == [0] * args.workers, open(final_logs[0]).read()[-2000:]
    assert steps == sorted(set(steps)), steps
    exits.sort()
    print(f"kills survived: {survived} / {args.kills}; from the kill until the last survivor exited: median"
          f" {exits[len(exits) // 2]:.1f} s, max {exits[-1]:.1f} s; steps lost per kill: mean"
          f" {sum(lost) / max(len(lost), 1):.2f}, max {max(lost, default=0)} (checkpoint interval"
          f" {CHECKPOINT_EVERY}); the group restarted to step {(reached or 0) + 2}: exit 0,"
          f" {len(rows)} readable validation lines, steps increasing")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="reid_tf-soak-")
    data_dir, out = os.path.join(root, "market"), os.path.join(root, "run")
    synthetic.make_synthetic_market(data_dir, num_ids=24, num_cameras=3, images_per_camera=2,
                                    height=64, width=32, seed=0)
    if args.workers > 1:
        group_soak(args, rng, data_dir, out, root)
        return
    max_steps = 100_000
    survived, lost, reached = 0, [], None
    for kill in range(args.kills):
        log = os.path.join(root, f"attempt-{kill}.log")
        with open(log, "w") as f:
            proc = subprocess.Popen(command(data_dir, out, max_steps), cwd=REPO, stdout=f, stderr=f)
            time.sleep(rng.uniform(3.0, 12.0))  # start-up takes ~4 s: some kills land in it
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        text = open(log).read()
        if "Traceback" in text or re.search(r"^error:", text, re.M):
            print(f"kill {kill}: the start failed:\n{text[-2000:]}")
            continue
        resumed = re.search(r"resumed from \S+ at step (\d+)", text)
        if reached is not None and resumed:
            lost.append(reached - int(resumed.group(1)))
        survived += 1
        steps = re.findall(r"step (\d+)/", text)
        reached = int(steps[-1]) if steps else (int(resumed.group(1)) if resumed else reached)
        print(f"kill {kill}: step {reached}", flush=True)
    final = subprocess.run(command(data_dir, out, (reached or 0) + 2), cwd=REPO, capture_output=True,
                           text=True)
    rows = [json.loads(line) for line in open(os.path.join(out, "validation.jsonl"))]
    steps = [r["step"] for r in rows]
    assert final.returncode == 0, final.stderr[-2000:]
    assert steps == sorted(set(steps)), steps
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]
    print(f"kills survived: {survived} / {args.kills}; steps lost per kill: mean"
          f" {sum(lost) / max(len(lost), 1):.2f}, max {max(lost, default=0)} (checkpoint interval"
          f" {CHECKPOINT_EVERY}); final run to step {(reached or 0) + 2}: exit 0,"
          f" {len(rows)} readable validation lines, steps increasing")


if __name__ == "__main__":
    main()
