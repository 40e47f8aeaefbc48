"""The house's size rules, measured on the package: every module readable in one sitting (at most
300 lines) and every function at most 60 lines."""

import ast
import os

from helpers import REPO

MODULE_LINES, FUNCTION_LINES = 300, 60


def _modules():
    for folder, _, files in os.walk(os.path.join(REPO, "reid_tf")):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, REPO), f.read()


def test_every_module_and_function_fits_the_house_rules():
    long_modules, long_functions = [], []
    for path, text in _modules():
        if text.count("\n") > MODULE_LINES:
            long_modules.append(f"{path}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    long_functions.append(f"{path}:{node.lineno} {node.name}: {length} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions
