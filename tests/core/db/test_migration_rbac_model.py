"""Migration 0006onb: the roles model is stored once, on the organization."""

from __future__ import annotations

from sqlalchemy import inspect, text

from paulyops.core.db import migrate
from tests.factories import make_org


def _columns(db, table: str) -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns(table)}


def test_rbac_model_lives_on_the_organization_and_downgrade_restores_the_copy(db):
    """Upgrade drops security_configs.rbac_model, keeping each org's model; downgrade refills it."""
    org = make_org(db, "acme", model="enterprise")
    assert "rbac_model" not in _columns(db, "security_configs")
    migrate.downgrade(db, "0006tuf")
    try:
        assert "rbac_model" in _columns(db, "security_configs")
        with db.engine.connect() as conn:
            copied = conn.execute(
                text("SELECT rbac_model FROM security_configs WHERE organization_id = :id"),
                {"id": org.id},
            ).scalar_one()
        assert copied == "enterprise"
    finally:
        migrate.upgrade(db)
    assert "rbac_model" not in _columns(db, "security_configs")
    with db.engine.connect() as conn:
        kept = conn.execute(
            text("SELECT rbac_model FROM organizations WHERE id = :id"), {"id": org.id}
        ).scalar_one()
    assert kept == "enterprise"
