import importlib.util
import subprocess
import sys

import pytest
from helpers import REPO


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_ruff_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "reid_tf", "tools", "tests", "benchmarks"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
