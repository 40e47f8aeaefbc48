"""The one rule that judges each conclusion of the log's re-run, stated before any figure (RULE),
and the figures it reads from the runs' summaries: d and its standard error over seeds, and what
the miniature must show before it can test a claim at all."""

from __future__ import annotations

import math
import os
import re

import numpy as np

from reid_tf.training_log import FEATURES, WITHDRAWN, Claim

MARGIN = 0.02  # a no-difference claim holds when the difference is surely within this
RULE = (f"d = the row's mean over seeds minus the compared run's at the same step (per seed where both come"
        f" from one run), SE = its standard error from the seeds; a claimed difference holds if d has the"
        f" claimed sign and |d| >= 2 SE, does not hold if it has the other sign and |d| >= 2 SE, else cannot"
        f" tell; a claimed lack of difference holds if |d| + 2 SE <= {MARGIN}, does not hold if |d| >= 2 SE,"
        f" else cannot tell; rows the authors withdrew (b19bb52) are withdrawn; a claim is not testable here"
        f" when the miniature cannot act on it: when it compares runs at two input sizes and the stand-in's"
        f" raw features at those sizes differ (paired by seed, a claim of no difference between them does not"
        f" hold), or when it compares two continuations of one run and neither moves (each, paired by seed"
        f" against that run at the step they resumed from, holds as a claim of no difference)")


def value(summary: dict, metric: str, step: int) -> float | None:
    """One seed's figure: `metric` of its validation line at `step` (or its first step's loss)."""
    if metric == "first_loss":
        return (summary.get("first_step") or {}).get("loss")
    for row in summary["validations"]:
        if row["step"] == step and metric in row:
            return float(row[metric])
    return None


def figures(summaries: dict, run: str, metric: str, step: int) -> dict[int, float]:
    """{seed: figure} of a run where it has one."""
    out = {}
    for seed, s in sorted(summaries.get(run, {}).items()):
        v = value(s, metric, step)
        if v is not None and math.isfinite(v):
            out[seed] = v
    return out


def difference(a: dict[int, float], b: dict[int, float], paired: bool) -> tuple[float, float, int, int]:
    """(d, its standard error, seeds of a, seeds of b); paired: over the seeds both have."""
    if paired:
        seeds = sorted(set(a) & set(b))
        diffs = np.array([a[s] - b[s] for s in seeds])
        se = diffs.std(ddof=1) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
        return (float(diffs.mean()) if len(diffs) else math.nan), float(se), len(seeds), len(seeds)
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    if len(x) < 2 or len(y) < 2:
        return (float(x.mean() - y.mean()) if len(x) and len(y) else math.nan), math.nan, len(x), len(y)
    return float(x.mean() - y.mean()), float(math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))), len(x), len(y)


def verdict(direction: int, d: float, se: float) -> str:
    """The rule (RULE) applied to one difference."""
    if not (math.isfinite(d) and math.isfinite(se)):
        return "cannot tell"
    shown = abs(d) >= 2 * se
    if direction == 0:
        return "holds" if abs(d) + 2 * se <= MARGIN else "does not hold" if shown else "cannot tell"
    if shown:
        return "holds" if d * direction > 0 else "does not hold"
    return "cannot tell"


def input_size(summary: dict) -> str:
    """A run's input size, HxW, from its flags."""
    return f"{flag(summary, 'image_height')}x{flag(summary, 'image_width')}"


def continues(summary: dict) -> tuple[str, int] | None:
    """(the run it continues, the step it resumed from) of a warm-started run, else None."""
    checkpoint = flag(summary, "init_checkpoint")
    if not checkpoint:
        return None
    return re.sub(r"-seed\d+$", "", os.path.basename(checkpoint.rstrip("/"))), summary["first_step"]["step"] - 1


def run_continues(summaries: dict, run: str) -> tuple[str, int] | None:
    """`continues` of a run (its seeds share their flags but the seed), None for a run not found."""
    seeds = summaries.get(run, {})
    return continues(next(iter(seeds.values()))) if seeds else None


def features_differ(summaries: dict, large: str, small: str) -> dict:
    """The stand-in's raw features at two sizes, paired by seed: d, SE and whether they differ."""
    a, b = (figures(summaries, f"{FEATURES}_{hw}", "mAP", 0) for hw in (large, small))
    d, se, _, _ = difference(a, b, paired=True)
    return {"what": f"the stand-in's raw features agree at {large} and {small}",
            "met": verdict(0, d, se) != "does not hold", **_rounded(d, se)}


def preconditions(summaries: dict, claim: Claim) -> list[dict]:
    """What the miniature must show before it can test `claim` (RULE's 'not testable here'), read
    from the runs' summaries: the stand-in fair to both sizes, a continuation that moves."""
    if not claim.compared_with or claim.compared_with == claim.row:
        return []
    runs = [summaries.get(claim.row, {}), summaries.get(claim.compared_with, {})]
    out = []
    sizes = sorted({input_size(s) for seeds in runs for s in seeds.values()},
                   key=lambda v: math.prod(map(int, v.split("x"))))
    if len(sizes) == 2:
        out.append(features_differ(summaries, sizes[1], sizes[0]))
    starts = {continues(s) for seeds in runs for s in seeds.values()}
    if len(starts) == 1 and None not in starts:
        (parent, start), = starts
        begun = figures(summaries, parent, claim.metric, start)
        arms = [difference(figures(summaries, run, claim.metric, claim.step), begun, paired=True)[:2]
                for run in (claim.row, claim.compared_with)]
        out.append({"what": f"the continuations of {parent} move from step {start}",
                    "met": any(verdict(0, d, se) != "holds" for d, se in arms),
                    "arms": [_rounded(d, se) for d, se in arms]})
    return out


def _rounded(d: float, se: float) -> dict:
    return {"mean_difference": None if not math.isfinite(d) else round(d, 6),
            "standard_error": None if not math.isfinite(se) else round(se, 6)}


def judge(summaries: dict, claim: Claim) -> dict:
    """One verdicts.json object."""
    a = figures(summaries, claim.row, claim.metric, claim.step)
    if claim.against is not None:
        b = {seed: claim.against for seed in a}
        d, se, n, _ = difference(a, b, paired=True)
        m = 0
    else:
        b = figures(summaries, claim.compared_with, claim.compared_metric or claim.metric,
                    claim.step if claim.compared_step is None else claim.compared_step)
        d, se, n, m = difference(a, b, claim.paired)
    by_rule = verdict(claim.direction, d, se)
    needs = preconditions(summaries, claim)
    label = "withdrawn" if claim.row in WITHDRAWN else (
        "not testable here" if not all(p["met"] for p in needs) else by_rule)
    return {"row": claim.row, "conclusion": claim.conclusion, "verdict": label, "by_the_rule": by_rule,
            "compared_with": claim.compared_with, "step": claim.step, "compared_step": claim.compared_step,
            "metric": claim.metric, "compared_metric": claim.compared_metric or claim.metric,
            "against": claim.against, "paired": claim.paired, "direction": claim.direction,
            "n_seeds": n, "n_seeds_compared": m, **_rounded(d, se), "preconditions": needs, "rule": RULE}


def flag(summary: dict, name: str, kind=str):
    """The last value a summary's flags give --`name` (None where they give none)."""
    values = [line.split("=", 1)[1] for line in summary["flags"] if line.startswith(f"--{name}=")]
    return kind(values[-1]) if values else None
