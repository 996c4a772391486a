"""The console home: organization facts, dependency health and recent activity."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from paulyops.core.db.models import (
    ApiToken,
    AuditLog,
    Membership,
    Organization,
    Role,
    StorageConfig,
    utcnow,
)
from paulyops.core.errors import (
    NotFoundError,
)
from paulyops.web.auth import (
    DbSession,
    Principal,
    require,
)
from paulyops.web.deps import InstanceDep
from paulyops.web.pages.console.common import (
    _page,
)
from paulyops.web.pages.console.views import (
    activity_chart,
    actors,
    health_bars,
    parse_timestamp,
)

ACTIVITY_DAYS = 30
RECENT_ROWS = 10
router = APIRouter(include_in_schema=False)

# --- home -----------------------------------------------------------------------------------


@router.get("/console")
def home(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: Annotated[Principal, require("org:read")],
) -> Response:
    """Organization facts, the health of each dependency and recent activity."""
    scope = principal.scope(session)
    org = session.get(Organization, scope.organization_id)
    if org is None:
        raise NotFoundError("organization not found")
    # The monitor's cached report: the page holds one pooled connection, and running the
    # checks here would take more (16 users exhausted the pool).
    report = instance.cached_health_report(include_details=principal.can("health:read"))
    facts = {
        "members": scope.count(Membership),
        "roles": scope.count(Role),
        "storage": scope.count(StorageConfig),
        "tokens": scope.count(ApiToken, ApiToken.revoked_at.is_(None)),
    }
    chart = None
    recent: list[AuditLog] = []
    if principal.can("audit:read"):
        today = utcnow().date()
        days = [today - timedelta(days=n) for n in range(ACTIVITY_DAYS - 1, -1, -1)]
        since = datetime.combine(days[0], time.min, tzinfo=UTC)
        stamps = session.scalars(
            select(AuditLog.created_at).where(
                AuditLog.chain == org.id, AuditLog.created_at >= since
            )
        ).all()
        chart = activity_chart(days, Counter(stamp.date() for stamp in stamps))
        recent = list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.chain == org.id)
                .order_by(AuditLog.seq.desc())
                .limit(RECENT_ROWS)
            ).all()
        )
    return _page(
        request,
        session,
        principal,
        "console/home.html",
        active="home",
        org=org,
        facts=facts,
        health=report,
        health_bars=health_bars(report),
        checked=parse_timestamp(report.get("timestamp")),
        chart=chart,
        recent=recent,
        who=actors(session, org.id, recent),
    )
