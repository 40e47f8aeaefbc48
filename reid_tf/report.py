"""The experiment table of run folders, as the original log's "train note" table: each run's model,
training and loss in the words its settings' declarations give (config.py), its result from
validation.jsonl, its note; what differs from a baseline run in bold. Also as JSON."""

from __future__ import annotations

import json
import os

from reid_tf import config as config_lib
from reid_tf import evaluate
from reid_tf.runs import Run, never_started
from reid_tf.settings import words

COLUMNS = ("model", "training", "loss")


def describe(c: config_lib.RunConfig, column: str) -> dict[str, str]:
    """One column of the table in words: a phrase per setting, from its declaration."""
    return words(c, config_lib.ALL_SETTINGS, column)


def describe_result(run: Run) -> str:
    """Best validation mAP and its step, with rank-1, train mAP and re-ranked mAP, the embeddings'
    norm and the first step's loss, and the state. A run whose last validation shows collapsed
    embeddings says so first: its mAP is that of a model that no longer tells people apart."""
    best = run.best
    last_row = run.validations[-1] if run.validations else {}
    collapsed = evaluate.is_collapsed(last_row)
    if best is None:
        text = "no validation"
    else:
        text = f"step {best['step']}, mAP {best['mAP']:.3f}"
        extras = [f"{label} {best[key]:.3f}" for key, label in
                  (("rank1", "rank-1"), ("train_mAP", "train"), ("mAP_rerank", "re-ranked"))
                  if key in best]
        text += f" ({', '.join(extras)})" if extras else ""
        if "embedding_norm" in best:
            text += f"; norm {best['embedding_norm']:.3g}"
    if collapsed:
        text = f"**collapsed** at step {last_row['step']}: {collapsed}; best {text}"
    if run.first_step:
        text += f"; first loss {run.first_step['loss']:.3f}"
        if "triplet_loss" in run.first_step:
            text += f" (triplet {run.first_step['triplet_loss']:.3f})"
    last = f"last step {run.last_step}" if run.last_step is not None else "no step yet"
    state = {"finished": "", "running": ", running", "not finished": ", not finished",
             "stopped": ", stopped: " + _first_words(run.stop_reason)}[run.status]
    return f"{text}; {last}{state}"


def _first_words(reason: str) -> str:
    return reason if len(reason) <= 60 else reason[:57] + "..."


# ---------------------------------------------------------------------------- outputs


def _cell(parts: dict[str, str], baseline: dict[str, str] | None) -> str:
    """Phrases joined by commas; those that differ from the baseline's in bold."""
    def show(key, text):
        differs = baseline is not None and baseline.get(key) != text
        text = text.replace("|", "\\|")
        return f"**{text}**" if differs else text

    removed = [f"**no {key.replace('_', ' ')}**" for key in (baseline or {}) if key not in parts]
    return ", ".join([show(k, v) for k, v in parts.items()] + removed)


def rows(runs: list[Run]) -> list[dict]:
    """One plain dict per run: the table's cells in words and the numbers behind them."""
    out = []
    for run in runs:
        best = run.best
        out.append({
            "date": run.started[:10], "started": run.started, "run": run.name, "path": run.path,
            **{column: describe(run.config, column) for column in COLUMNS}, "result": describe_result(run),
            "note": run.note,
            "status": run.status, "stop_reason": run.stop_reason, "last_step": run.last_step,
            "best": best, "validations": run.validations,
            "first_step": run.first_step, "collapsed": evaluate.is_collapsed(run.validations[-1])
            if run.validations else "",
            "config": run.config.to_dict(),
        })
    return out


def markdown(runs: list[Run], baseline: str | None = None, reference: dict[str, str] | None = None) -> str:
    """The table in GitHub markdown; `baseline` (a run's name or path; default: the first run)
    is the run the others are compared with; `reference` (run name -> text), when given, fills a
    column beside the result (the original log's result, say)."""
    idle = [r.name for r in runs if never_started(r)]
    table = rows([r for r in runs if not never_started(r)])
    footer = f"\nnever started: {len(idle)} folder(s) ({', '.join(idle)})\n" if idle else ""
    if not table:
        return "No runs found.\n" + footer
    base = next((r for r in table if baseline in (r["run"], r["path"], os.path.normpath(r["path"]))),
                None) if baseline else table[0]
    if base is None:
        raise ValueError(f"--baseline={baseline} is none of the runs found")
    columns = ["date", "run", "model", "training", "loss", "result"] + (["reference"] if reference else [])
    lines = ["| " + " | ".join(columns + ["note"]) + " |", "|" + "---|" * (len(columns) + 1)]
    for r in table:
        compared = None if r is base else base
        cells = [r["date"], f"`{r['run']}`" + (" (baseline)" if r is base else ""),
                 _cell(r["model"], compared and compared["model"]),
                 _cell(r["training"], compared and compared["training"]),
                 _cell(r["loss"], compared and compared["loss"]),
                 r["result"]] + ([reference.get(r["run"], "")] if reference else []) + [
                 r["note"].replace("|", "\\|").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + footer


def to_json(runs: list[Run]) -> str:
    """The same data for a notebook or a spreadsheet."""
    return json.dumps(rows(runs), indent=1, sort_keys=True) + "\n"
