"""What kind of claim each conclusion of the log is, derived from the claims and the runs' summaries
(which flags the arms differ in, their learning-rate budgets, a norm's bound), so that a checker can
derive it again: substantive, sanity check, by construction, scale artifact, no change in the
original, withdrawn. Also each claim's own effect in the log."""

from __future__ import annotations

import inspect
import math
import re

import numpy as np

from reid_tf.training_log import NEVER_RAN, RUNS, WITHDRAWN, Claim
from reid_tf.training_log_rule import figures, flag

CLASSES = ("substantive", "sanity check", "by construction", "scale artifact", "no change in the original",
           "withdrawn")
SCORING = {"--k1", "--k2", "--lambda_value", "--rerank_impl", "--eval_rerank"}  # re-ranking only
UNMOVED = 0.01  # an arm whose summed lr is under this fraction of its head's initial sd cannot move it


def lr_sum(summary: dict, start: int, steps: int, scale: int = 1) -> float:
    """The run's own learning-rate schedule (its flags through reid_tf.optim) summed over steps
    start..steps-1, its step settings times `scale` (the log's counts: 100)."""
    from reid_tf import config, optim, settings

    values = settings.from_flag_lines(config.SETTINGS["optimizer"], summary["flags"])
    if scale != 1:
        values.update({k: values[k] * scale for k in ("decay_steps", "warmup_steps") if k in values})
        values["lr_boundaries"] = tuple(b * scale for b in values.get("lr_boundaries", ()))
    schedule = optim.learning_rate_schedule(config.OptimizerConfig(**values))
    return float(np.asarray(schedule(np.arange(start * scale, steps * scale, dtype=np.float32)), np.float64).sum())


def _flags(summaries: dict, run: str) -> dict[str, str]:
    lines = next(iter(summaries[run].values()))["flags"]
    return dict(line.split("=", 1) for line in lines if "=" in line)


def differing(summaries: dict, claim: Claim) -> set[str]:
    """The flags the two arms differ in, less those that cannot matter to the figure compared: the
    seed and folders, the step count (both are read at one step), and re-ranking's parameters where
    no re-ranked figure is compared."""
    a, b = _flags(summaries, claim.row), _flags(summaries, claim.compared_with)
    ignored = {"--seed", "--output_dir", "--note", "--init_checkpoint", "--max_steps"}
    if "rerank" not in claim.metric + (claim.compared_metric or ""):
        ignored |= SCORING
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in ignored}


def gallery_per_identity() -> float:
    """Gallery images an identity has, on average, in the re-run's validation: the synthetic set's
    images (cameras drawn uniformly from 2 to num_cameras, images_per_camera each) less the
    original split's 1 or 2 probes (1.5 on average)."""
    from reid_tf import synthetic

    defaults = inspect.signature(synthetic.make_synthetic_market).parameters
    cameras = (2 + defaults["num_cameras"].default) / 2
    return cameras * defaults["images_per_camera"].default - 1.5


def _unmoved(summaries: dict, run: str) -> str | None:
    """Why `run` cannot move its head's weights in its steps (None: it can)."""
    s = next(iter(summaries[run].values()))
    sd = flag(s, "fc1_init_stddev", float)
    start = (s.get("first_step") or {}).get("step", 1) - 1
    moved = lr_sum(s, start, flag(s, "max_steps", int))
    if sd and moved < UNMOVED * sd:
        logged = lr_sum(s, start, flag(s, "max_steps", int), 100)
        return (f"`{run}` can move a weight by at most its summed lr, {moved:.3g}, {100 * moved / sd:.2g} % of its"
                f" head's initial sd {sd:g}; at the log's steps (x 100) the sum is {logged:.3g},"
                f" {100 * logged / sd:.2g} %")
    return None


def classify(summaries: dict, claim: Claim) -> dict:
    """{"class", "why"} of one claim, from the claim and the summaries."""
    if claim.row in WITHDRAWN:
        return {"class": "withdrawn", "why": "the authors withdrew the row (b19bb52: \"code has bug!!\" or replaced)"}
    if claim.compared_with == claim.row and claim.compared_step is not None:
        return {"class": "sanity check", "why": "the row against its own start: the re-run's check that it learns,"
                " not a claim of the log"}
    row_flags = _flags(summaries, claim.row)
    if claim.against is not None and row_flags.get("--margin") == "soft" and claim.against == math.log(2):
        sd = float(row_flags.get("--fc1_init_stddev", "nan"))
        return {"class": "by construction", "why": f"an fc drawn at sd {sd:g} gives embeddings near 0, so every"
                " distance is near 0 and the soft margin's loss is ln(1 + e^0) = ln 2"}
    if claim.metric == "embedding_norm" and row_flags.get("--output_activation") == "softmax":
        other = figures(summaries, claim.compared_with, claim.metric, claim.step)
        low = min(other.values(), default=math.nan)
        if low > 1:
            return {"class": "by construction", "why": "a softmax's L2 norm is at most 1 (its squares sum to at most"
                    f" its sum, 1), and the compared run's norm is at least {low:.3g} at step {claim.step}"}
    if claim.compared_with:
        flags = differing(summaries, claim)
        if flags and flags <= NEVER_RAN:
            return {"class": "no change in the original", "why": f"the arms differ only in {', '.join(sorted(flags))},"
                    " which the 2017 code never executed: both arms ran the same input in 2017"}
        for run in (claim.row, claim.compared_with):
            why = _unmoved(summaries, run)
            if why:
                return {"class": "scale artifact", "why": why}
    if "rerank" in claim.metric:
        k1, per = int(row_flags.get("--k1", "20")), gallery_per_identity()
        if k1 > per:
            return {"class": "scale artifact", "why": f"k1 = {k1} neighbours against about {per:.1f} gallery images an"
                    " identity here (the original kept up to 40): the k-reciprocal sets reach far past each identity"}
    return {"class": "substantive", "why": "a 2017 conclusion tested"}


def log_effect(claim: Claim) -> float | None:
    """The claim's own effect in the log: the row's mAP minus the compared arm's, from the log's results,
    where both give one. A control the log never ran has none, unless it stands for the row the log
    compared with (the baseline at another decay stands for the baseline)."""
    results = {r.name: r for r in RUNS}

    def logged(name: str | None) -> float | None:
        run = results.get(name or "")
        if run and run.is_control and (name == claim.row or run.flagfile == claim.row
                                       or results[claim.row].is_control):
            return None
        source = results.get(run.flagfile) if run and run.is_control else run
        found = re.search(r"mAP (0\.\d+)", source.result) if source else None
        return float(found.group(1)) if found else None

    if claim.compared_with == claim.row or claim.against is not None or "mAP" not in claim.metric:
        return None
    a, b = logged(claim.row), logged(claim.compared_with)
    return None if a is None or b is None else round(a - b, 6)
