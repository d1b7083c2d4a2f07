"""The package's layering: data flows one way, audio -> segments -> features -> analysis -> reports.

Every ``stemstore`` import (module level or inside a function) is read with :mod:`ast`. A module
may import from its own layer's package or from a lower layer, never upwards, and the module
import graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stemstore"
CLI = Path(__file__).resolve().parents[1] / "cli"

#: Layer of each top-level part of the package, lowest first. Equal numbers may not import each other.
LAYERS = {
    "errors": 0,
    "enums": 0,
    "data": 0,
    "store": 1,
    "audio": 1,
    "cluster": 1,
    "corpus": 2,
    "synth": 3,
    "curation": 2,
    "segments": 3,
    "features": 4,
    "analysis": 5,
    "reports": 6,
    "study": 7,
    "web": 7,
    "cli": 8,
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    for path in CLI.glob("*.py"):
        name = "stemstore.cli" if path.stem == "__init__" else f"stemstore.cli.{path.stem}"
        modules[name] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _part(module: str) -> str:
    return module.split(".")[1]


def test_every_part_of_the_package_has_a_layer():
    assert {_part(m) for m in _modules() if m != "stemstore"} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m != "stemstore"))
def test_no_upward_import(module):
    upward = [
        target
        for target in _graph()[module]
        if target != "stemstore"
        and _part(target) != _part(module)
        and LAYERS[_part(target)] >= LAYERS[_part(module)]
    ]
    assert not upward, f"{module} imports from a layer at or above its own: {upward}"


def test_no_import_cycle():
    graph = _graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
