"""Library loggers stay quiet on a first start: no alembic INFO chatter on the console."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FIRST_START = """
import logging, sys
from paulyops.core.logging import configure_logging
configure_logging(level="INFO")
from paulyops.core.db.engine import Database
from paulyops.core.db import migrate
db = Database(sys.argv[1])
migrate.upgrade_if_behind(db)
db.close()
logging.getLogger("alembic.runtime.migration").warning("a warning still shows")
"""


def test_first_migration_logs_no_alembic_info(tmp_path: Path) -> None:
    """Importing alembic and migrating a new database prints no ``setup plugin`` lines.

    It runs in a fresh interpreter: alembic logs its plugin set-up once, on first import,
    after PaulyOps has configured logging. Alembic's warnings still reach the console.
    """
    url = f"sqlite:///{tmp_path / 'first.db'}"
    result = subprocess.run(  # the test's own interpreter, fixed code
        [sys.executable, "-c", FIRST_START, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [line for line in result.stderr.splitlines() if "alembic" in line]
    assert lines == [line for line in lines if "a warning still shows" in line], lines
    assert len(lines) == 1, result.stderr
