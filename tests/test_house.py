"""The shape of the package: no import cycles, small modules, the request line kept.

Static checks over proxy/ (the ``vipsgate`` package), read with ``ast``: they fail
when a change makes a module import one that imports it back, grows a module past
450 lines, lets a stage reach the composition root, or forgets a package in
pyproject.toml.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "proxy"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("vipsgate", *parts))


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The package modules ``name`` imports (at any depth in the file)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in MODULES and c != name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_no_import_cycles():
    """Depth-first search for a back edge; a cycle is reported as its path."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodule is not a cycle
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_450_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines"


def test_only_the_composition_root_knows_the_app_and_the_handler():
    for name, imported in GRAPH.items():
        if "vipsgate.app" in imported:
            assert name in ("vipsgate.serve",), name
        if "vipsgate.handler" in imported:
            assert name == "vipsgate.app", name


def test_the_pipeline_knows_nothing_of_http():
    """Pixel work runs in workers (threads or processes): no server module there."""
    server_side = {"vipsgate.app", "vipsgate.handler", "vipsgate.fetch", "vipsgate.cache",
                   "vipsgate.respond", "vipsgate.middleware", "vipsgate.admission",
                   "vipsgate.sources", "vipsgate.verify"}
    for name, imported in GRAPH.items():
        if name.startswith("vipsgate.processing"):
            assert not imported & server_side, (name, imported & server_side)
            assert "aiohttp" not in MODULES[name].read_text(), name


def test_every_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert listed == packages
    assert config["package-dir"] == {"vipsgate": "proxy"}


def test_importing_the_pipeline_changes_no_process_state():
    """libvips is set up by ``processing.vips.init()`` (the worker pool calls it), never
    as a side effect of an import."""
    for name in MODULES:
        if not name.startswith("vipsgate.processing"):
            continue
        tree = ast.parse(MODULES[name].read_text())
        for node in tree.body:  # module level: only definitions, imports, constants
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                pytest.fail(f"{name} calls {ast.unparse(node.value)} at import")
