"""The one rule that judges each conclusion of the log's re-run, stated before any figure (RULE), its
verdict as data (DECISIONS), and the figures it reads from the runs' summaries: paired differences
over seeds, their tests, Holm's adjustment over the family, and what the miniature must show before
it can test a claim at all."""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np
from scipy import stats

from reid_tf.training_log import FEATURES, WITHDRAWN, Claim

MARGIN = 0.02  # a no-difference claim holds when the difference is surely within this
ALPHA, POWER = 0.05, 0.8
RULE = (f"Each claim compares a figure of the row with the compared run's at the same step; where the arms share"
        f" seeds (here they all do: a seed draws the held-out identities, the initial weights and the batches)"
        f" the comparison is paired: d = the mean of the per-seed differences, SE its standard error, n - 1"
        f" degrees of freedom; a claimed difference is tested by the two-sided t-test of d = 0, a claimed lack of"
        f" difference by that test and by two one-sided t-tests against +-{MARGIN} (TOST); the p-values of the"
        f" whole family (every test of every claim judged) are adjusted by Holm's step-down method; at"
        f" alpha = {ALPHA}, a claimed difference holds if the adjusted p of d = 0 is below alpha with d of the"
        f" claimed sign, does not hold if it is below alpha with the other sign; a claimed lack of difference"
        f" holds if the adjusted TOST p is below alpha, does not hold if the adjusted p of d = 0 is; anything"
        f" else cannot tell, and beside it stands the smallest |d| this design detects with power {POWER} at"
        f" Holm's strictest level, alpha / (2 m) two-sided over m tests; rows the authors withdrew (b19bb52) are"
        f" withdrawn; a claim is not testable here when the miniature cannot act on it: when it compares runs at"
        f" two input sizes and the stand-in's raw features at those sizes differ (paired by seed, unadjusted"
        f" p of d = 0 below alpha), or when it compares two continuations of one run and neither moves (each,"
        f" paired by seed against that run at the step they resumed from, unadjusted TOST p below alpha)")
# The verdict as data: (what is claimed, the test whose adjusted p is below ALPHA, d's sign against the
# claim) -> verdict, the first row that matches deciding; none matching: "cannot tell".
DECISIONS = (
    ("difference", "difference", "claimed", "holds"),
    ("difference", "difference", "other", "does not hold"),
    ("no difference", "equivalence", "any", "holds"),
    ("no difference", "difference", "any", "does not hold"),
)


def value(summary: dict, metric: str, step: int) -> float | None:
    """One seed's figure: `metric` of its validation line at `step` (or its first step's loss)."""
    if metric == "first_loss":
        return (summary.get("first_step") or {}).get("loss")
    for row in summary["validations"]:
        if row["step"] == step and metric in row:
            return float(row[metric])
    return None


def figures(summaries: dict, run: str, metric: str, step: int, relative_to: int | None = None) -> dict[int, float]:
    """{seed: figure} of a run where it has one; `relative_to`: divided by the seed's own figure at that step."""
    out = {}
    for seed, s in sorted(summaries.get(run, {}).items()):
        v = value(s, metric, step)
        base = 1.0 if relative_to is None else value(s, metric, relative_to)
        if v is not None and base and math.isfinite(v):
            out[seed] = v / base
    return out


@dataclasses.dataclass(frozen=True)
class Comparison:
    """d, its SE and degrees of freedom, and the unadjusted p of each test."""

    d: float
    se: float
    df: float
    n: int
    m: int
    paired: bool
    p_difference: float = math.nan
    p_equivalence: float = math.nan


def compare(a: dict[int, float], b: dict[int, float]) -> Comparison:
    """a - b, paired over the seeds both have where they share two or more, else Welch's."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) >= 2:
        diffs = np.array([a[s] - b[s] for s in seeds])
        d, se, df, n, m, paired = diffs.mean(), diffs.std(ddof=1) / math.sqrt(len(diffs)), len(diffs) - 1, \
            len(seeds), len(seeds), True
    else:
        x, y = np.array(list(a.values())), np.array(list(b.values()))
        if len(x) < 2 or len(y) < 2:
            d = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
            return Comparison(d, math.nan, math.nan, len(x), len(y), False)
        vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        d, se, n, m, paired = x.mean() - y.mean(), math.sqrt(vx + vy), len(x), len(y), False
        df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    if not se > 0:
        return Comparison(float(d), float(se), float(df), n, m, paired)
    p_diff = 2 * stats.t.sf(abs(d) / se, df)
    p_equiv = max(stats.t.sf((d + MARGIN) / se, df), stats.t.cdf((d - MARGIN) / se, df))
    return Comparison(float(d), float(se), float(df), n, m, paired, float(p_diff), float(p_equiv))


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN stays NaN and is not counted)."""
    order = sorted((p, i) for i, p in enumerate(ps) if math.isfinite(p))
    out, running = [math.nan] * len(ps), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        out[i] = running
    return out


def decide(direction: int, d: float, p_adjusted: dict[str, float]) -> str:
    """DECISIONS applied to one claim's adjusted p-values."""
    claimed = "no difference" if direction == 0 else "difference"
    sign = "claimed" if d * direction > 0 else "other"
    for what, test, wanted_sign, verdict_ in DECISIONS:
        if what == claimed and p_adjusted.get(test, math.nan) < ALPHA and wanted_sign in ("any", sign):
            return verdict_
    return "cannot tell"


def detectable(c: Comparison, tests: int) -> float:
    """The smallest |d| this comparison detects with POWER at Holm's strictest level over `tests` tests."""
    if not (math.isfinite(c.se) and c.df >= 1 and tests):
        return math.nan
    return float((stats.t.ppf(1 - ALPHA / (2 * tests), c.df) + stats.t.ppf(POWER, c.df)) * c.se)


def verdict(direction: int, c: Comparison) -> str:
    """The rule on one comparison alone, unadjusted: the not-testable checks' test."""
    return decide(direction, c.d, {"difference": c.p_difference, "equivalence": c.p_equivalence})


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
    c = compare(a, b)
    return {"what": f"the stand-in's raw features agree at {large} and {small}",
            "met": not c.p_difference < ALPHA, **_rounded(c)}


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
        arms = [compare(figures(summaries, run, claim.metric, claim.step), begun)
                for run in (claim.row, claim.compared_with)]
        out.append({"what": f"the continuations of {parent} move from step {start}",
                    "met": any(not c.p_equivalence < ALPHA for c in arms), "arms": [_rounded(c) for c in arms]})
    return out


def _rounded(c: Comparison) -> dict:
    def r(x: float) -> float | None:
        return None if not math.isfinite(x) else round(x, 6)

    return {"mean_difference": r(c.d), "standard_error": r(c.se)}


def comparison(summaries: dict, claim: Claim) -> Comparison:
    """The claim's row against what it is judged against, as the rule pairs them."""
    a = figures(summaries, claim.row, claim.metric, claim.step, claim.relative_to)
    if claim.against is not None:
        return compare(a, {seed: claim.against for seed in a})
    step = claim.step if claim.compared_step is None else claim.compared_step
    return compare(a, figures(summaries, claim.compared_with, claim.compared_metric or claim.metric, step,
                              claim.relative_to))


def tests_of(claim: Claim) -> tuple[str, ...]:
    return ("difference",) if claim.direction else ("difference", "equivalence")


def judge_all(summaries: dict, claims: tuple[Claim, ...] | list[Claim],
              classes: list[dict] | None = None) -> list[dict]:
    """verdicts.json: every claim judged, Holm's adjustment over the tests of the claims the rule judges."""
    comparisons = [comparison(summaries, c) for c in claims]
    needs = [preconditions(summaries, c) for c in claims]
    judged = [c.row not in WITHDRAWN and all(p["met"] for p in n) and math.isfinite(k.p_difference)
              for c, n, k in zip(claims, needs, comparisons)]
    family = [(i, t) for i, c in enumerate(claims) if judged[i] for t in tests_of(c)]
    adjusted = dict(zip(family, holm([getattr(comparisons[i], f"p_{t}") for i, t in family])))
    out = []
    for i, (claim, c) in enumerate(zip(claims, comparisons)):
        p_adj = {t: adjusted.get((i, t), math.nan) for t in tests_of(claim)}
        by_rule = decide(claim.direction, c.d, p_adj) if judged[i] else verdict(claim.direction, c)
        label = "withdrawn" if claim.row in WITHDRAWN else by_rule if judged[i] else "not testable here"
        half = (stats.t.ppf(0.975, c.df) * c.se) if math.isfinite(c.se) and c.df >= 1 else math.nan
        out.append({
            "row": claim.row, "conclusion": claim.conclusion, "verdict": label, "by_the_rule": by_rule,
            "class": (classes[i] if classes else {}).get("class"), "class_why": (classes[i] if classes else {}).get(
                "why"), "compared_with": claim.compared_with, "step": claim.step,
            "compared_step": claim.compared_step, "metric": claim.metric,
            "compared_metric": claim.compared_metric or claim.metric, "relative_to": claim.relative_to,
            "against": claim.against, "paired": c.paired, "direction": claim.direction, "n_seeds": c.n,
            "n_seeds_compared": 0 if claim.against is not None else c.m, **_rounded(c),
            "ci95": None if not math.isfinite(half) else [round(c.d - half, 6), round(c.d + half, 6)],
            "p": {t: _p(getattr(c, f"p_{t}")) for t in tests_of(claim)},
            "p_adjusted": {t: _p(v) for t, v in p_adj.items()},
            "detectable_effect": _p(detectable(c, len(family))) if judged[i] else None,
            "note": claim.note, "preconditions": needs[i], "rule": RULE})
    return out


def _p(x: float) -> float | None:
    return None if not math.isfinite(x) else float(f"{x:.6g}")


def flag(summary: dict, name: str, kind=str):
    """The last value a summary's flags give --`name` (None where they give none)."""
    values = [line.split("=", 1)[1] for line in summary["flags"] if line.startswith(f"--{name}=")]
    return kind(values[-1]) if values else None
