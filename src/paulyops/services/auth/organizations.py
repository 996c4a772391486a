"""Reading organizations for display: find one by id or slug, and its profile as a view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import Organization
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class OrganizationView:
    """An organization's profile."""

    id: str
    slug: str
    name: str
    industry: str
    compliance_level: str
    size: str
    rbac_model: str
    created_at: datetime


def _view(org: Organization) -> OrganizationView:
    return OrganizationView(
        id=org.id,
        slug=org.slug,
        name=org.name,
        industry=org.industry,
        compliance_level=org.compliance_level,
        size=org.size,
        rbac_model=org.rbac_model,
        created_at=org.created_at,
    )


def get_organization(scope: OrgScope) -> OrganizationView:
    """Return the scope's organization.

    Raises:
        NotFoundError: it does not exist (any more).
    """
    org = scope.session.get(Organization, scope.organization_id)
    if org is None:
        raise NotFoundError("organization not found")
    return _view(org)


def find_organization(session: Session, ref: str) -> OrganizationView:
    """Return the organization with id or slug ``ref`` (the operator's way to name one).

    Raises:
        NotFoundError: no organization has that id or slug.
    """
    clean = ref.strip()
    org = session.get(Organization, clean)
    if org is None:
        org = session.scalars(
            select(Organization).where(Organization.slug == clean.lower())
        ).first()
    if org is None:
        raise NotFoundError(f"--org: expected an organization id (org_...) or slug, got {ref!r}")
    return _view(org)


__all__ = ["OrganizationView", "find_organization", "get_organization"]
