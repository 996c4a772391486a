"""Migrations: the only way tables are made, and they agree with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from paulyops.core.db import migrate
from paulyops.core.db.models import Base


def _diff(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_models_and_migrations_agree(db):
    """Autogenerate finds no difference between the models and the migrated schema."""
    assert migrate.is_up_to_date(db)
    assert _diff(db) == []


def test_upgrade_downgrade_upgrade(db):
    """Downgrading to base removes every table, and upgrading again restores the schema."""
    migrate.downgrade(db, "base")
    tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    assert migrate.current_revision(db) is None
    migrate.upgrade(db)
    assert migrate.is_up_to_date(db)
    assert _diff(db) == []


def test_upgrade_if_behind_is_a_noop_when_current(db):
    """upgrade_if_behind does nothing on an up-to-date database."""
    assert migrate.upgrade_if_behind(db) is False
