"""The console of every entry point: this project's own lines, TensorFlow's and its libraries' INFO
kept off, every line at most `MAX_LINE` characters, wherever the checkout sits."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging as std_logging
import os
import re
import sys
import tempfile
import warnings

from absl import logging

MAX_LINE = 300
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Libraries whose INFO and WARNING records are theirs to read, not a user's.
_LIBRARY_LOGGERS = ("tensorflow", "tf2onnx", "onnx", "h5py", "matplotlib", "PIL")
# Warnings TensorFlow and Keras raise about their own code, not ours (TF 2.21's int8 calibrator
# still uses the interpreter it deprecates), each silenced by its message.
# What TensorFlow's C++ library prints while it loads, before any log setting is read (TF 2.21).
_LOAD_LINES = (r"^WARNING: All log messages before absl::InitializeLog", r"^[IW]0000 ")
_THEIR_WARNINGS = (r".*tf\.lite\.Interpreter is deprecated.*",
                   r".*`shuffle=True` was passed, but will be ignored.*")


class _OursOnly(std_logging.Filter):
    """Keep records from this package at any level, others' from ERROR up; cut long lines."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.levelno < std_logging.ERROR and not record.pathname.startswith(_PACKAGE):
            return False
        message = record.getMessage()
        if len(message) > MAX_LINE:
            record.msg, record.args = message[: MAX_LINE - 3] + "...", None
        return True


def quiet(timestamps: bool = True) -> None:
    """Set up the console of an entry point; call it first thing in `main`, before anything
    imports TensorFlow. TensorFlow's C++ INFO and WARNING records are noise on the console; on a
    Linux machine without NVIDIA's driver its only ERROR record, "failed call to cuInit", reads
    like a failure: that one goes too. A user's TF_CPP_MIN_LOG_LEVEL wins (0 or 1 shows all)."""
    no_gpu_driver = sys.platform.startswith("linux") and not os.path.exists("/proc/driver/nvidia")
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if no_gpu_driver else "2")
    if level.strip() in ("2", "3"):
        quiet_tensorflow_load()
    for name in _LIBRARY_LOGGERS:
        std_logging.getLogger(name).setLevel(std_logging.ERROR)
    for pattern in _THEIR_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler()
    handler.setFormatter(std_logging.Formatter("%(asctime)s %(message)s" if timestamps else "%(message)s",
                                               "%H:%M:%S"))
    if not any(isinstance(f, _OursOnly) for f in handler.filters):
        handler.addFilter(_OursOnly())


@contextlib.contextmanager
def native_lines_dropped(*patterns: str):
    """Run a block whose C++ code prints fixed INFO lines straight to stderr (file descriptor 2,
    out of Python's reach), dropping the lines that match `patterns`; others are written back."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(re.search(p, line) for p in patterns):
                    sys.stderr.write(line)


class _QuietTensorFlowLoad(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, so that its module runs with the load-time lines dropped."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                with native_lines_dropped(*_LOAD_LINES):
                    run(module)

            spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_load() -> None:
    """Drop the INFO and WARNING lines TensorFlow prints while it loads, whoever imports it."""
    installed = any(isinstance(finder, _QuietTensorFlowLoad) for finder in sys.meta_path)
    if "tensorflow" not in sys.modules and not installed:
        sys.meta_path.insert(0, _QuietTensorFlowLoad())
