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
    shutil.copytree(os.path.join(REPO, "docs", "benchmarks"), tmp_path / "benchmarks")  # the step's pace
    with open(folder / "doc_template.md", encoding="utf-8") as f:
        template = f.read()
    output = tmp_path / "training_log.md"
    verdicts = training_log_report.write(str(folder), str(output), template)
    with open(os.path.join(REPO, "docs", "training_log.md"), encoding="utf-8") as f:
        committed = f.read()
    assert output.read_text(encoding="utf-8") == committed
    with open(os.path.join(REPO, "docs", "training_log", "verdicts.json"), encoding="utf-8") as f:
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


def _d_se(a: dict, b: dict, paired: bool):
    import math

    import numpy as np

    if paired:
        diffs = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])
        d = diffs.mean() if len(diffs) else math.nan
        return d, diffs.std(ddof=1) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    d = x.mean() - y.mean() if len(x) and len(y) else math.nan
    return d, math.hypot(x.std(ddof=1) / math.sqrt(len(x)), y.std(ddof=1) / math.sqrt(len(y))) if min(
        len(x), len(y)) > 1 else math.nan


def _by_rule(direction: int, d: float, se: float) -> str:
    import math

    if not (math.isfinite(d) and math.isfinite(se)):
        return "cannot tell"
    if direction == 0:  # a claimed lack of difference, within 0.02
        return "holds" if abs(d) + 2 * se <= 0.02 else "does not hold" if abs(d) >= 2 * se else "cannot tell"
    return ("holds" if d * direction > 0 else "does not hold") if abs(d) >= 2 * se else "cannot tell"


def _flag(summary: dict, name: str) -> str:
    return [f.split("=", 1)[1] for f in summary["flags"] if f.startswith(f"--{name}=")][-1]


def _testable(summaries: list[dict], v: dict) -> bool:
    """The rule's 'not testable here', from the flags in the summaries: two input sizes whose
    stand-in raw features differ, or two continuations of one run of which neither moves."""
    import re

    if v["compared_with"] in (None, v["row"]):
        return True
    both = [s for s in summaries if s["run"] in (v["row"], v["compared_with"])]
    sizes = {(int(_flag(s, "image_height")), int(_flag(s, "image_width"))) for s in both}
    if len(sizes) == 2:
        small, large = (f"standin_features_{h}x{w}" for h, w in sorted(sizes, key=lambda hw: hw[0] * hw[1]))
        d, se = _d_se(_seed_figures(summaries, large, "mAP", 0), _seed_figures(summaries, small, "mAP", 0), True)
        if _by_rule(0, d, se) == "does not hold":
            return False
    starts = {(re.sub(r"-seed\d+$", "", os.path.basename(_flag(s, "init_checkpoint"))), s["first_step"]["step"] - 1)
              for s in both}
    if len(starts) == 1 and next(iter(starts))[0]:
        (parent, start), = starts
        begun = _seed_figures(summaries, parent, v["metric"], start)
        still = [_by_rule(0, *_d_se(_seed_figures(summaries, run, v["metric"], v["step"]), begun, True)) == "holds"
                 for run in (v["row"], v["compared_with"])]
        return not all(still)
    return True


def test_every_committed_verdict_is_what_the_rule_gives_from_the_summaries():
    import math

    folder = os.path.join(REPO, "docs", "training_log")
    with open(os.path.join(folder, "verdicts.json"), encoding="utf-8") as f:
        verdicts = json.load(f)
    assert len({v["rule"] for v in verdicts}) == 1
    summaries = _summaries(os.path.join(folder, "runs"))
    for v in verdicts:
        a = _seed_figures(summaries, v["row"], v["metric"], v["step"])
        if v["against"] is not None:
            b, paired = {seed: v["against"] for seed in a}, True
        else:
            step = v["step"] if v["compared_step"] is None else v["compared_step"]
            b, paired = _seed_figures(summaries, v["compared_with"], v["compared_metric"], step), v["paired"]
        d, se = _d_se(a, b, paired)
        for key, got in (("mean_difference", d), ("standard_error", se)):
            assert (v[key] is None) == (not math.isfinite(got)), (v["row"], key)
            assert v[key] is None or abs(v[key] - got) <= 1e-6, (v["row"], key, v[key], got)
        expected = _by_rule(v["direction"], d, se)
        assert v["by_the_rule"] == expected, (v["row"], v["conclusion"])
        withdrawn = v["row"] in ("resnet_IDE", "resnet_maxpool", "resnet_256")  # b19bb52: "(code has bug!!)", replaced
        label = "withdrawn" if withdrawn else expected if _testable(summaries, v) else "not testable here"
        assert v["verdict"] == label, (v["row"], v["conclusion"], v["verdict"], label)


def test_the_standin_diagnosis_starts_from_the_committed_raw_features():
    """benchmarks/standin_sizes.py's first row re-ran the committed raw-feature runs: the same figures."""
    folder = os.path.join(REPO, "docs", "training_log")
    with open(os.path.join(folder, "standin_sizes.json"), encoding="utf-8") as f:
        diagnosis = json.load(f)
    first = diagnosis["rows"][0]
    assert first["change"] == "as committed" and first["large"] == "72x36"
    summaries = _summaries(os.path.join(folder, "runs"))
    for size, key in (("64x32", "small_mAP"), ("72x36", "large_mAP")):
        committed = _seed_figures(summaries, f"standin_features_{size}", "mAP", 0)
        assert [round(committed[s], 6) for s in diagnosis["seeds"]] == first[key], size
