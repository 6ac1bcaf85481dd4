"""The package has no import circles, and every module imports on its own.

A circle works only while the modules in it happen to be imported in one order; the next import
added anywhere in it fails with "partially initialised module". The graph is read from the
source with `ast`, so a circle through an import inside a function (a "lazy" import, the usual
way to hide one) counts like any other. What counts as an edge:

- `import a.b.c` and `from a.b.c import x`: a.b.c;
- `from a.b import c`: a.b, whose namespace is read (its `__init__` must have finished), and
  a.b.c too when that is a module;
- not the parent packages every import runs first: a package `__init__` that re-exports its
  modules would otherwise be a circle with each of them;
- not imports under `if TYPE_CHECKING:`: they never run, and an annotation naming a class of a
  module that imports this one is no circle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Container
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "smallfirst").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, source: str, is_package: bool = False, modules: Container[str] = MODULES) -> set[str]:
    """The `modules` that module `name` (its text: `source`) imports, at module level or in any function."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit_one(stmt)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            found.append(origin)
            found.extend(f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in modules)
        visit(node)

    visit(ast.parse(source, name))
    out = set()
    for target in found:
        while target and target not in modules:  # `from smallfirst.x import Name`: the module x
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the package is far too small to recurse deep
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_circle_in(graph, component) for component in components]


def _circle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, for the message."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")
            for name, path in MODULES.items()}


def test_the_scan_counts_the_imports_that_run_and_only_those():
    modules = frozenset({"p", "p.a", "p.b", "p.c", "p.d", "p.e", "p.f", "p.g"})
    source = """
import p.a
from p.b import Thing
from . import c
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from p.d import OnlyAType
else:
    from p.e import x

def later():
    from .f import y
import json
"""
    assert _imports("p.g", source, modules=modules) == {"p", "p.a", "p.b", "p.c", "p.e", "p.f"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_of_smallfirst_imports_itself_back_through_others():
    graph = _graph()
    circles = _cycles(graph)
    assert not circles, "import circles:\n" + "\n".join("  " + " -> ".join(c) for c in circles)


# Run in a child process: each module is imported with no smallfirst module loaded before it
# (third-party ones stay loaded: their import order is not ours to guard), so an import that only
# works after some other smallfirst module was loaded fails here.
_IMPORT_EACH_FIRST = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "smallfirst" or m.startswith("smallfirst.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ":\\n" + traceback.format_exc())
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_when_it_is_the_first_smallfirst_module_loaded():
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST, *sorted(MODULES)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
