"""What the CLI imports: only what a command uses, so it starts fast on any install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN_AND_LIST = """
import json, sys
sys.argv = ["paulyops", *sys.argv[1:]]
from paulyops.cli.main import app
try:
    app()
except SystemExit as done:
    code = done.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _imports(*args: str, cwd: Path) -> tuple[object, set[str]]:
    """Run ``paulyops ARGS`` in a fresh interpreter; return (exit code, modules loaded)."""
    import json

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PAULYOPS_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env["PAULYOPS_ENV"] = "test"
    result = subprocess.run(  # the test's own interpreter, fixed code
        [sys.executable, "-c", RUN_AND_LIST, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def _packages(modules: set[str]) -> set[str]:
    return {name.split(".", 1)[0] for name in modules}


def test_version_flag_imports_no_stack(tmp_path: Path) -> None:
    """``paulyops --version`` loads neither SQLAlchemy, pydantic, Redis nor Alembic."""
    code, modules = _imports("--version", cwd=tmp_path)
    assert code in (0, None)
    assert not _packages(modules) & {"sqlalchemy", "pydantic", "redis", "alembic", "yaml"}


def test_quick_setup_without_redis_url_never_imports_redis(tmp_path: Path) -> None:
    """A quick setup on the embedded defaults (no REDIS_URL) does not load redis-py."""
    code, modules = _imports(
        "setup",
        "--quick",
        "--org-name",
        "Acme",
        "--owner-email",
        "owner@acme.example",
        "--owner-name",
        "Olga Owner",
        "--dir",
        str(tmp_path / "instance"),
        cwd=tmp_path,
    )
    assert code in (0, None)
    assert "sqlalchemy" in _packages(modules)  # it did set up
    assert "redis" not in _packages(modules)


def test_quick_setup_on_sqlite_imports_only_what_it_uses(tmp_path: Path) -> None:
    """A first quick setup on SQLite creates its schema without Alembic and starts lean.

    No Alembic or Mako (the new database is made from the models and stamped), no limits
    (nothing is rate limited), no Pygments (structlog's rich tracebacks are not loaded),
    and no SQLAlchemy PostgreSQL dialect (the database is SQLite).
    """
    code, modules = _imports(
        "setup",
        "--quick",
        "--org-name",
        "Acme",
        "--owner-email",
        "owner@acme.example",
        "--owner-name",
        "Olga Owner",
        "--dir",
        str(tmp_path / "instance"),
        cwd=tmp_path,
    )
    assert code in (0, None)
    assert (tmp_path / "instance" / ".env.local").is_file()
    assert not _packages(modules) & {"alembic", "mako", "limits", "pygments"}
    assert "sqlalchemy.dialects.postgresql" not in modules
    assert "rich.traceback" not in modules
