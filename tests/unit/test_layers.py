"""Imports point down, never up, and never in a circle (docs/ARCHITECTURE.md, "Layers").

Every import in the installed namespace is read from the source (also those under
TYPE_CHECKING and inside functions), so a new module in the wrong place, or a cycle,
fails here rather than in a newcomer's head.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"bus": "bus", "engine": "bus.engine", "supervisor": "bus.supervisor"}  # repo folder -> installed package

# Lowest first. A module may import from its own layer or any below it.
LAYERS = [
    ("protocol", ["bus._version", "bus.exitcodes", "bus.errors", "bus.protocol"]),
    ("shared", ["bus"]),  # the rest of bus/: sockets, runtime, keys, journal, spool, process, view, the clients, bus attach
    ("engine", ["bus.engine"]),
    ("supervisor", ["bus.supervisor"]),
    ("apps", ["bus.cli", "bus.web", "bus.__main__"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for k, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), k
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules that `module` imports."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            submodules = [f"{base_name}.{alias.name}" for alias in node.names if f"{base_name}.{alias.name}" in known]
            names = submodules if len(submodules) == len(node.names) else [base_name, *submodules]  # (`from . import x`: x, not the package)
        else:
            continue
        for name in names:
            if name in known and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def test_every_import_points_down_or_sideways() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in graph().items() for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_engine_sdk_and_the_supervisor_do_not_import_each_other() -> None:
    crossing = [f"{m} imports {t}" for m, ts in graph().items() for t in ts
                if {m.split(".")[1] if m.count(".") else "", t.split(".")[1] if t.count(".") else ""} == {"engine", "supervisor"}]
    assert not crossing, crossing


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    # A package's __init__ that re-exports its own modules is not a cycle with them.
    for module in edges:
        edges[module] = {t for t in edges[module] if not (t.startswith(module + ".") or module.startswith(t + ".") and _is_package(t))}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _is_package(module: str) -> bool:
    return modules()[module].name == "__init__.py"


def test_an_engine_loads_neither_asyncio_nor_sqlite3_nor_the_supervisor() -> None:
    probe = "import sys, bus.engine; print(sorted(m for m in ('asyncio', 'sqlite3', 'bus.subscriber', 'bus.supervisor', 'bus.journal') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_the_old_top_level_names_are_gone() -> None:
    """`engine` and `supervisor` are not installed as top-level packages (supervisord's is `supervisor`)."""
    probe = "import importlib.util as u; print(u.find_spec('engine'), u.find_spec('supervisor'))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # (a checkout on PYTHONPATH has the folders, not the packages)
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd="/", env=env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "None None"


def test_every_package_of_the_tree_is_installed() -> None:
    """pyproject.toml lists the packages by name (the folders map to bus.*): a new one must be listed."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module for module, path in modules().items() if path.name == "__init__.py"}
    assert packages == listed, f"in the tree, not in pyproject.toml: {sorted(packages - listed)}; listed, not in the tree: {sorted(listed - packages)}"


def test_bus_exports_every_lazy_name_and_each_resolves() -> None:
    import bus

    assert set(bus.__all__) == {"__version__", *bus._LAZY}
    assert all(getattr(bus, name) is not None for name in bus.__all__)
