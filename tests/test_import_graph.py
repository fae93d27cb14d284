"""The package's import graph, read from the source (no import runs): no cycle among the imports a module makes
(at its top or inside a function; ``if TYPE_CHECKING:`` blocks aside), the
layers of DESIGN.md ("run orchestration sits above training/, evaluation/ and plots/; none of them imports it"),
and nothing private (a leading underscore) imported from another package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "vaekit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(top_level_only: bool) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, imported name or "")} of vaekit's own modules."""
    out: dict[str, set[tuple[str, str]]] = {}
    for path in PKG.rglob("*.py"):
        mod = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # ``if TYPE_CHECKING:`` imports are for type checkers, not run
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        found: set[tuple[str, str]] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                found |= {(a.name, "") for a in node.names if a.name.startswith("vaekit")}
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, node, path.name == "__init__.py")
                if target.startswith("vaekit"):
                    found |= {(target, a.name) for a in node.names}
        out[mod] = found
    return out


def _known(modules: set[str], target: str, name: str) -> str | None:
    """The module an import loads: ``from a.b import c`` is a.b.c when that is a module, else a.b."""
    if name and f"{target}.{name}" in modules:
        return f"{target}.{name}"
    return target if target in modules else None


def test_no_import_cycle():
    graph = _imports(top_level_only=False)
    modules = set(graph)
    edges = {m: {t for t in (_known(modules, a, b) for a, b in imps) if t and t != m} for m, imps in graph.items()}
    # a package's __init__ importing its own submodules is how packages re-export: not a cycle of concern
    for m in edges:
        edges[m] = {t for t in edges[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


LOWER = ("vaekit.training", "vaekit.evaluation", "vaekit.plots", "vaekit.models", "vaekit.objectives",
         "vaekit.likelihoods", "vaekit.posteriors", "vaekit.nn", "vaekit.data", "vaekit.metrics")
ORCHESTRATION = ("vaekit.run", "vaekit.runs", "vaekit.cli", "vaekit.api")


def test_the_layers_below_the_orchestration_never_import_it():
    bad = []
    for mod, imps in _imports(top_level_only=False).items():
        if not mod.startswith(LOWER):
            continue
        for target, name in imps:
            full = f"{target}.{name}" if name else target
            if any(full == o or full.startswith(o + ".") or target == o or target.startswith(o + ".")
                   for o in ORCHESTRATION):
                bad.append(f"{mod} imports {full}")
    assert not bad, bad


def _package(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2])


def test_nothing_private_is_imported_from_another_package():
    bad = []
    for mod, imps in _imports(top_level_only=False).items():
        for target, name in imps:
            if name.startswith("_") and not name.startswith("__") and _package(target) != _package(mod):
                bad.append(f"{mod} imports {target}.{name}")
    assert not bad, bad
