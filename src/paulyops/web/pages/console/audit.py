"""The audit log: browse, verify the chain and export."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, TextIO, cast
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    AuditLog,
    Organization,
    utcnow,
)
from paulyops.services import audit
from paulyops.web.auth import (
    DbSession,
    Principal,
    require,
)
from paulyops.web.deps import InstanceDep
from paulyops.web.pages.console.common import (
    _back,
    _page,
    _parse_date,
)
from paulyops.web.pages.console.views import (
    actors,
)

AUDIT_PAGE_SIZE = 50
# Exports larger than this spill from memory to a temporary file while they stream.
EXPORT_SPOOL_BYTES = 8 * 1024 * 1024
router = APIRouter(include_in_schema=False)

# --- audit log ------------------------------------------------------------------------------


def _audit_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    actor: str = "",
    action: str = "",
    date_from: str = "",
    date_to: str = "",
    page: str = "1",
    report: audit.VerifyReport | None = None,
) -> Response:
    scope = principal.scope(session)
    errors: dict[str, str] = {}
    start = _parse_date(date_from, "from", errors)
    end = _parse_date(date_to, "to", errors)
    try:
        number = max(1, int(page))
    except ValueError:
        number = 1
    stmt = select(AuditLog).where(AuditLog.chain == scope.organization_id)
    if actor.strip():
        stmt = stmt.where(AuditLog.actor_id == actor.strip()[:40])
    if action.strip():
        stmt = stmt.where(AuditLog.action.startswith(action.strip()[:80], autoescape=True))
    if start is not None:
        stmt = stmt.where(AuditLog.created_at >= datetime.combine(start, time.min, tzinfo=UTC))
    if end is not None:
        stmt = stmt.where(
            AuditLog.created_at < datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
        )
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    pages = max(1, math.ceil(total / AUDIT_PAGE_SIZE))
    number = min(number, pages)
    rows = session.scalars(
        stmt.order_by(AuditLog.seq.desc())
        .offset((number - 1) * AUDIT_PAGE_SIZE)
        .limit(AUDIT_PAGE_SIZE)
    ).all()
    filters = {"actor": actor[:40], "action": action[:80], "from": date_from[:10]}
    filters["to"] = date_to[:10]
    query = "&".join(f"{key}={quote(value)}" for key, value in filters.items() if value)
    last = session.scalar(
        select(func.max(AuditLog.seq)).where(AuditLog.chain == scope.organization_id)
    )
    return _page(
        request,
        session,
        principal,
        "console/audit.html",
        active="audit",
        status_code=422 if errors else 200,
        rows=rows,
        total=total,
        page=number,
        pages=pages,
        filters=filters,
        query=query,
        errors=errors,
        who=actors(session, scope.organization_id, list(rows)),
        report=report,
        chain_rows=last or 0,
    )


@router.get("/console/audit")
def audit_log(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("audit:read")],
    actor: str = "",
    action: str = "",
    date_from: Annotated[str, Query(alias="from")] = "",
    date_to: Annotated[str, Query(alias="to")] = "",
    page: str = "1",
) -> Response:
    """The organization's audit log: filters, paging, export and chain verification."""
    return _audit_page(
        request,
        session,
        principal,
        actor=actor,
        action=action,
        date_from=date_from,
        date_to=date_to,
        page=page,
    )


@router.post("/console/audit/verify")
def audit_verify(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: Annotated[Principal, require("audit:read")],
) -> Response:
    """Verify the organization's chain (hashes, links and signed checkpoints)."""
    scope = principal.scope(session)
    # verify() reads in its own transaction; it writes nothing, so it never waits on ours.
    report = audit.verify(
        instance.db, audit.verifying_key(instance.settings), chain=scope.organization_id
    )
    return _audit_page(request, session, principal, report=report)


@router.get("/console/audit/export")
def audit_export(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: Annotated[Principal, require("audit:export")],
    fmt: Annotated[str, Query(alias="format")] = "csv",
) -> Response:
    """Download the organization's chain as CSV or JSON lines (with a signed checkpoint)."""
    scope = principal.scope(session)
    if fmt not in ("csv", "jsonl"):
        return _back(request, "/console/audit", "error", "Choose CSV or JSONL for the export.")
    has_rows = session.scalar(
        select(AuditLog.id).where(AuditLog.chain == scope.organization_id).limit(1)
    )
    if has_rows is None:
        return _back(request, "/console/audit", "info", "Nothing to export yet.")
    org = session.get(Organization, scope.organization_id)
    slug = org.slug if org else "organization"
    # export() signs a checkpoint in its own write transaction: end this request's (read)
    # transaction first, so a pending touch of the session row cannot hold SQLite's write
    # lock against it. Nothing below uses the request's session.
    session.commit()
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115  # closed by the stream below
        max_size=EXPORT_SPOOL_BYTES, mode="w+", encoding="utf-8", newline=""
    )
    try:
        audit.export(
            instance.db,
            instance.settings,
            chain=scope.organization_id,
            fmt="csv" if fmt == "csv" else "jsonl",
            out=cast(TextIO, spool),
        )
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks() -> Iterator[str]:
        try:
            while chunk := spool.read(64 * 1024):
                yield chunk
        finally:
            spool.close()

    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        chunks(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="audit-{slug}-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )
