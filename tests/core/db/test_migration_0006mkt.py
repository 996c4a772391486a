"""Migration 0006mkt gives existing organizations' Owner and Admin marketplace:manage."""

from __future__ import annotations

from sqlalchemy import select

from paulyops.core.db import migrate
from paulyops.core.db.models import Role
from tests.factories import make_org


def _holders(db, org_id) -> set[str]:
    with db.session() as session:
        roles = session.scalars(select(Role).where(Role.organization_id == org_id))
        return {role.name for role in roles if "marketplace:manage" in role.permissions}


def test_existing_roles_gain_marketplace_manage(db):
    """Down to 0005f removes it from the built-in roles; up again seeds it into Owner, Admin."""
    org = make_org(db, "acme", model="enterprise")
    assert _holders(db, org.id) == {"Owner", "Admin"}
    migrate.downgrade(db, "0005f")
    assert _holders(db, org.id) == set()
    migrate.upgrade(db)
    assert _holders(db, org.id) == {"Owner", "Admin"}
