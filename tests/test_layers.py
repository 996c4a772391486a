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


# Interfaces parse, call one use case and render (docs/decisions/0005): they never touch the
# database or write audit rows themselves.
INTERFACES = ("web", "cli")
NO_DATA_ACCESS = ("sqlalchemy", "paulyops.core.db.models", "paulyops.services.audit.chain")
# The audit package re-exports the writer; its reading modules (browse, verification,
# exports, checkpoints, retention) are services an interface may call.
WRITER_NAMES = {
    "paulyops.services.audit": {"record", "append"},
    "paulyops.services.actor": {"record"},
}


def _imported(path: Path) -> list[tuple[str, set[str]]]:
    """(module, names imported from it) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, set[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, set()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, {alias.name for alias in node.names}))
    return out


def _violations_of(path: Path) -> list[str]:
    found = []
    for module, names in _imported(path):
        if any(module == bad or module.startswith(bad + ".") for bad in NO_DATA_ACCESS):
            found.append(module)
        elif module == "paulyops.services" and "audit" in names:
            found.append("paulyops.services.audit (the package holds the writer)")
        elif module == "paulyops.services.audit" and not names:
            found.append("paulyops.services.audit")
        elif names & WRITER_NAMES.get(module, set()):
            found.append(f"{module}: {', '.join(sorted(names & WRITER_NAMES[module]))}")
    return found


def test_interfaces_do_not_touch_the_database_or_the_audit_writer():
    """No module of web/ or cli/ imports SQLAlchemy, the models or the audit writer."""
    violations = []
    for layer in INTERFACES:
        for path in sorted((SRC / layer).rglob("*.py")):
            violations += [f"{path.relative_to(SRC)} imports {v}" for v in _violations_of(path)]
    assert violations == []


def test_the_interface_rule_catches_each_kind_of_import(tmp_path):
    """The checker itself: each forbidden form is found, the allowed ones are not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sqlalchemy\n"
        "from sqlalchemy.orm import Session\n"
        "from paulyops.core.db.models import User\n"
        "from paulyops.services import audit\n"
        "from paulyops.services.audit import record\n"
        "from paulyops.services.audit.chain import append\n"
        "from paulyops.services.actor import record\n"
    )
    assert len(_violations_of(bad)) == 7
    good = tmp_path / "good.py"
    good.write_text(
        "from paulyops.core.db import Session\n"
        "from paulyops.services.audit import browse\n"
        "from paulyops.services.audit.verification import verify\n"
        "from paulyops.services.actor import CLI, Actor\n"
    )
    assert _violations_of(good) == []
