"""Documents as people read them (CLI, API, console), and one ingestion pass by hand.

Views are plain dataclasses so the interfaces never touch the models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Document, DocumentEvent, StorageConfig
from paulyops.core.db.scoped import OrgScope
from paulyops.services.ingestion import pickup
from paulyops.services.storage import backends
from paulyops.services.storage.backends.base import StorageError

MAX_PAGE: Final = 200


@dataclass(frozen=True, slots=True)
class EventView:
    """One step of a Document's journey."""

    at: datetime
    step: str
    message: str
    details: dict[str, Any]
    job_id: str | None


@dataclass(frozen=True, slots=True)
class DocumentView:
    """A Document without its internals; ``events`` only when one Document is shown."""

    id: str
    connection_id: str | None
    path: str
    size: int
    sha256: str
    media_type: str | None
    document_class: str | None
    confidence: float | None
    status: str
    duplicate_of: str | None
    agent_id: str | None
    routing: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    detected_at: datetime
    processed_at: datetime | None
    events: list[EventView] = field(default_factory=list)


def _view(row: Document, events: list[EventView] | None = None) -> DocumentView:
    return DocumentView(
        id=row.id,
        connection_id=row.connection_id,
        path=row.path,
        size=row.size,
        sha256=row.sha256,
        media_type=row.media_type,
        document_class=row.document_class,
        confidence=row.confidence,
        status=row.status,
        duplicate_of=row.duplicate_of,
        agent_id=row.agent_id,
        routing=row.routing,
        result=row.result,
        error=row.error,
        detected_at=row.detected_at,
        processed_at=row.processed_at,
        events=events or [],
    )


def list_documents(
    scope: OrgScope,
    *,
    status: str | None = None,
    document_class: str | None = None,
    connection_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[DocumentView], int]:
    """Return a page of the organization's Documents, newest first, and the total count."""
    criteria: list[Any] = []
    if status:
        criteria.append(Document.status == status)
    if document_class:
        criteria.append(Document.document_class == document_class)
    if connection_id:
        criteria.append(Document.connection_id == connection_id)
    total = scope.count(Document, *criteria)
    stmt = (
        scope.select(Document, *criteria)
        .order_by(Document.detected_at.desc(), Document.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
        .offset(max(0, offset))
    )
    return [_view(row) for row in scope.session.scalars(stmt)], total


def get_document(scope: OrgScope, document_id: str) -> DocumentView:
    """Return one Document with its journey.

    Raises:
        NotFoundError: no such Document in this organization.
    """
    row = scope.get(Document, document_id)
    events = scope.list(
        DocumentEvent,
        DocumentEvent.document_id == row.id,
        order_by=DocumentEvent.at,
    )
    return _view(
        row, [EventView(e.at, e.step, e.message, dict(e.details), e.job_id) for e in events]
    )


def documents_page(db: Database, org_id: str, **filters: Any) -> tuple[list[DocumentView], int]:
    """:func:`list_documents` in its own read session (for the CLI)."""
    with db.session() as session:
        return list_documents(OrgScope(session, org_id), **filters)


def document_detail(db: Database, org_id: str, document_id: str) -> DocumentView:
    """:func:`get_document` in its own read session (for the CLI)."""
    with db.session() as session:
        return get_document(OrgScope(session, org_id), document_id)


@dataclass
class OrgScan:
    """One pass over every connection of an organization."""

    connections: dict[str, pickup.ScanSummary] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def scan_organization(
    db: Database,
    org_id: str,
    *,
    data_dir: Path,
    settle_s: float,
    starter: pickup.Starter | None = None,
    backend_factory: Callable[..., backends.ConnectionTester | None] = backends.backend_for,
) -> OrgScan:
    """Run one ingestion pass over each connection of the organization.

    A connection that cannot be read is skipped with its reason; the others still run.
    """
    with db.session() as session:
        rows = [(r.id, r.name, r) for r in OrgScope(session, org_id).list(StorageConfig)]
        built: list[tuple[str, str, Any]] = []
        for row_id, name, row in rows:
            try:
                built.append((row_id, name, backend_factory(row, data_dir=data_dir)))
            except (ValueError, StorageError) as err:
                built.append((row_id, name, str(err)))
    out = OrgScan()
    for row_id, name, backend in built:
        if isinstance(backend, str) or backend is None or not hasattr(backend, "changes"):
            out.skipped[name] = backend if isinstance(backend, str) else "no change feed yet"
            continue
        try:
            out.connections[name] = pickup.scan_connection(
                db, org_id, row_id, backend, settle_s=settle_s, starter=starter
            )
        except StorageError as err:
            out.skipped[name] = err.message
    return out


__all__ = [
    "DocumentView",
    "EventView",
    "OrgScan",
    "document_detail",
    "documents_page",
    "get_document",
    "list_documents",
    "scan_organization",
]
