"""The package's import structure: layers import only to their left, no import circles,
no private cross-package imports, every source file under 500 lines.

    _io, report  <  ops, data, train, eval  <  nn  <  models  <  bench  <  tasks, hf  <  cli

(``data``, ``train`` and ``eval`` need no attention code; ``bench`` measures ops, nn and
models; tasks combine everything below them; the CLI sits on top.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "leapformer"
RANK = {"_io": 0, "__init__": 2, "report": 1,
        "ops": 1, "data": 1, "train": 1, "eval": 1,
        "nn": 2, "models": 3, "bench": 4, "tasks": 5, "hf": 5, "linearize": 5, "export": 5,
        "cli": 6}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Project modules that ``path`` imports (at any depth of the file, lazy imports too)."""
    out: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if not base.startswith("leapformer"):
                continue
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("leapformer"))
    return out


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_rank():
    assert {_top(m) for m in MODULES} <= set(RANK)


def test_layers_import_only_to_their_left():
    bad = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
           if _top(t) != _top(m) and RANK[_top(t)] >= RANK[_top(m)]]
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_private_cross_package_imports():
    bad = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
           if _top(t) != _top(m) and any(p.startswith("_") for p in t.split(".")[2:])]
    assert not bad, "private modules imported from another package:\n" + "\n".join(sorted(bad))


def test_no_import_circles():
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = iter(range(10**6))

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in MODULES:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_files_are_small(path):
    assert len(path.read_text().splitlines()) < 500


def test_the_graph_is_not_empty():
    """The parser must see real edges, or the tests above prove nothing."""
    assert "leapformer.ops" in {t for ts in GRAPH.values() for t in ts} or any(
        t.startswith("leapformer.ops.") for ts in GRAPH.values() for t in ts)
    assert "leapformer.cli.lra" in GRAPH["leapformer.cli"]
