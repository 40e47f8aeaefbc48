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
