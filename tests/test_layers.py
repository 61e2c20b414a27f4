"""The floors of the package (docs/architecture.md): imports run down, never in a circle.

Every import of a thoracic module by another (at the top of a module or inside a function,
``TYPE_CHECKING`` blocks left out: they never run) is read from the source with :mod:`ast`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import thoracic

SRC = Path(thoracic.__file__).parent

#: Each subpackage (or top-level module) and its floor; a module may import its own floor or lower.
FLOORS: dict[str, int] = {
    "_version": 0, "_warnings": 0, "_draw": 0, "errors": 0, "transform": 0, "labels": 0, "boxes": 0, "_fs": 0, "_lazy": 0, "_pool": 0, "_process": 0, "_tls": 0,
    "io": 1,
    "preprocess": 2,
    "models": 3, "explain": 3,
    "anatomy": 4, "detect": 4, "classify": 4,
    "inference": 5, "data": 5,
    "evaluate": 6, "batch": 6, "dicom": 6, "train": 6,
    "report": 7, "serve": 7, "node": 7, "demo": 7,
    "cli": 8, "__main__": 8, "": 9,  # "": the package itself (thoracic/__init__.py, the public API)
}

#: Imports that run from a lower floor up, each justified in docs/architecture.md.
UPWARD: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _imports() -> dict[str, dict[str, bool]]:
    """module -> {imported thoracic module: True when at module level}."""
    mods = _modules()
    graph: dict[str, dict[str, bool]] = defaultdict(dict)
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skip:
                continue
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{name}: use absolute imports"
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target.startswith("thoracic") and target != name and target in mods:
                    graph[name][target] = graph[name].get(target, False) or id(node) in top
    return graph


def _package(module: str) -> str:
    """The floor's key: the subpackage, ``__main__`` for every program entry point
    (``python -m thoracic.node`` runs the CLI: nothing imports it), ``""`` for the package."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "__main__"
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_floor():
    assert {_package(m) for m in _modules()} <= set(FLOORS)


def test_imports_run_down():
    up = {(a, b) for a, targets in _imports().items() for b in targets
          if _package(a) != _package(b) and FLOORS[_package(b)] > FLOORS[_package(a)]}
    assert up == UPWARD, "imports from a lower floor up (docs/architecture.md says where things go)"
    assert len(UPWARD) <= 2


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_between_modules():
    graph = {a: {b for b in targets if not a.startswith(b + ".")} for a, targets in _imports().items()}
    assert _cycles(graph) == []


def test_no_import_circles_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, targets in _imports().items():
        for b in targets:
            if _package(a) != _package(b) and _package(a):
                graph[_package(a)].add(_package(b))
    assert _cycles(graph) == []


def test_the_checks_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
