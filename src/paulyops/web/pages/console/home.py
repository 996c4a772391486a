"""The console home: organization facts, dependency health and recent activity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response

from paulyops.services.audit.browse import describe_actors
from paulyops.services.auth import organizations
from paulyops.services.operations import doctor
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import InstanceDep
from paulyops.web.pages.console.common import _page
from paulyops.web.pages.console.views import (
    activity_chart,
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
    audit = principal.can("audit:read")
    found = organizations.overview(
        principal.scope(session),
        activity_days=ACTIVITY_DAYS if audit else 0,
        recent=RECENT_ROWS if audit else 0,
    )
    org = found.organization
    # The monitor's cached report: the page holds one pooled connection, and running the
    # checks here would take more (16 users exhausted the pool).
    report = instance.cached_health_report(include_details=principal.can("health:read"))
    # Platform administrators see the production checklist (`paulyops doctor`'s checks that
    # read only settings and files, with the cached health), each with its fix.
    checklist = (
        doctor.console_checks(instance.settings, report) if principal.can("org:create") else None
    )
    facts = {
        "members": found.members,
        "roles": found.roles,
        "storage": found.storage,
        "tokens": found.tokens,
    }
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
        chart=activity_chart(found.days, found.day_counts) if audit else None,
        recent=found.recent,
        who=describe_actors(session, org.id, found.recent),
        checklist=checklist,
        checklist_worst=doctor.worst(checklist).value if checklist else None,
    )
