"""The docs' figures come from committed data: the measured tables regenerate from
docs/benchmarks/*.json as they stand, and docs/training_log.md from the log re-run's summaries."""

import json
import os
import shutil
import sys

import pytest
from helpers import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import write_docs  # noqa: E402


@pytest.mark.parametrize("name", write_docs.FILES)
def test_measured_tables_are_what_the_data_gives(name):
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        text = f.read()
    assert write_docs.render(text) == text, f"{name}: run python benchmarks/write_docs.py"


def test_every_table_marker_has_a_renderer():
    for name in write_docs.FILES:
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            for match in write_docs.MARK.finditer(f.read()):
                assert match.group(2) in write_docs.RENDER, (name, match.group(2))


def test_training_log_doc_is_what_its_summaries_give(tmp_path):
    from reid_tf import training_log_report

    folder = tmp_path / "training_log_intended"
    shutil.copytree(os.path.join(REPO, "docs", "training_log_intended"), folder)
    shutil.copytree(os.path.join(REPO, "docs", "benchmarks"), tmp_path / "benchmarks")  # the step's pace
    with open(folder / "doc_template.md", encoding="utf-8") as f:
        template = f.read()
    output = tmp_path / "training_log.md"
    verdicts = training_log_report.write(str(folder), str(output), template)
    with open(os.path.join(REPO, "docs", "training_log.md"), encoding="utf-8") as f:
        committed = f.read()
    assert output.read_text(encoding="utf-8") == committed
    with open(os.path.join(REPO, "docs", "training_log_intended", "verdicts.json"), encoding="utf-8") as f:
        assert json.load(f) == verdicts


def _summaries(runs: str) -> list[dict]:
    out = []
    for name in sorted(os.listdir(runs)):
        with open(os.path.join(runs, name), encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def _seed_figures(summaries: list[dict], run: str, metric: str, step: int) -> dict[int, float]:
    """{seed: figure} read straight from the summary files, without the report's code."""
    out = {}
    for s in summaries:
        if s["run"] != run:
            continue
        lines = [(s.get("first_step") or {}).get("loss")] if metric == "first_loss" else [
            v[metric] for v in s["validations"] if v["step"] == step and metric in v]
        if lines and lines[0] is not None:
            out[s["seed"]] = float(lines[0])
    return out


def _paired(a: dict, b: dict):
    """d, SE and the p of d = 0 and of the TOST (+-MARGIN) over the seeds both have, with scipy's t."""
    import math

    import numpy as np
    from scipy import stats

    from reid_tf.training_log_rule import MARGIN

    diffs = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])
    d, se, df = diffs.mean(), diffs.std(ddof=1) / math.sqrt(len(diffs)), len(diffs) - 1
    return d, se, {"difference": 2 * stats.t.sf(abs(d) / se, df),
                   "equivalence": max(stats.t.sf((d + MARGIN) / se, df), stats.t.cdf((d - MARGIN) / se, df))}


def _decided(decisions, direction: int, d: float, p_adjusted: dict) -> str:
    """The verdict that the rule's table (data) gives: its first matching row, else cannot tell."""
    from reid_tf.training_log_rule import ALPHA

    claimed = "no difference" if direction == 0 else "difference"
    for what, test, sign, verdict in decisions:
        if what == claimed and (p_adjusted.get(test) or 1) < ALPHA and sign in ("any", "claimed" if d * direction > 0
                                                                              else "other"):
            return verdict
    return "cannot tell"


def test_every_committed_verdict_is_what_the_rule_gives_from_the_summaries():
    """The figures from the summary files with scipy, Holm's adjustment over the judged claims' tests,
    and the verdict from the rule's table (DECISIONS, data), not from a second implementation of it."""
    from reid_tf.training_log_rule import DECISIONS

    folder = os.path.join(REPO, "docs", "training_log_intended")
    with open(os.path.join(folder, "verdicts.json"), encoding="utf-8") as f:
        verdicts = json.load(f)
    assert len({v["rule"] for v in verdicts}) == 1
    summaries = _summaries(os.path.join(folder, "runs"))
    family = []
    for v in verdicts:
        a = _seed_figures(summaries, v["row"], v["metric"], v["step"])
        b = {seed: v["against"] for seed in a} if v["against"] is not None else _seed_figures(
            summaries, v["compared_with"], v["compared_metric"],
            v["step"] if v["compared_step"] is None else v["compared_step"])
        if v["relative_to"] is not None:
            a, b = ({k: x / _seed_figures(summaries, run, v["metric"], v["relative_to"])[k] for k, x in fig.items()}
                    for run, fig in ((v["row"], a), (v["compared_with"], b)))
        d, se, p = _paired(a, b)
        assert abs(v["mean_difference"] - d) <= 1e-6 and abs(v["standard_error"] - se) <= 1e-6, v["row"]
        assert all(abs(v["p"][t] - p[t]) <= 1e-5 * max(1, p[t]) for t in v["p"]), v["row"]
        judged = v["verdict"] not in ("withdrawn", "not testable here")
        if v["verdict"] != "withdrawn":
            assert (v["verdict"] == "not testable here") == (not all(x["met"] for x in v["preconditions"]))
        family += [(p[t], id(v), t) for t in v["p"] if judged]
    m, running = len(family), 0.0
    adjusted = {}
    for rank, (p, key, t) in enumerate(sorted(family)):  # Holm: (m - rank) p, kept monotone
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[key, t] = running
    for v in verdicts:
        if v["verdict"] in ("withdrawn", "not testable here"):
            continue
        assert all(abs(v["p_adjusted"][t] - adjusted[id(v), t]) <= 1e-5 for t in v["p"]), v["row"]
        assert v["verdict"] == _decided(DECISIONS, v["direction"], v["mean_difference"], v["p_adjusted"]), v["row"]


def test_the_standin_diagnosis_starts_from_the_committed_raw_features():
    """benchmarks/standin_sizes.py's first row re-ran the committed raw-feature runs: the same figures."""
    folder = os.path.join(REPO, "docs", "training_log_intended")
    with open(os.path.join(folder, "standin_sizes.json"), encoding="utf-8") as f:
        diagnosis = json.load(f)
    first = diagnosis["rows"][0]
    assert first["change"] == "as committed" and first["large"] == "72x36"
    summaries = _summaries(os.path.join(folder, "runs"))
    for size, key in (("64x32", "small_mAP"), ("72x36", "large_mAP")):
        committed = _seed_figures(summaries, f"standin_features_{size}", "mAP", 0)
        assert [round(committed[s], 6) for s in diagnosis["seeds"]] == first[key], size
