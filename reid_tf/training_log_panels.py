"""panels.png of docs/training_log.md: one panel per conclusion judged against a run, the row and what
it is judged against over the validations up to the step judged."""

from __future__ import annotations

import numpy as np

from reid_tf.training_log import CLAIMS
from reid_tf.training_log_rule import figures, run_continues

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
