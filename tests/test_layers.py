"""The layering of docs/architecture.md, checked: every `coachgraph` import (module level,
TYPE_CHECKING and function-local alike) points to a lower layer or stays within its own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "coachgraph"
FOUNDATIONS = {"config", "errors", "ids", "retry", "secret", "limiter", "observe", "tracing"}
RANK = {
    "foundations": 0,
    "stores": 1,
    # siblings: none may import another (same rank)
    "graph": 2,
    "search": 2,
    "media": 2,
    "leaderboards": 2,
    "subscriptions": 2,
    "seed": 2,
    "engine": 2,
    # across the stores and projections: erasure, export, audit (uses graph, search, media...)
    "lifecycle": 2.5,
    "resolvers": 3,
    "runtime": 3,
    "schema": 4,
    "api": 5,
    "services": 6,
    "app": 7,
    "workers": 8,  # serve --workers: the supervisor and its worker processes
    "cli": 9,
}


def layer(dotted: str) -> str:
    """`coachgraph.stores.db` -> `stores`; the foundations count as one layer."""
    parts = dotted.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    return "foundations" if name in FOUNDATIONS else name


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "coachgraph":
                found += [(node.lineno, f"coachgraph.{a.name}") for a in node.names]
            elif node.module.startswith("coachgraph."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("coachgraph.")]
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward: list[str] = []
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        here = layer(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if here == "__init__":
            continue
        assert here in RANK, f"{path}: a module outside the known layers; add it to RANK"
        for line, name in imported(ast.parse(path.read_text())):
            there = layer(name)
            checked += 1
            if there != here and RANK[there] >= RANK[here]:
                upward.append(f"{path.name}:{line}: {here} imports {name}")
    assert checked > 100  # the walk saw the package's imports
    assert upward == []


def test_the_check_sees_an_upward_import() -> None:
    tree = ast.parse("from coachgraph.api.view import Gate\nimport coachgraph.schema.types")
    assert [layer(name) for _, name in imported(tree)] == ["api", "schema"]
    assert RANK["api"] > RANK["stores"]
