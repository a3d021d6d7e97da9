"""Imports only point down: ui -> ingest -> embeddings and catalog (SPEC.md)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "embeddings": {"embeddings"},
    "catalog": {"catalog", "migrations"},
    "migrations": {"catalog", "migrations"},
    "ingest": {"ingest", "embeddings", "catalog"},
    "ui": {"ui", "ingest", "embeddings", "catalog"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_only_point_down():
    violations = []
    for layer, allowed in ALLOWED.items():
        for path in (REPO / layer).rglob("*.py"):
            bad = (_imports(path) & set(ALLOWED)) - allowed
            if bad:
                violations.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert violations == []
