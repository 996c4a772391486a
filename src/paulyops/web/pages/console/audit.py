"""The audit log: browse, verify the chain and export."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, TextIO, cast
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from paulyops.core.db import Session
from paulyops.core.errors import SpecValidationError
from paulyops.core.security.signatures import instance_verifying_key
from paulyops.services.audit.browse import AuditFilter, has_rows, list_entries
from paulyops.services.audit.exports import export
from paulyops.services.audit.verification import VerifyReport, verify
from paulyops.services.commands import parse
from paulyops.services.organizations import organization_slug
from paulyops.web.auth import (
    DbSession,
    Principal,
    require,
)
from paulyops.web.deps import InstanceDep
from paulyops.web.pages.console.common import (
    _back,
    _field_errors,
    _page,
)

# Exports larger than this spill from memory to a temporary file while they stream.
EXPORT_SPOOL_BYTES = 8 * 1024 * 1024
router = APIRouter(include_in_schema=False)


def _audit_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    query: dict[str, str] | None = None,
    report: VerifyReport | None = None,
) -> Response:
    raw = {key: value for key, value in (query or {}).items() if value}
    errors: dict[str, str] = {}
    try:
        wanted = parse(AuditFilter, raw)
    except SpecValidationError as err:
        errors = _field_errors(err)
        # Show the page with the filters that are fine; each bad one is named on its field.
        wanted = parse(AuditFilter, {k: v for k, v in raw.items() if k not in errors})
    organization_id = principal.scope(session).organization_id
    page = list_entries(session, organization_id, wanted)
    # The form shows what was typed (a bad date too), cut to what a filter can hold.
    filters = {
        "actor": wanted.actor,
        "action": wanted.action,
        "from": raw.get("from", "")[:10],
        "to": raw.get("to", "")[:10],
    }
    links = "&".join(f"{key}={quote(value)}" for key, value in wanted.query().items())
    return _page(
        request,
        session,
        principal,
        "console/audit.html",
        active="audit",
        status_code=422 if errors else 200,
        rows=page.entries,
        total=page.total,
        page=page.page,
        pages=page.pages,
        filters=filters,
        query=links,
        errors=errors,
        report=report,
        chain_rows=page.chain_rows,
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
        query={"actor": actor, "action": action, "from": date_from, "to": date_to, "page": page},
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
    report = verify(
        instance.db, instance_verifying_key(instance.settings), chain=scope.organization_id
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
    if not has_rows(session, scope.organization_id):
        return _back(request, "/console/audit", "info", "Nothing to export yet.")
    slug = organization_slug(session, scope.organization_id) or "organization"
    # export() signs a checkpoint in its own write transaction: end this request's (read)
    # transaction first, so a pending touch of the session row cannot hold SQLite's write
    # lock against it. Nothing below uses the request's session.
    session.commit()
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115  # closed by the stream below
        max_size=EXPORT_SPOOL_BYTES, mode="w+", encoding="utf-8", newline=""
    )
    try:
        export(
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

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        chunks(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="audit-{slug}-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )
