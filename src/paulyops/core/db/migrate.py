"""Schema migrations through Alembic; the only way an existing schema is changed.

Migrations ship inside the package, so ``paulyops db upgrade`` works on any install. On
PostgreSQL an advisory lock makes concurrent starts (several API processes) migrate once.

Alembic is imported only when a migration runs: reading the revision a database is at
(``alembic_version``) and the newest one shipped (the ``revision`` lines of the packaged
migration files) needs neither Alembic nor its templates, so every command that opens
an up-to-date database starts without it. A brand-new, empty SQLite database (the first
``setup --quick``) is made from the models in one transaction instead of replaying every
migration, then stamped at the head; ``tests/core/db/test_fresh_schema.py`` proves it
equals a migrated one (tables, indexes, constraints, triggers, revision).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from paulyops.core.db.engine import Database
from paulyops.core.logging import get_logger, timed

if TYPE_CHECKING:
    from alembic.config import Config

log = get_logger("paulyops.db.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary, fixed 64-bit key for pg_advisory_lock: "PAULYOPS" in ASCII.
ADVISORY_LOCK_KEY = 0x5041554C594F5053
VERSION_TABLE = "alembic_version"
_REVISION_LINE = re.compile(r"^revision(?:\s*:[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN_LINE = re.compile(r"^down_revision(?:\s*:[^=]*)?=(.*)$", re.M)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")

#: Migration 0002's SQLite triggers (audit rows are append-only), for a fresh database.
SQLITE_AUDIT_TRIGGERS = (
    """
    CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
    BEGIN
        SELECT RAISE(ABORT, 'audit_logs is append-only: UPDATE refused');
    END
    """,
    """
    CREATE TRIGGER audit_logs_no_delete BEFORE DELETE ON audit_logs
    BEGIN
        SELECT RAISE(ABORT, 'audit_logs is append-only: DELETE refused');
    END
    """,
)


def alembic_config(db: Database, connection: Connection | None = None) -> Config:
    """Return an Alembic config pointing at the packaged migrations."""
    from alembic.config import Config

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


@functools.cache
def _shipped_head() -> str | None:
    """Return the one revision no packaged migration revises, read from the files."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        if path.name == "__init__.py" or path.name.startswith(".#"):  # as Alembic skips them
            continue
        source = path.read_text(encoding="utf-8")
        found = _REVISION_LINE.search(source)
        down = _DOWN_LINE.search(source)
        if found is None or down is None:
            return _alembic_head()  # a file this reader does not understand
        revisions.add(found.group(1))
        revised.update(_QUOTED.findall(down.group(1)))
    heads = revisions - revised
    if len(heads) != 1:
        return _alembic_head()  # branches or no migrations: let Alembic decide
    return heads.pop()


def _alembic_head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def head_revision(db: Database | None = None) -> str | None:
    """Return the newest revision the package ships (``db`` is not needed any more)."""
    return _shipped_head()


def current_revision(db: Database) -> str | None:
    """Return the revision the database is at (``None`` when never migrated)."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:
        # Several heads stamped: Alembic's own reader raises the error that explains it.
        from alembic.runtime.migration import MigrationContext

        with db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    return rows[0] if rows else None


def is_up_to_date(db: Database) -> bool:
    """Whether the database is at the newest revision."""
    return current_revision(db) == head_revision()


def create_fresh(db: Database) -> bool:
    """Make the schema of an empty SQLite database from the models and stamp it at head.

    One ``IMMEDIATE`` transaction: a concurrent first start waits, then finds the tables
    and does nothing. Returns whether it created the schema (``False``: not SQLite, or
    the database was not empty).
    """
    if db.dialect != "sqlite":
        return False
    from paulyops.core.db.models import Base

    head = head_revision()
    with db.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if inspect(conn).get_table_names():
            return False
        with timed("db.create_fresh", revision=head):
            Base.metadata.create_all(conn)
            for statement in SQLITE_AUDIT_TRIGGERS:
                conn.exec_driver_sql(statement)
            # The table Alembic itself creates on its first run.
            conn.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
    log.info("db_upgraded", revision=head, fresh=True)
    return True


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate up to ``revision`` (default: the newest), under the migration lock."""
    from alembic import command

    with timed("db.upgrade", revision=revision), _locked_connection(db) as conn:
        cfg = alembic_config(db, conn)
        command.upgrade(cfg, revision)
        conn.commit()
    log.info("db_upgraded", revision=current_revision(db))


def downgrade(db: Database, revision: str) -> None:
    """Migrate down to ``revision`` (e.g. ``-1`` or ``base``), under the migration lock."""
    from alembic import command

    with timed("db.downgrade", revision=revision), _locked_connection(db) as conn:
        cfg = alembic_config(db, conn)
        command.downgrade(cfg, revision)
        conn.commit()
    log.info("db_downgraded", revision=current_revision(db))


def upgrade_if_behind(db: Database) -> bool:
    """Upgrade when the database is behind; return whether anything ran.

    A new, empty SQLite database is created from the models instead (:func:`create_fresh`).
    """
    current = current_revision(db)
    if current == head_revision():
        return False
    if current is None and create_fresh(db):
        return True
    upgrade(db)
    return True


def revision(
    db: Database, message: str, *, autogenerate: bool = True, rev_id: str | None = None
) -> Path:
    """Write a new migration file (for developers of PaulyOps) and return its path."""
    from alembic import command

    with db.engine.connect() as conn:
        cfg = alembic_config(db, conn)
        script = command.revision(cfg, message=message, autogenerate=autogenerate, rev_id=rev_id)
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic did not produce exactly one revision")
    return Path(script.path)


__all__ = [
    "SQLITE_AUDIT_TRIGGERS",
    "alembic_config",
    "create_fresh",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_up_to_date",
    "revision",
    "upgrade",
    "upgrade_if_behind",
]
