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

    folder = tmp_path / "training_log"
    shutil.copytree(os.path.join(REPO, "docs", "training_log"), folder)
    with open(folder / "doc_template.md", encoding="utf-8") as f:
        template = f.read()
    output = tmp_path / "training_log.md"
    verdicts = training_log_report.write(str(folder), str(output), template)
    with open(os.path.join(REPO, "docs", "training_log.md"), encoding="utf-8") as f:
        committed = f.read()
    assert output.read_text(encoding="utf-8") == committed
    with open(os.path.join(REPO, "docs", "training_log", "verdicts.json"), encoding="utf-8") as f:
        assert json.load(f) == verdicts


def _seed_figures(runs: str, run: str, metric: str, step: int) -> dict[int, float]:
    """{seed: figure} read straight from the summary files, without the report's code."""
    out = {}
    for name in os.listdir(runs):
        with open(os.path.join(runs, name), encoding="utf-8") as f:
            s = json.load(f)
        if s["run"] != run:
            continue
        lines = [(s.get("first_step") or {}).get("loss")] if metric == "first_loss" else [
            v[metric] for v in s["validations"] if v["step"] == step and metric in v]
        if lines and lines[0] is not None:
            out[s["seed"]] = float(lines[0])
    return out


def test_every_committed_verdict_is_what_the_rule_gives_from_the_summaries():
    import math

    import numpy as np

    folder = os.path.join(REPO, "docs", "training_log")
    with open(os.path.join(folder, "verdicts.json"), encoding="utf-8") as f:
        verdicts = json.load(f)
    assert len({v["rule"] for v in verdicts}) == 1
    for v in verdicts:
        a = _seed_figures(os.path.join(folder, "runs"), v["row"], v["metric"], v["step"])
        if v["against"] is not None:
            b, paired = {seed: v["against"] for seed in a}, True
        else:
            step = v["step"] if v["compared_step"] is None else v["compared_step"]
            b = _seed_figures(os.path.join(folder, "runs"), v["compared_with"], v["compared_metric"], step)
            paired = v["paired"]
        if paired:
            diffs = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])
            d = diffs.mean() if len(diffs) else math.nan
            se = diffs.std(ddof=1) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
        else:
            x, y = np.array(list(a.values())), np.array(list(b.values()))
            d = x.mean() - y.mean() if len(x) and len(y) else math.nan
            se = math.hypot(x.std(ddof=1) / math.sqrt(len(x)), y.std(ddof=1) / math.sqrt(len(y))) if min(
                len(x), len(y)) > 1 else math.nan
        for key, got in (("mean_difference", d), ("standard_error", se)):
            assert (v[key] is None) == (not math.isfinite(got)), (v["row"], key)
            assert v[key] is None or abs(v[key] - got) <= 1e-6, (v["row"], key, v[key], got)
        if not (math.isfinite(d) and math.isfinite(se)):
            expected = "cannot tell"
        elif v["direction"] == 0:  # a claimed lack of difference, within 0.02
            expected = "holds" if abs(d) + 2 * se <= 0.02 else "does not hold" if abs(d) >= 2 * se else "cannot tell"
        else:
            expected = ("holds" if d * v["direction"] > 0 else "does not hold") if abs(d) >= 2 * se else "cannot tell"
        assert v["by_the_rule"] == expected, (v["row"], v["conclusion"])
        assert v["verdict"] in (expected, "withdrawn", "not testable here"), (v["row"], v["conclusion"])
