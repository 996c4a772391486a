"""Imports point downward only: core <- services <- interfaces (web, cli, workers)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "paulyops"

# A module in the key's layer may not import any package in the value.
FORBIDDEN = {
    "core": ("paulyops.services", "paulyops.web", "paulyops.cli", "paulyops.workers"),
    "services": ("paulyops.web", "paulyops.cli", "paulyops.workers"),
    "web": ("paulyops.cli",),
    "workers": ("paulyops.web", "paulyops.cli"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_imports_point_downward():
    """No core module imports a service or interface; no service imports an interface."""
    violations = []
    for path in SRC.rglob("*.py"):
        layer = path.relative_to(SRC).parts[0]
        for name in _imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN.get(layer, ())):
                violations.append(f"{path.relative_to(SRC)} imports {name}")
    assert violations == []
