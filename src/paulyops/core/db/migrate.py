"""Schema migrations through Alembic; the only way tables are created or changed.

Migrations ship inside the package, so ``paulyops db upgrade`` works on any install. On
PostgreSQL an advisory lock makes concurrent starts (several API processes) migrate once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from paulyops.core.db.engine import Database
from paulyops.core.logging import get_logger, timed

log = get_logger("paulyops.db.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary, fixed 64-bit key for pg_advisory_lock: "PAULYOPS" in ASCII.
ADVISORY_LOCK_KEY = 0x5041554C594F5053


def alembic_config(db: Database, connection: Connection | None = None) -> Config:
    """Return an Alembic config pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _locked_connection(db: Database) -> Iterator[Connection]:
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()
        try:
            yield conn
        finally:
            if db.dialect == "postgresql":
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                conn.commit()


def head_revision(db: Database) -> str | None:
    """Return the newest revision the package ships."""
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()


def current_revision(db: Database) -> str | None:
    """Return the revision the database is at (``None`` when never migrated)."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(db: Database) -> bool:
    """Whether the database is at the newest revision."""
    return current_revision(db) == head_revision(db)


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate up to ``revision`` (default: the newest), under the migration lock."""
    with timed("db.upgrade", revision=revision), _locked_connection(db) as conn:
        cfg = alembic_config(db, conn)
        command.upgrade(cfg, revision)
        conn.commit()
    log.info("db_upgraded", revision=current_revision(db))


def downgrade(db: Database, revision: str) -> None:
    """Migrate down to ``revision`` (e.g. ``-1`` or ``base``), under the migration lock."""
    with timed("db.downgrade", revision=revision), _locked_connection(db) as conn:
        cfg = alembic_config(db, conn)
        command.downgrade(cfg, revision)
        conn.commit()
    log.info("db_downgraded", revision=current_revision(db))


def upgrade_if_behind(db: Database) -> bool:
    """Upgrade when the database is behind; return whether anything ran."""
    if is_up_to_date(db):
        return False
    upgrade(db)
    return True


def revision(
    db: Database, message: str, *, autogenerate: bool = True, rev_id: str | None = None
) -> Path:
    """Write a new migration file (for developers of PaulyOps) and return its path."""
    with db.engine.connect() as conn:
        cfg = alembic_config(db, conn)
        script = command.revision(cfg, message=message, autogenerate=autogenerate, rev_id=rev_id)
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic did not produce exactly one revision")
    return Path(script.path)


__all__ = [
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_up_to_date",
    "revision",
    "upgrade",
    "upgrade_if_behind",
]
