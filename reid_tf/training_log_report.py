"""docs/training_log.md from the committed summaries of a set of the log's re-run: the summary of the
claims, the main table, the rule and the verdicts (verdicts.json), the budget; in the appendix the
stand-in's check, the seeds, the controls and one per-step comparison per conclusion; the panels."""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from reid_tf.training_log import CLAIMS, FEATURES, RUNS, read_summaries
from reid_tf.training_log_budget import budget_section, last_step, made_on
from reid_tf.training_log_classes import classify, log_effect
from reid_tf.training_log_rule import ALPHA, RULE, compare, features_differ, figures, judge_all, run_continues

COMMAND = "python tools/report.py --training_log=docs/training_log_intended --output=docs/training_log.md"


def _stat(values: dict[int, float]) -> str:
    if not values:
        return "–"
    x = np.array(list(values.values()))
    return f"{x.mean():.3f} ± {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}"


HISTORY = ("How this rule came to be. A single-seed pilot of 11-29 ran before any rule was written. The first rule"
           " (d against two unpaired standard errors, per test, with no correction) was stated before the"
           " three-seed set; its \"not testable here\" clause was added on 12-06, after all the data were in."
           " On 12-07 a reviewer's reading of those verdicts (many tests, each with a sizeable false-call rate"
           " and no correction; same-seed arms compared unpaired) led to this rule: paired, tested,"
           " Holm-adjusted over the family, with the smallest detectable effect beside every verdict. It too was"
           " written after the data, so read its verdicts as a re-analysis, not a pre-registered test.")
CAVEAT = ("Absolute figures here are not comparable with the log's: another dataset (synthetic), another"
          " protocol, a hundredth of the steps at 2/7 of the size, and a stand-in in place of ImageNet; every"
          " verdict is conditional on that one stand-in.")


def _pm(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def summary_section(verdicts: list[dict]) -> list[str]:
    """The claims at a glance: class, paired d and its 95 % interval, the log's own effect, verdict."""
    out = ["## Summary", "", "Each conclusion of the log: what kind of claim it is (derived from the claims and"
           " the summaries, [below](#what-kind-of-claim)), the paired difference d over seeds with its 95 %"
           " interval, the log's own effect (the row's mAP minus the compared row's, from the log's results),"
           " the smallest |d| this design could detect, and the verdict by [the rule](#the-rule).", "",
           "| run | the log's conclusion | class | d | 95 % interval | the log's effect | detectable | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        ci = "–" if v["ci95"] is None else f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
        det = "–" if v["detectable_effect"] is None else f"{v['detectable_effect']:.3f}"
        out.append(f"| `{v['row']}` | {v['conclusion']} | {v['class']} | {_pm(v['mean_difference'])} | {ci} |"
                   f" {_pm(v['log_effect'], 2)} | {det} | **{v['verdict']}** |")
    return out + [""]


def main_table(summaries: dict) -> list[str]:
    out = ["## The table", "",
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
    return out + ["", CAVEAT, ""]


def verdicts_section(verdicts: list[dict]) -> list[str]:
    out = ["## The rule", "", RULE + ".", "", HISTORY, "", "## The verdicts", "",
           "| run | the log's conclusion | compared with | metric | step | seeds | d | SE | p | p, Holm | by the rule |"
           " verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        other = f"`{v['compared_with']}`" if v["compared_with"] else f"{v['against']:.4f}"
        if v["compared_step"] is not None:
            other += f" at step {v['compared_step']}"
        metric = v["metric"] if v["metric"] == v["compared_metric"] else f"{v['metric']} vs {v['compared_metric']}"
        if v["relative_to"] is not None:
            metric += f" / its step {v['relative_to']}"
        se = "–" if v["standard_error"] is None else f"{v['standard_error']:.3f}"
        p, adj = (" / ".join("–" if x is None else f"{x:.2g}" for x in v[k].values()) for k in ("p", "p_adjusted"))
        out.append(f"| `{v['row']}` | {v['conclusion']} | {other} | {metric} | {v['step']} | {v['n_seeds']}/"
                   f"{v['n_seeds_compared']} | {_pm(v['mean_difference'])} | {se} | {p} | {adj} |"
                   f" {v['by_the_rule']} | **{v['verdict']}** |")
    out += ["", "p: of d = 0, then (claims of no difference) of the TOST; Holm: adjusted over the family.", "",
            "### What kind of claim", "", "Derived from the claims and the summaries (`reid_tf.training_log_classes`):"
            " which flags the arms differ in, each arm's learning-rate budget against its head's initial scale, a"
            " bound on the norm, the re-ranking's k1 against the gallery an identity has. Each with why, and the"
            " claim's note where it has one:", "", "| run | the log's conclusion | class | why | note |",
            "|---|---|---|---|---|"]
    out += [f"| `{v['row']}` | {v['conclusion']} | {v['class']} | {v['class_why']} | {v['note'] or '–'} |"
            for v in verdicts]
    return out + [""]


def sections(summaries: dict, verdicts: list[dict], standin: dict | None = None,
             diagnosis: dict | None = None, floors: list[dict] | None = None) -> dict[str, str]:
    """The doc's generated parts, in markdown, by the template's names: the summary, the main table,
    the rule with the verdicts and the budget, and the appendix (the stand-in and its diagnosis, the
    seeds, the controls, per step)."""
    return {"summary": "\n".join(summary_section(verdicts)), "main": "\n".join(main_table(summaries)),
            "tables": "\n".join(verdicts_section(verdicts) + preconditions_section(verdicts)
                                + budget_section(summaries, floors)),
            "appendix": "\n".join(["## Appendix", ""] + standin_section(summaries, standin, diagnosis)
                                  + seeds_section(summaries) + per_step_section(summaries))}


def standin_section(summaries: dict, standin: dict | None, diagnosis: dict | None) -> list[str]:
    prints: dict[tuple[str, str], int] = {}
    for seeds in summaries.values():
        for summary in seeds.values():
            key = (summary.get("standin") or "not recorded", made_on(summary))
            prints[key] = prints.get(key, 0) + 1
    starts = "; ".join(f"`{k}`: {n} run(s), made on {where}" for (k, where), n in sorted(prints.items()))
    trained = "" if not standin else (
        f" It was trained for {standin['steps']} steps of {standin['batch']} images at {standin['sizes']}"
        f" on {made_on(standin)} (`standin.json` beside the summaries).")
    out = ["### The stand-in's raw features", "",
           "The runs start from the stand-in (`benchmarks/imagenet_standin.py`) whose weights have the"
           f" fingerprint {starts}.{trained} The stand-in and every run are deterministic on one kind of"
           " CPU, not across kinds: their kernels' sums follow the CPU's vector instructions, so a run"
           " reproduces its committed lines bit for bit (`benchmarks/reproduce_run.py`) on the kind that"
           " made it; another kind builds a set of its own, compared with this one in"
           " [cpu_kinds.md](cpu_kinds.md).", "",
           "Validation mAP of the stand-in's pooled features, no re-ID training, over five validation splits"
           " (seeds 0–4), at each input size the rows use:", "", "| size | mAP | seeds |", "|---|---|---|"]
    for size in ("64x32", "72x36"):
        f = figures(summaries, f"{FEATURES}_{size}", "mAP", 0)
        out.append(f"| {size} | {_stat(f)} | {len(f)} |")
    check = features_differ(summaries, "72x36", "64x32")
    baseline = np.array(list(figures(summaries, "resnet", "mAP", last_step(summaries, "resnet")).values()))
    d = "–" if check["mean_difference"] is None else (
        f"{check['mean_difference']:+.3f} (SE {check['standard_error']:.3f})")
    spread = ""
    if len(baseline) > 1:
        sd = baseline.std(ddof=1)
        where = "within" if abs(check["mean_difference"] or 0) <= sd else "outside"
        spread = (f", against a seed spread of {sd:.3f} (standard deviation) of the head-only baseline `resnet`"
                  f" at its last step: {where} it")
    said = ("they cannot be told apart" if check["met"] else
            "they differ, so a claim that compares runs at the two sizes is not testable here")
    out += ["", f"72x36 minus 64x32: {d}{spread}; paired by seed: {said}.", ""]
    return out + (diagnosis_table(diagnosis, standin) if diagnosis else [])


def diagnosis_table(diagnosis: dict, standin: dict | None) -> list[str]:
    out = [f"Where the difference comes from (`{diagnosis['command']}`, its figures in"
           " `standin_sizes.json` beside the summaries): the same raw features, paired by seed, with one setting"
           " changed at a time, or scored at another larger size with the 72x36 runs' flags (a size the"
           f" stand-in was not pretrained at, unless among its {standin['sizes'] if standin else 'sizes'}):", "",
           "| change | 64x32 | larger size | its mAP | d | SE | paired by seed |", "|---|---|---|---|---|---|---|"]
    for row in diagnosis["rows"]:
        small, large = (dict(enumerate(row[k])) for k in ("small_mAP", "large_mAP"))
        differ = compare(large, small).p_difference < ALPHA
        out.append(f"| {row['change']} | {_stat(small)} | {row['large']} | {_stat(large)} |"
                   f" {row['mean_difference']:+.3f} | {row['standard_error']:.3f} |"
                   f" {'they differ' if differ else 'cannot be told apart'} |")
    return out + [""]


def seeds_section(summaries: dict) -> list[str]:
    out = ["### The seeds", "", "Each run's mAP at its last step, seed by seed:", "",
           "| run | step | " + " | ".join(f"seed {s}" for s in range(5)) + " |", "|---|---|" + "---|" * 5]
    for run in RUNS:
        if run.is_control and not summaries.get(run.name):
            continue  # a control this set did not run
        step = last_step(summaries, run.name)
        f = figures(summaries, run.name, "mAP", step)
        out.append(f"| `{run.name}` | {step or '–'} | " + " | ".join(f"{f[s]:.3f}" if s in f else "–" for s in range(5))
                   + " |")
    out += ["", "### The controls", "", "| control | what it changes | seeds | step | mAP |", "|---|---|---|---|---|"]
    for run in RUNS:
        if run.is_control and summaries.get(run.name):
            step = last_step(summaries, run.name)
            out.append(f"| `{run.name}` | {run.what} | {len(summaries.get(run.name, {}))} | {step or '–'} | "
                       f"{_stat(figures(summaries, run.name, 'mAP', step))} |")
    return out + [""]


def preconditions_section(verdicts: list[dict]) -> list[str]:
    needs = [(v, p) for v in verdicts for p in v["preconditions"]]
    if not needs:
        return []
    out = ["What a claim needs before the rule can judge it (the rule's \"not testable here\"), each"
           " difference paired by seed: the stand-in's raw features at the two sizes a claim compares, and"
           " each continuation against the run it continues:", "",
           "| run | the log's conclusion | needs | d | SE | met |", "|---|---|---|---|---|---|"]
    for v, p in needs:
        arms = p.get("arms", [p])
        d = " / ".join(_pm(a["mean_difference"]) for a in arms)
        se = " / ".join("–" if a["standard_error"] is None else f"{a['standard_error']:.3f}" for a in arms)
        out.append(f"| `{v['row']}` | {v['conclusion']} | {p['what']} | {d} | {se} | {'yes' if p['met'] else 'no'} |")
    return out + [""]


def per_step_section(summaries: dict) -> list[str]:
    out = ["### Per step", "", "Every comparison at equal steps: mean ± standard deviation over seeds at each"
           " validation up to the step judged.", ""]
    for claim in CLAIMS:
        if claim.against is not None or claim.compared_with == claim.row:
            continue
        out += [f"**`{claim.row}`** — {claim.conclusion} (against `{claim.compared_with}`, {claim.metric})", "",
                "| step | run | compared |", "|---|---|---|"]
        steps = sorted({r["step"] for s in summaries.get(claim.row, {}).values() for r in s["validations"]
                        if r["step"] <= claim.step})
        begun = run_continues(summaries, claim.row)
        if begun:  # where both arms start: the run they continue, at the step they resumed from
            start = figures(summaries, begun[0], claim.metric, begun[1])
            arms = [{k: v for k, v in start.items() if k in summaries.get(run, {})}
                    for run in (claim.row, claim.compared_with)]
            out.append(f"| {begun[1]} (`{begun[0]}`) | {_stat(arms[0])} | {_stat(arms[1])} |")
        for step in steps:
            out.append(f"| {step} | {_stat(figures(summaries, claim.row, claim.metric, step))} | "
                       f"{_stat(figures(summaries, claim.compared_with, claim.metric, step))} |")
        out.append("")
    return out


def _read(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write(folder: str, output: str, template: str) -> list[dict]:
    """Rewrite the doc `output` (its prose from `template`, {tables} and {panels} filled in),
    verdicts.json and the panels from the summaries in `folder`; returns the verdicts."""
    summaries = read_summaries(folder)
    verdicts = judge_all(summaries, CLAIMS, [classify(summaries, claim) for claim in CLAIMS])
    for claim, v in zip(CLAIMS, verdicts):
        v["log_effect"] = log_effect(claim)
    with open(os.path.join(folder, "verdicts.json"), "w", encoding="utf-8") as f:
        json.dump(verdicts, f, indent=1)
        f.write("\n")
    panels_path = os.path.join(folder, "panels.png")
    from reid_tf import plots, training_log_panels

    plots.comparison_panels(training_log_panels.panels(summaries, verdicts), panels_path,
                            training_log_panels.PANELS_TITLE)
    standin, diagnosis = (_read(os.path.join(folder, name)) for name in ("standin.json", "standin_sizes.json"))
    paces = os.path.join(folder, os.pardir, "benchmarks", "train_step_floor_*.json")  # docs/benchmarks
    floors = [_read(p) for p in sorted(glob.glob(paces))]
    text = template.format(command=COMMAND, **sections(summaries, verdicts, standin, diagnosis, floors),
                           panels=os.path.relpath(panels_path, os.path.dirname(output)))
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    return verdicts
