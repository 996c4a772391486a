"""Reading organizations for display: find one by id or slug, its profile, its overview."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    ApiToken,
    AuditLog,
    Membership,
    Organization,
    Role,
    StorageConfig,
    utcnow,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError
from paulyops.services.views import View


class OrganizationView(View):
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


def organization_or_only(session: Session, ref: str | None) -> OrganizationView:
    """Return the organization ``ref`` names, or the instance's only one when ``ref`` is None.

    Raises:
        NotFoundError: no such organization, or ``ref`` is None and there is not exactly one
            (the message says to pass ``--org``).
    """
    if ref:
        return find_organization(session, ref)
    rows = session.scalars(select(Organization).order_by(Organization.slug).limit(2)).all()
    if len(rows) == 1:
        return _view(rows[0])
    if not rows:
        raise NotFoundError("no organization is set up yet (run `paulyops setup --quick`)")
    raise NotFoundError("--org: this instance has several organizations; say which (id or slug)")


@dataclass(frozen=True, slots=True)
class Overview:
    """What the console home shows: the profile, counts and (optionally) recent activity.

    ``days`` and ``day_counts`` are empty and ``recent`` holds no rows unless the activity
    was asked for; ``recent`` holds the organization's newest audit rows.
    """

    organization: OrganizationView
    members: int
    roles: int
    storage: int
    tokens: int
    days: list[date] = field(default_factory=list)
    day_counts: Counter[date] = field(default_factory=Counter)
    recent: list[AuditLog] = field(default_factory=list)


def overview(scope: OrgScope, *, activity_days: int = 0, recent: int = 0) -> Overview:
    """Return the organization's overview, with ``activity_days`` of audit counts per day
    and its ``recent`` newest audit rows (both left out at 0, for callers without
    ``audit:read``).

    Raises:
        NotFoundError: the organization does not exist (any more).
    """
    org = get_organization(scope)
    days: list[date] = []
    counts: Counter[date] = Counter()
    rows: list[AuditLog] = []
    if activity_days:
        today = utcnow().date()
        days = [today - timedelta(days=n) for n in range(activity_days - 1, -1, -1)]
        since = datetime.combine(days[0], time.min, tzinfo=UTC)
        stamps = scope.session.scalars(
            select(AuditLog.created_at).where(
                AuditLog.chain == org.id, AuditLog.created_at >= since
            )
        ).all()
        counts = Counter(stamp.date() for stamp in stamps)
    if recent:
        rows = list(
            scope.session.scalars(
                select(AuditLog)
                .where(AuditLog.chain == org.id)
                .order_by(AuditLog.seq.desc())
                .limit(recent)
            ).all()
        )
    return Overview(
        organization=org,
        members=scope.count(Membership),
        roles=scope.count(Role),
        storage=scope.count(StorageConfig),
        tokens=scope.count(ApiToken, ApiToken.revoked_at.is_(None)),
        days=days,
        day_counts=counts,
        recent=rows,
    )


__all__ = [
    "OrganizationView",
    "Overview",
    "find_organization",
    "get_organization",
    "organization_or_only",
    "overview",
]
