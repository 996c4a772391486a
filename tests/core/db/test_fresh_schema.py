"""A new SQLite database made from the models equals one made by every migration.

``migrate.upgrade_if_behind`` creates an empty SQLite database's schema from the models
(``create_all``), adds migration 0002's triggers and stamps the head, instead of
replaying each migration; these tests are what makes that shortcut safe.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text

from paulyops.core.db import migrate
from paulyops.core.db.engine import Database
from paulyops.core.db.models import Base
from paulyops.services import actor as actors


def _made(tmp_path: Path, name: str, *, fresh: bool) -> Database:
    db = Database(f"sqlite:///{tmp_path / name}")
    db.connect()
    if fresh:
        assert migrate.upgrade_if_behind(db)
    else:
        migrate.upgrade(db)
    return db


def _schema(db: Database) -> dict[str, object]:
    """Everything of a schema but the CREATE TABLE texts (a batch migration reformats them),
    and the number of rows in each table."""
    view = inspect(db.engine)
    tables = sorted(view.get_table_names())
    with db.engine.connect() as conn:
        triggers = conn.execute(
            text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
        ).all()
        # Rows a migration seeds (none today) would have to be seeded by create_fresh too.
        rows = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }
    return {
        "tables": tables,
        "columns": {
            t: sorted((c["name"], str(c["type"]), c["nullable"]) for c in view.get_columns(t))
            for t in tables
        },
        "primary keys": {t: view.get_pk_constraint(t)["constrained_columns"] for t in tables},
        "foreign keys": {
            t: sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], str(f["options"]))
                for f in view.get_foreign_keys(t)
            )
            for t in tables
        },
        "indexes": {
            t: sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in view.get_indexes(t)
            )
            for t in tables
        },
        "unique": {
            t: sorted((u["name"], tuple(u["column_names"])) for u in view.get_unique_constraints(t))
            for t in tables
        },
        "triggers": sorted((n, t, " ".join(s.split())) for n, t, s in triggers),
        "rows": rows,
    }


def test_fresh_sqlite_schema_equals_the_migrated_one(tmp_path: Path) -> None:
    """Tables, columns, keys, indexes, constraints, triggers and revision are the same."""
    migrated = _made(tmp_path, "migrated.db", fresh=False)
    fresh = _made(tmp_path, "fresh.db", fresh=True)
    try:
        assert _schema(fresh) == _schema(migrated)
        assert migrate.current_revision(fresh) == migrate.current_revision(migrated)
        with fresh.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == migrate.head_revision()
    finally:
        migrated.close()
        fresh.close()


def test_fresh_database_keeps_audit_rows_append_only(tmp_path: Path) -> None:
    """The audit triggers of migration 0002 are in a database made from the models."""
    fresh = _made(tmp_path, "fresh.db", fresh=True)
    try:
        with fresh.write_session() as session:
            actors.record(session, actors.SYSTEM, "test.recorded", organization_id=None)
        with fresh.engine.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text("DELETE FROM audit_logs"))
    finally:
        fresh.close()


def test_fresh_database_can_be_downgraded_and_migrated(tmp_path: Path) -> None:
    """Alembic takes over a fresh database: down to base and up again works."""
    fresh = _made(tmp_path, "fresh.db", fresh=True)
    try:
        migrate.downgrade(fresh, "base")
        assert migrate.current_revision(fresh) is None
        migrate.upgrade(fresh)
        assert migrate.is_up_to_date(fresh)
    finally:
        fresh.close()


def test_a_database_with_tables_is_migrated_not_recreated(tmp_path: Path) -> None:
    """Only an empty database takes the shortcut; one behind is migrated by Alembic."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.connect()
    try:
        migrate.upgrade(db, "0005f")
        assert not migrate.create_fresh(db)
        assert migrate.upgrade_if_behind(db)
        assert migrate.is_up_to_date(db)
    finally:
        db.close()


def test_head_read_from_the_files_is_alembics(tmp_path: Path) -> None:
    """The head read from the migration files' revision lines is the one Alembic computes."""
    db = Database(f"sqlite:///{tmp_path / 'any.db'}")
    scripts = ScriptDirectory.from_config(migrate.alembic_config(db))
    assert migrate.head_revision() == scripts.get_current_head()


def test_up_to_date_check_imports_no_alembic(tmp_path: Path) -> None:
    """Checking an up-to-date database's revision does not load Alembic."""
    db = _made(tmp_path, "fresh.db", fresh=True)
    db.close()
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = (
        "import sys\n"
        "from paulyops.core.db import migrate\n"
        "from paulyops.core.db.engine import Database\n"
        f"db = Database({url!r}); db.connect()\n"
        "assert not migrate.upgrade_if_behind(db)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))\n"
    )
    result = subprocess.run(  # the test's own interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
