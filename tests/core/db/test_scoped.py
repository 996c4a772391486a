"""Organization-scoped access: rows of another organization cannot be read or written."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from paulyops.core.db.models import Organization, Role, User
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError, PermissionDeniedError


def _org(session, slug):
    org = Organization(
        slug=slug,
        name=slug.title(),
        industry="other",
        compliance_level="basic",
        size="1-10",
        rbac_model="simple",
        spec_hash="0" * 64,
    )
    session.add(org)
    session.flush()
    return org


def test_queries_only_see_own_organization(db):
    """list/get/count through a scope never return another organization's rows."""
    with db.session() as session:
        a, b = _org(session, "alpha"), _org(session, "beta")
        OrgScope(session, a.id).add(Role(name="Admin"))
        other = OrgScope(session, b.id).add(Role(name="Admin"))
        session.flush()
        scope = OrgScope(session, a.id)
        assert [r.name for r in scope.list(Role)] == ["Admin"]
        assert scope.count(Role) == 1
        with pytest.raises(NotFoundError):
            scope.get(Role, other.id)


def test_cannot_add_or_delete_other_organizations_rows(db):
    """Adding or deleting a row stamped with another organization is refused with the
    domain error (a 403 at the interfaces), never the builtin PermissionError (a 500)."""
    with db.session() as session:
        a, b = _org(session, "alpha"), _org(session, "beta")
        role = OrgScope(session, b.id).add(Role(name="Viewer"))
        session.flush()
        with pytest.raises(PermissionDeniedError):
            OrgScope(session, a.id).add(role)
        with pytest.raises(PermissionDeniedError):
            OrgScope(session, a.id).delete(role)


def test_scope_refuses_global_models_and_empty_org():
    """A scope needs an organization, and refuses models that are not org-scoped."""
    with pytest.raises(ValueError, match="organization id"):
        OrgScope(None, "")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not organization-scoped"):
        OrgScope(None, "org_x").select(User)  # type: ignore[arg-type]


def test_timestamps_round_trip_as_aware_utc(db):
    """Timestamps read back timezone-aware in UTC on SQLite and PostgreSQL."""
    with db.session() as session:
        org = _org(session, "gamma")
    with db.session() as session:
        loaded = session.scalars(select(Organization).where(Organization.id == org.id)).one()
        assert loaded.created_at.tzinfo is not None
        assert loaded.created_at.utcoffset().total_seconds() == 0
        assert loaded.id.startswith("org_")
