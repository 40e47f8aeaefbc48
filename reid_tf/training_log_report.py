"""docs/training_log.md from the committed summaries of the log's re-run (docs/training_log/runs/):
the main table, the seed table, the stand-in's check, one per-step comparison per conclusion,
the controls, and the verdicts (verdicts.json), each by the one rule stated first; and the panels."""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from reid_tf.training_log import CLAIMS, FEATURES, RUNS, read_summaries
from reid_tf.training_log_rule import RULE, features_differ, figures, flag, judge, run_continues, verdict

COMMAND = "python tools/report.py --training_log=docs/training_log --output=docs/training_log.md"
def _stat(values: dict[int, float]) -> str:
    if not values:
        return "–"
    x = np.array(list(values.values()))
    return f"{x.mean():.3f} ± {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}"


def _lr_sum(summary: dict, start: int, steps: int, scale: int = 1) -> float:
    """The run's own learning-rate schedule (its flags through reid_tf.optim) summed over steps
    start..steps-1, its step settings times `scale` (the log's counts: 100)."""
    from reid_tf import config, optim, settings

    values = settings.from_flag_lines(config.SETTINGS["optimizer"], summary["flags"])
    if scale != 1:
        values.update({k: values[k] * scale for k in ("decay_steps", "warmup_steps") if k in values})
        values["lr_boundaries"] = tuple(b * scale for b in values.get("lr_boundaries", ()))
    schedule = optim.learning_rate_schedule(config.OptimizerConfig(**values))
    return float(np.asarray(schedule(np.arange(start * scale, steps * scale, dtype=np.float32)), np.float64).sum())


def budget(summary: dict) -> list[str]:
    """[its own steps, passes over the data, sum of lr here, at the log's steps] of one run: a
    continuation's own steps start at the step it resumed from (its first step's number - 1)."""
    steps = flag(summary, "max_steps", int)
    start = (summary.get("first_step") or {}).get("step", 1) - 1
    batch = flag(summary, "return_id_num", int) * flag(summary, "image_num_every_id", int)
    images = summary.get("train_images")
    passes = f"{(steps - start) * batch / images:.1f}" if images else "–"
    own = f"{steps - start}" + (f" (from step {start})" if start else "")
    return [own, passes, f"{_lr_sum(summary, start, steps):.3g}", f"{_lr_sum(summary, start, steps, 100):.3g}"]


def last_step(summaries: dict, run: str) -> int | None:
    steps = [r["step"] for s in summaries.get(run, {}).values() for r in s["validations"]]
    return max(steps) if steps else None


def _made_on(summary: dict) -> str:
    """Where a summary was made, as it recorded: the CPU's kind, TensorFlow's and Keras's versions."""
    versions = [f"{name} {summary[key]}" for key, name in (("tensorflow", "TensorFlow"), ("keras", "Keras"))
                if summary.get(key)]
    return (summary.get("cpu") or "a CPU not recorded") + (f" with {' and '.join(versions)}" if versions else "")


def pace_lines(summaries: dict, floors: list[dict]) -> list[str]:
    """What the set's training steps cost at the train step's measured pace, per CPU kind (ResNet-50
    at 64x32, benchmarks/train_step.py --floor): the budget of a re-run."""
    images = sum((flag(s, "max_steps", int) - (s.get("first_step") or {}).get("step", 1) + 1)
                 * flag(s, "return_id_num", int) * flag(s, "image_num_every_id", int)
                 for seeds in summaries.values() for s in seeds.values())
    runs = sum(len(seeds) for seeds in summaries.values())
    out = []
    for floor in floors:
        rates = [x for row in floor["rows"] if (row["size"], row["precision"]) == ("64x32", "float32")
                 for x in row["reid_tf"]]
        if rates:
            rate = sum(rates) / len(rates)
            out.append(f"The {runs} runs above train on {images:,} images in all; at the train step's measured"
                       f" pace on the {floor['cpu']} kind ({rate:.1f} images/s for ResNet-50 at 64x32,"
                       f" `docs/benchmarks/train_step_floor_{floor['cpu']}.json`), that is"
                       f" {images / rate / 3600:.1f} hours of training steps, before validation and the stand-in.")
    return out or ["(The train step's pace is not measured yet: benchmarks/train_step.py --floor.)"]


def tables(summaries: dict, verdicts: list[dict], standin: dict | None = None,
           diagnosis: dict | None = None, floors: list[dict] | None = None) -> str:
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
    said = ("they agree or cannot be told apart" if check["met"] else
            "they differ, so a claim that compares runs at the two sizes is not testable here")
    out += ["", f"72x36 minus 64x32: {d}{spread}; by the rule, as a claim of no difference: {said}.", ""]
    if diagnosis:
        out += [f"Where the difference comes from (`{diagnosis['command']}`, its figures in"
                " `docs/training_log/standin_sizes.json`): the same raw features, paired by seed, with one setting"
                " changed at a time, or scored at another larger size with the 72x36 runs' flags (a size the"
                f" stand-in was not pretrained at, unless among its {standin['sizes'] if standin else 'sizes'}):",
                "",
                "| change | 64x32 | larger size | its mAP | d | SE | by the rule, as a claim of no difference |",
                "|---|---|---|---|---|---|---|"]
        for row in diagnosis["rows"]:
            small, large = (dict(enumerate(row[k])) for k in ("small_mAP", "large_mAP"))
            by_rule = verdict(0, row["mean_difference"], row["standard_error"])
            out.append(f"| {row['change']} | {_stat(small)} | {row['large']} | {_stat(large)} |"
                       f" {row['mean_difference']:+.3f} | {row['standard_error']:.3f} |"
                       f" {'they differ' if by_rule == 'does not hold' else 'agree or cannot be told apart'} |")
        out.append("")
    out += ["## The budget", "", "Per run, from its flags: its own steps (a continuation's from the step it"
            " resumed at), how often each training image was seen in them (steps x P x K / training images),"
            " and its schedule's learning rate (warm-up included) summed over them, here and at the log's step"
            " counts (x 100). Adam moves a weight by about the learning rate a step at most (Kingma and Ba,"
            " 2015, section 2.1), so the sum bounds how far any weight can move.", "",
            "| run | steps | passes over the data | sum of lr | the log's sum of lr |", "|---|---|---|---|---|"]
    for run in RUNS:
        seeds = summaries.get(run.name, {})
        if seeds:
            s = next(iter(seeds.values()))
            out.append(f"| `{run.name}` | " + " | ".join(budget(s)) + " |")
    out += ["", *pace_lines(summaries, floors or [])]
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
    needs = [(v, p) for v in verdicts for p in v["preconditions"]]
    if needs:
        out += ["", "What a claim needs before the rule can judge it (the rule's \"not testable here\"), each"
                " difference paired by seed: the stand-in's raw features at the two sizes a claim compares, and"
                " each continuation against the run it continues:", "",
                "| run | the log's conclusion | needs | d | SE | met |", "|---|---|---|---|---|---|"]
        for v, p in needs:
            arms = p.get("arms", [p])
            d = " / ".join("–" if a["mean_difference"] is None else f"{a['mean_difference']:+.3f}" for a in arms)
            se = " / ".join("–" if a["standard_error"] is None else f"{a['standard_error']:.3f}" for a in arms)
            met = "yes" if p["met"] else "no"
            out.append(f"| `{v['row']}` | {v['conclusion']} | {p['what']} | {d} | {se} | {met} |")
    out += ["", "## Per step", "", "Every comparison at equal steps: mean ± standard deviation over seeds at each"
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
    return "\n".join(out)


PANELS_TITLE = ("Each conclusion judged against a run: the row (red) and what it is judged against (blue; grey: the"
                " run both continue), mean over seeds with the seeds' range shaded; the dashed line is the step judged")
YLABELS = {"mAP": "validation mAP (original protocol)", "mAP_rerank": "validation mAP (original protocol)",
           "embedding_norm": "mean embedding norm"}


def _series(summaries: dict, run: str, metric: str, upto: int, label: str, colour: str, style: str = "-",
            begun: tuple[str, int] | None = None) -> dict:
    """One panel line: mean, min and max over seeds at each validation of `run` up to step `upto`;
    `begun` (run, step): it starts from that run's figures of the same seeds at that step."""
    steps = sorted({r["step"] for s in summaries.get(run, {}).values() for r in s["validations"]
                    if r["step"] <= upto and metric in r})
    values = [figures(summaries, run, metric, step) for step in steps]
    if begun:
        start = figures(summaries, begun[0], metric, begun[1])
        steps, values = [begun[1]] + steps, [{k: v for k, v in start.items() if k in summaries[run]}] + values
    stats = [np.array(list(v.values())) for v in values if v]
    steps = [step for step, v in zip(steps, values) if v]
    seeds = max((len(v) for v in stats), default=0)
    return {"label": f"{label} ({metric}, {seeds} seeds)", "colour": colour, "style": style, "steps": steps,
            "mean": [v.mean() for v in stats], "low": [v.min() for v in stats], "high": [v.max() for v in stats]}


def panels(summaries: dict, verdicts: list[dict]) -> list[dict]:
    """What each panel of panels.png draws: one per conclusion judged against a run."""
    out = []
    for claim, v in zip(CLAIMS, verdicts):
        if claim.against is not None:
            continue
        begun = run_continues(summaries, claim.row)
        row = _series(summaries, claim.row, claim.metric, claim.step, claim.row, "tab:red", begun=begun)
        metric = claim.compared_metric or claim.metric
        if claim.compared_with == claim.row and claim.compared_step is not None:
            level = _series(summaries, claim.row, metric, claim.compared_step, claim.row, "tab:blue", "--")
            at = level["steps"].index(claim.compared_step)
            flat = {k: [level[k][at]] * len(row["steps"]) for k in ("mean", "low", "high")}
            compared = dict(level, steps=row["steps"], **flat,
                            label=f"{claim.row} at step {claim.compared_step}" + level["label"][len(claim.row):])
        else:
            compared = _series(summaries, claim.compared_with, metric, claim.step, claim.compared_with, "tab:blue",
                               begun=begun)
        lines = [row, compared]
        if begun:
            lines.append(_series(summaries, begun[0], claim.metric, begun[1], begun[0], "tab:gray"))
        d = "" if v["mean_difference"] is None else f" (d {v['mean_difference']:+.3f}, SE {v['standard_error']:.3f})"
        out.append({"title": f"{claim.row}: {claim.conclusion}: {v['verdict']}{d}", "judged": claim.step,
                    "ylabel": YLABELS.get(claim.metric, claim.metric), "lines": lines})
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
    verdicts = [judge(summaries, claim) for claim in CLAIMS]
    with open(os.path.join(folder, "verdicts.json"), "w", encoding="utf-8") as f:
        json.dump(verdicts, f, indent=1)
        f.write("\n")
    panels_path = os.path.join(folder, "panels.png")
    from reid_tf import plots

    plots.comparison_panels(panels(summaries, verdicts), panels_path, PANELS_TITLE)
    standin, diagnosis = (_read(os.path.join(folder, name)) for name in ("standin.json", "standin_sizes.json"))
    paces = os.path.join(folder, os.pardir, "benchmarks", "train_step_floor_*.json")  # docs/benchmarks
    floors = [_read(p) for p in sorted(glob.glob(paces))]
    text = template.format(command=COMMAND, tables=tables(summaries, verdicts, standin, diagnosis, floors),
                           panels=os.path.relpath(panels_path, os.path.dirname(output)))
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    return verdicts
