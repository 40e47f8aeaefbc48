"""The package's import graph has no circle, counting the imports inside functions (a circle closed by
a function-level import breaks start-up the day that import moves to the top)."""

import ast
import os

from helpers import REPO

PACKAGE = os.path.join(REPO, "reid_tf")


def _modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path[:-3], REPO).replace(os.sep, ".")
                out[module.removesuffix(".__init__")] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under `if TYPE_CHECKING:`, which never run."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its file."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        skipped = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                graph[module] |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    graph[module] |= {target} if target in modules else {base} if base in modules else set()
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle():
    assert cycles(import_graph()) == []


def test_the_check_finds_a_circle_closed_inside_a_function():
    graph = import_graph()
    graph["reid_tf.constants"].add("reid_tf.config")  # config imports constants: a circle
    assert any({"reid_tf.config", "reid_tf.constants"} <= set(c) for c in cycles(graph))


def test_every_error_of_the_package_has_the_one_base():
    import importlib
    import inspect

    from reid_tf.errors import ReidError

    errors = []
    for module in _modules():
        for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass):
            if issubclass(cls, Exception) and cls.__module__ == module:
                errors.append(cls)
    assert len(errors) >= 18
    assert [cls.__name__ for cls in errors if not issubclass(cls, ReidError)] == []
