"""Draw the imports between the packages of app/ and model/, and fail on a circle.

    .venv/bin/python scripts/import_graph.py            # the package graph, then "no circle"
    .venv/bin/python scripts/import_graph.py --modules  # module by module

Every import counts, those inside functions and under TYPE_CHECKING too: a circle hidden in a function is
still a circle. Exit status 1 when there is one, with the circle printed.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("app", "model")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules of app/ and model/ that `path` imports (the longest known prefix of each name)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def module_graph() -> dict[str, set[str]]:
    paths = [p for top in TOP for p in (ROOT / top).rglob("*.py")]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) - {module_name(p)} for p in paths}


def package_of(module: str) -> str:
    """app.services.keys -> app.services; model.card.schema -> model.card; a module at the top stays itself
    (app.runtime, app.main)."""
    return ".".join(module.split(".")[:2])


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in modules.items():
        graph[package_of(module)] |= {package_of(t) for t in targets} - {package_of(module)}
    return dict(graph)


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of `graph`, as the nodes around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", action="store_true", help="module by module instead of package by package")
    args = parser.parse_args(argv)
    modules = module_graph()
    graph = modules if args.modules else package_graph(modules)
    for node in sorted(graph):
        print(f"{node:24} -> {', '.join(sorted(graph[node])) or '(nothing)'}")
    for name, level in (("packages", package_graph(modules)), ("modules", modules)):
        circle = find_circle(level)
        if circle:
            print(f"circle among the {name}: {' -> '.join(circle)}")
            return 1
    print("no circle, among the packages or the modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
