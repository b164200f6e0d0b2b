"""The package's shape, read from its own imports (ast): no cycles, imports only downward.

Every ``import`` counts, at the top of a module or inside a function: an
import deferred into a function is still a dependency, and hiding a cycle
there is how cycles came back before. The floors are those of
``dirsync/__init__.py``; a module may import its own floor and the floors
below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dirsync"

# Lowest first. A top-level plain module not named here is on the ground floor.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("entry", "errors", "schema", "wording", "bundled", "interrupt", "escapes"),
    ("addresses",),
    ("ldif",),
    ("directories",),
    ("mapping",),
    ("state",),
    ("schedule",),
    ("config",),
    ("relay",),
    ("sync",),
    ("checks",),
    ("cli", "__main__"),
    ("testing",),
)
GROUND = frozenset(FLOORS[0])
MAX_PLAIN_MODULES = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The dirsync modules ``name`` imports, resolved to modules (not names in them)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("dirsync") and target not in ("dirsync", name):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def floor_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for level, names in enumerate(FLOORS):
        if top in names:
            return level
    if len(parts) == 2 and (PACKAGE / f"{top}.py").exists():
        return 0
    raise AssertionError(f"{module} is on no floor: add its package to FLOORS")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_reader_sees_imports_at_every_depth() -> None:
    edges = graph()
    # A module-level import, a from-import of a submodule, and imports inside functions.
    assert "dirsync.cli.main" in edges["dirsync.__main__"]
    assert "dirsync.sync.containers" in edges["dirsync.checks.containers"]
    assert "dirsync.schedule.scheduler" in edges["dirsync.config.model"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_imports_only_go_down() -> None:
    upward = [f"{mod} (floor {floor_of(mod)}) imports {dep} (floor {floor_of(dep)})"
              for mod, deps in sorted(graph().items()) for dep in sorted(deps)
              if floor_of(dep) > floor_of(mod)]
    assert upward == []


def test_few_plain_modules_at_the_top() -> None:
    plain = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(plain) <= MAX_PLAIN_MODULES, plain
    assert set(plain) <= GROUND | {"config"}, plain


@pytest.mark.parametrize("package", sorted(
    p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_each_subpackage_says_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "floor" in doc.lower(), f"dirsync/{package}/__init__.py: say its floor"
