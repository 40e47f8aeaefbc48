"""Two kinds of CPU's re-runs of the training log, run by run: how far the kind moves a figure,
against how far the seed moves it.

    python benchmarks/compare_kinds.py docs/training_log_intended docs/training_log_kinds/bc765ac58c80835d

A stand-in and every run from it reproduce bit for bit on one kind of CPU only (oneDNN picks its
kernels by the vector instructions), so each kind builds a set of its own. For every run and seed
in both sets: the last validation line's mAP on each kind and their difference; beside it, where
the first set holds several seeds of that run, the standard deviation over them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reid_tf import training_log  # noqa: E402


def final_map(summary: dict) -> float:
    return summary["validations"][-1]["mAP"]


def compare(first: str, second: str) -> list[tuple[str, int, float, float, float | None]]:
    """(run, seed, mAP on the first kind, on the second, the first set's seed spread of the run)."""
    a, b = training_log.read_summaries(first), training_log.read_summaries(second)
    rows = []
    for run in sorted(set(a) & set(b)):
        seeds = [final_map(s) for s in a[run].values()]
        spread = statistics.stdev(seeds) if len(seeds) > 1 else None
        for seed in sorted(set(a[run]) & set(b[run])):
            rows.append((run, seed, final_map(a[run][seed]), final_map(b[run][seed]), spread))
    return rows


def markdown(first: str, second: str) -> str:
    """The comparison as a markdown table and a line of medians."""
    rows = compare(first, second)
    if not rows:
        return "(the two sets share no run and seed yet)\n"  # no paths: this text goes into docs/
    lines = ["| run | seed | mAP, first kind | mAP, second kind | difference | seed spread (sd), first kind |",
             "|---|---|---|---|---|---|"]
    for run, seed, x, y, spread in rows:
        sd = f"{spread:.4f}" if spread is not None else "one seed"
        lines.append(f"| {run} | {seed} | {x:.4f} | {y:.4f} | {y - x:+.4f} | {sd} |")
    differences = [abs(y - x) for _, _, x, y, _ in rows]
    spreads = sorted({(run, s) for run, _, _, _, s in rows if s is not None})
    tail = (f"; median seed spread of those runs {statistics.median(s for _, s in spreads):.4f}"
            if spreads else "")
    lines += ["", f"{len(rows)} pairs: median |difference| {statistics.median(differences):.4f}, largest"
              f" {max(differences):.4f}{tail}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="a summaries folder (the one the doc is written from)")
    parser.add_argument("second", help="another kind's summaries folder")
    args = parser.parse_args()
    if not compare(args.first, args.second):
        sys.exit(f"{args.first} and {args.second} share no run and seed: nothing to compare")
    print(markdown(args.first, args.second), end="")


if __name__ == "__main__":
    main()
