"""The package graph drawn in docs/architecture.md is the one the code has, and it has no cycle.

Print the graph to paste into the page: ``python -m tests.test_architecture``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# Top to bottom, as in docs/architecture.md.
PACKAGES = (
    "cli", "viewer", "pipeline", "model", "simulators", "scanner", "features", "stream", "recordings", "core",
)  # fmt: skip


def package_imports() -> dict[str, set[str]]:
    """For each package, the other packages its modules import (at any depth, lazily or not)."""
    edges: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for package in PACKAGES:
        for path in (PROJECT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                edges[package] |= {name.split(".")[0] for name in names} & set(PACKAGES) - {package}
    return edges


def mermaid(edges: dict[str, set[str]]) -> str:
    """The graph as the page's mermaid block."""
    lines = ["```mermaid", "graph TD"]
    for package in PACKAGES:
        lines += [f"    {package} --> {other}" for other in sorted(edges[package], key=PACKAGES.index)]
    return "\n".join([*lines, "```"])


def test_the_page_draws_the_import_graph_of_the_code():
    page = (PROJECT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = re.search(r"```mermaid\n.*?```", page, re.DOTALL)
    assert drawn is not None, "docs/architecture.md has no mermaid graph"
    assert drawn.group(0) == mermaid(package_imports()), "redraw it: python -m tests.test_architecture"


def test_packages_import_only_downwards_so_there_is_no_cycle():
    edges = package_imports()
    upward = [
        f"{package} imports {other}"
        for package, others in edges.items()
        for other in others
        if PACKAGES.index(other) < PACKAGES.index(package)
    ]
    assert upward == []


def test_every_package_of_the_project_is_in_the_layers():
    found = {path.parent.name for path in PROJECT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert found == set(PACKAGES)


if __name__ == "__main__":
    print(mermaid(package_imports()))
