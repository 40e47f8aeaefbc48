"""docs/training_log.md from the committed summaries of the log's re-run (docs/training_log/runs/):
the main table, the seed table, the stand-in's check, one per-step comparison per conclusion,
the controls, and the verdicts (verdicts.json), each by the one rule stated first; and the panels."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from reid_tf.training_log import CLAIMS, FEATURES, RUNS, WITHDRAWN, Claim, read_summaries

COMMAND = "python tools/report.py --training_log=docs/training_log --output=docs/training_log.md"
MARGIN = 0.02  # a no-difference claim holds when the difference is surely within this
RULE = (f"d = the row's mean over seeds minus the compared run's at the same step (per seed where both come"
        f" from one run), SE = its standard error from the seeds; a claimed difference holds if d has the"
        f" claimed sign and |d| >= 2 SE, does not hold if it has the other sign and |d| >= 2 SE, else cannot"
        f" tell; a claimed lack of difference holds if |d| + 2 SE <= {MARGIN}, does not hold if |d| >= 2 SE,"
        f" else cannot tell; rows the authors withdrew (b19bb52) are withdrawn; a claim the miniature cannot"
        f" test is not testable here")


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


def sizes_agree(summaries: dict) -> tuple[bool, dict]:
    """Whether the stand-in's raw features score alike at 64x32 and 72x36 (the same rule, as a
    claim of no difference), and the figures."""
    small, large = (figures(summaries, f"{FEATURES}_{size}", "mAP", 0) for size in ("64x32", "72x36"))
    d, se, n, m = difference(large, small, paired=True)
    return verdict(0, d, se) != "does not hold", {"64x32": small, "72x36": large, "d": d, "se": se}


def judge(summaries: dict, claim: Claim, sizes_ok: bool) -> dict:
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
    label = "withdrawn" if claim.row in WITHDRAWN else (
        "not testable here" if claim.row == "resnet_IDE_719" and not sizes_ok else by_rule)
    rounded = {"mean_difference": None if not math.isfinite(d) else round(d, 6),
               "standard_error": None if not math.isfinite(se) else round(se, 6)}
    return {"row": claim.row, "conclusion": claim.conclusion, "verdict": label, "by_the_rule": by_rule,
            "compared_with": claim.compared_with, "step": claim.step, "compared_step": claim.compared_step,
            "metric": claim.metric, "compared_metric": claim.compared_metric or claim.metric,
            "against": claim.against, "paired": claim.paired, "direction": claim.direction,
            "n_seeds": n, "n_seeds_compared": m, **rounded, "rule": RULE}


def _stat(values: dict[int, float]) -> str:
    if not values:
        return "–"
    x = np.array(list(values.values()))
    return f"{x.mean():.3f} ± {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}"


def _flag(summary: dict, name: str, kind=str):
    values = [line.split("=", 1)[1] for line in summary["flags"] if line.startswith(f"--{name}=")]
    return kind(values[-1]) if values else None


def _lr_sum(lr: float, rate: float, every: int, steps: int, staircase: bool, start: int = 0) -> float:
    """The learning rate of an exponential schedule summed over steps start..steps-1."""
    k = np.arange(start, steps)
    return float((lr * rate ** (np.floor(k / every) if staircase else k / every)).sum())


def budget(summary: dict) -> list[str]:
    """[steps, passes over the data, sum of lr here, at the log's steps] of one run's flags."""
    steps = _flag(summary, "max_steps", int)
    batch = _flag(summary, "return_id_num", int) * _flag(summary, "image_num_every_id", int)
    images = summary.get("train_images")
    passes = f"{steps * batch / images:.1f}" if images else "–"
    if _flag(summary, "lr_schedule") != "exponential":
        return [str(steps), passes, "–", "–"]
    lr, rate, every = (_flag(summary, n, float) for n in ("initial_learning_rate", "decay_rate", "decay_steps"))
    staircase = "--staircase" in summary["flags"]
    start = min(r["step"] for r in summary["validations"]) if summary["validations"] else 0
    here = _lr_sum(lr, rate, int(every), steps, staircase, start)
    log = _lr_sum(lr, rate, int(every) * 100, steps * 100, staircase, start * 100)
    return [str(steps), passes, f"{here:.3g}", f"{log:.3g}"]


def last_step(summaries: dict, run: str) -> int | None:
    steps = [r["step"] for s in summaries.get(run, {}).values() for r in s["validations"]]
    return max(steps) if steps else None


def _made_on(summary: dict) -> str:
    """Where a summary was made, as it recorded: the CPU's kind, TensorFlow's and Keras's versions."""
    versions = [f"{name} {summary[key]}" for key, name in (("tensorflow", "TensorFlow"), ("keras", "Keras"))
                if summary.get(key)]
    return (summary.get("cpu") or "a CPU not recorded") + (f" with {' and '.join(versions)}" if versions else "")


def tables(summaries: dict, verdicts: list[dict], sizes: tuple[bool, dict], standin: dict | None = None) -> str:
    """Every table of the doc, in markdown."""
    out = ["## The rule", "", RULE + ".", "", "## The table", "",
           "Each run's figures at its last step, mean ± standard deviation over its seeds: mAP (the original's"
           " protocol, as the log's rows; BoT's own protocol is Market-1501's), the same validation under"
           " Market-1501's protocol, rank-1, the first step's loss and the embeddings' mean norm.", "",
           "| date | run | the log's result | seeds | step | mAP | Market-1501 mAP | rank-1 | first loss | norm |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for run in RUNS:
        if run.is_control:
            continue
        step = last_step(summaries, run.name)
        market = "mAP" if run.name == "resnet_bot" else "market1501_mAP"
        cells = [figures(summaries, run.name, m, step) for m in ("mAP", market, "rank1")]
        first = figures(summaries, run.name, "first_loss", 0)
        norm = figures(summaries, run.name, "embedding_norm", step)
        out.append(f"| {run.date} | `{run.name}` | {run.result} | {len(summaries.get(run.name, {}))} | {step or '–'} | "
                   + " | ".join(_stat(c) for c in cells) + f" | {_stat(first)} | {_stat(norm)} |")
    prints: dict[tuple[str, str], int] = {}
    for seeds in summaries.values():
        for summary in seeds.values():
            key = (summary.get("standin") or "not recorded", _made_on(summary))
            prints[key] = prints.get(key, 0) + 1
    starts = "; ".join(f"`{k}`: {n} run(s), made on {where}" for (k, where), n in sorted(prints.items()))
    trained = "" if not standin else (
        f" It was trained for {standin['steps']} steps of {standin['batch']} images at {standin['sizes']}"
        f" on {_made_on(standin)} (`docs/training_log/standin.json`).")
    out += ["", "## The stand-in's raw features", "",
            "The runs start from the stand-in (`benchmarks/imagenet_standin.py`) whose weights have the"
            f" fingerprint {starts}.{trained} The stand-in and every run are deterministic on one kind of"
            " CPU, not across kinds: their kernels' sums follow the CPU's vector instructions, so a run"
            " reproduces its committed lines bit for bit (`benchmarks/reproduce_run.py`) on the kind that"
            " made it; another kind builds a set of its own, compared with this one in"
            " [cpu_kinds.md](cpu_kinds.md).", "",
            "Validation mAP of the stand-in's pooled features, no re-ID training, over five validation splits"
            " (seeds 0–4), at each input size the rows use:", "",
            "| size | mAP | seeds |", "|---|---|---|"]
    ok, f = sizes
    for size in ("64x32", "72x36"):
        out.append(f"| {size} | {_stat(f[size])} | {len(f[size])} |")
    d = "–" if not math.isfinite(f["d"]) else f"{f['d']:+.3f} (SE {f['se']:.3f})"
    out += ["", f"72x36 minus 64x32: {d}; by the rule, taken as a claim of no difference: "
            f"{'they agree or cannot be told apart' if ok else 'they differ'}.", ""]
    out += ["## The budget", "", "Per run, from its flags: the steps, how often each training image was seen"
            " (steps x P x K / training images), and the learning rate summed over the steps, here and at the"
            " log's step counts (x 100).", "",
            "| run | steps | passes over the data | sum of lr | the log's sum of lr |", "|---|---|---|---|---|"]
    for run in RUNS:
        seeds = summaries.get(run.name, {})
        if seeds:
            s = next(iter(seeds.values()))
            out.append(f"| `{run.name}` | " + " | ".join(budget(s)) + " |")
    out += ["", "## The seeds", "", "Each run's mAP at its last step, seed by seed:", "",
            "| run | step | " + " | ".join(f"seed {s}" for s in range(5)) + " |", "|---|---|" + "---|" * 5]
    for run in RUNS:
        step = last_step(summaries, run.name)
        f = figures(summaries, run.name, "mAP", step)
        out.append(f"| `{run.name}` | {step or '–'} | " + " | ".join(f"{f[s]:.3f}" if s in f else "–" for s in range(5))
                   + " |")
    out += ["", "## The controls", "", "| control | what it changes | seeds | step | mAP |", "|---|---|---|---|---|"]
    for run in RUNS:
        if run.is_control:
            step = last_step(summaries, run.name)
            out.append(f"| `{run.name}` | {run.what} | {len(summaries.get(run.name, {}))} | {step or '–'} | "
                       f"{_stat(figures(summaries, run.name, 'mAP', step))} |")
    out += ["", "## The verdicts", "",
            "| run | the log's conclusion | compared with | metric | step | seeds | d | SE | by the rule | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        other = f"`{v['compared_with']}`" if v["compared_with"] else f"{v['against']:.4f}"
        if v["compared_step"] is not None:
            other += f" at step {v['compared_step']}"
        metric = v["metric"] if v["metric"] == v["compared_metric"] else f"{v['metric']} vs {v['compared_metric']}"
        d = "–" if v["mean_difference"] is None else f"{v['mean_difference']:+.3f}"
        se = "–" if v["standard_error"] is None else f"{v['standard_error']:.3f}"
        out.append(f"| `{v['row']}` | {v['conclusion']} | {other} | {metric} | {v['step']} | {v['n_seeds']}/"
                   f"{v['n_seeds_compared']} | {d} | {se} | {v['by_the_rule']} | **{v['verdict']}** |")
    out += ["", "## Per step", "", "Every comparison at equal steps: mean ± standard deviation over seeds at each"
            " validation up to the step judged.", ""]
    for claim in CLAIMS:
        if claim.against is not None or claim.compared_with == claim.row:
            continue
        out += [f"**`{claim.row}`** — {claim.conclusion} (against `{claim.compared_with}`, {claim.metric})", "",
                "| step | run | compared |", "|---|---|---|"]
        steps = sorted({r["step"] for s in summaries.get(claim.row, {}).values() for r in s["validations"]
                        if r["step"] <= claim.step})
        for step in steps:
            out.append(f"| {step} | {_stat(figures(summaries, claim.row, claim.metric, step))} | "
                       f"{_stat(figures(summaries, claim.compared_with, claim.metric, step))} |")
        out.append("")
    return "\n".join(out)


def write(folder: str, output: str, template: str) -> list[dict]:
    """Rewrite the doc `output` (its prose from `template`, {tables} and {panels} filled in),
    verdicts.json and the panels from the summaries in `folder`; returns the verdicts."""
    summaries = read_summaries(folder)
    sizes = sizes_agree(summaries)
    verdicts = [judge(summaries, claim, sizes[0]) for claim in CLAIMS]
    with open(os.path.join(folder, "verdicts.json"), "w", encoding="utf-8") as f:
        json.dump(verdicts, f, indent=1)
        f.write("\n")
    panels = os.path.join(folder, "panels.png")
    from reid_tf import plots

    plots.comparison_panels(summaries, CLAIMS, panels, figures)
    standin_file = os.path.join(folder, "standin.json")
    standin = None
    if os.path.exists(standin_file):
        with open(standin_file, encoding="utf-8") as f:
            standin = json.load(f)
    text = template.format(command=COMMAND, tables=tables(summaries, verdicts, sizes, standin),
                           panels=os.path.relpath(panels, os.path.dirname(output)))
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    return verdicts
