"""One pass over a connection's watched folders through its change feed.

Each watched folder has an :class:`IngestCursor`. A pass reads the feed from the stored
cursor and records every change in the cursor's ``pending`` map *in the same transaction*
as the new cursor: a crash before that commit re-delivers the page (de-duplicated by
path and revision), never loses it. A pending file is taken only when a later observation
(a ``stat`` at least ``settle_s`` after the first) shows the same size and mtime: a file
still being written is not taken half-way. Taking it creates the Document and removes
the pending entry in one transaction, so nothing is doubled. A file that fails to read
stays pending with its error and an attempt count, and is retried on the next pass.

Watched folders: the connection's ``settings.folders``, else the organization's template
folders (``Organization.settings.folders``), else ``inbox``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from paulyops.core.db.engine import Database
from paulyops.core.db.models import (
    Document,
    DocumentEvent,
    IngestCursor,
    Organization,
    StorageConfig,
    utcnow,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.services.agents.jobs import JobPolicy
from paulyops.services.ingestion import documents, pipeline
from paulyops.services.storage.backends.base import Change, Entry, StorageBackend, StorageError

DEFAULT_FOLDERS = ("inbox",)

# Called with each new (non-duplicate) Document's scope and id, in its transaction: the
# routing pipeline's ``enqueue_step`` for file-processor.
Starter = Callable[[OrgScope, str], None]


def pipeline_starter(*, policy: JobPolicy, data_dir: Path) -> Starter:
    """Return the starter that queues file-processor over each new Document.

    A file-processor that is not installed or not enabled leaves the Document ``pending``
    with a ``waiting`` event saying why (it is not lost: a later step can start it).
    """

    def start(scope: OrgScope, document_id: str) -> None:
        document = scope.get(Document, document_id)
        try:
            pipeline.enqueue_step(
                scope, document, pipeline.FILE_PROCESSOR, policy=policy, data_dir=data_dir
            )
        except (NotFoundError, ConflictError) as err:
            scope.add(
                DocumentEvent(
                    document_id=document.id,
                    step="waiting",
                    message=f"not started: {err}",
                    details={"agent": pipeline.FILE_PROCESSOR},
                )
            )

    return start


@dataclass
class ScanSummary:
    """What one pass did, per kind of outcome."""

    new: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unchanged: int = 0
    ignored: int = 0
    deleted: int = 0
    pending: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def watched_folders(session: Any, connection: StorageConfig) -> list[str]:
    """Return the folders a connection watches (see the module docstring)."""
    configured = connection.settings.get("folders")
    if isinstance(configured, list) and configured:
        return [str(f).strip("/") for f in configured]
    org = session.get(Organization, connection.organization_id)
    folders = (org.settings or {}).get("folders") if org is not None else None
    if isinstance(folders, list) and folders:
        return [str(f).strip("/") for f in folders]
    return list(DEFAULT_FOLDERS)


def _cursor(scope: OrgScope, connection_id: str, folder: str) -> IngestCursor:
    row = scope.first(
        IngestCursor, IngestCursor.connection_id == connection_id, IngestCursor.folder == folder
    )
    if row is None:
        row = scope.add(IngestCursor(connection_id=connection_id, folder=folder, pending={}))
        scope.session.flush()
    return row


def _observation(change: Change, now: datetime) -> dict[str, Any]:
    entry = change.entry
    return {
        "kind": change.kind,
        "size": entry.size,
        "modified": entry.modified.isoformat(),
        "revision": entry.revision,
        "writtenByPaulyops": entry.written_by_paulyops,
        "seenAt": now.isoformat(),
        "attempts": 0,
        "error": None,
    }


def read_feed(
    db: Database, org_id: str, connection_id: str, folder: str, backend: StorageBackend
) -> int:
    """Read the feed to its end, recording changes as pending; return how many arrived."""
    count = 0
    while True:
        with db.session() as session:
            cursor = _cursor(OrgScope(session, org_id), connection_id, folder)
            start = cursor.cursor
        try:
            page = backend.changes(folder, start)
        except StorageError as err:
            if err.kind != "invalid" or start is None:
                raise
            page = backend.changes(folder, None)  # an unusable cursor: start over
        now = utcnow()
        with db.write_session() as session:
            cursor = _cursor(OrgScope(session, org_id), connection_id, folder)
            pending = dict(cursor.pending or {})
            for change in page.changes:
                pending[change.entry.path] = _observation(change, now)
            cursor.pending = pending
            cursor.cursor = page.cursor
            cursor.last_scan_at = now
            cursor.last_error = None
        count += len(page.changes)
        if not page.has_more:
            return count


def _settled(backend: StorageBackend, path: str, seen: dict[str, Any]) -> Entry | None:
    """Stat the file again: its entry when size and mtime match the last observation."""
    entry = backend.stat(path)
    if entry.size == seen["size"] and entry.modified.isoformat() == seen["modified"]:
        return entry
    return None


def take_settled(
    db: Database,
    org_id: str,
    connection_id: str,
    folder: str,
    backend: StorageBackend,
    *,
    settle_s: float,
    summary: ScanSummary,
    starter: Starter | None = None,
) -> None:
    """Take each pending file whose size and mtime held still for ``settle_s``."""
    with db.session() as session:
        cursor = _cursor(OrgScope(session, org_id), connection_id, folder)
        pending = dict(cursor.pending or {})
    for path, seen in sorted(pending.items()):
        now = utcnow()
        if now - datetime.fromisoformat(seen["seenAt"]) < timedelta(seconds=settle_s):
            summary.pending += 1
            continue
        kind = seen["kind"]
        entry: Entry | None = None
        error: str | None = None
        if kind != "deleted":
            try:
                entry = _settled(backend, path, seen)
            except StorageError as err:
                if err.kind == "not_found":
                    kind = "deleted"
                else:
                    error = err.message
        with db.write_session() as session:
            scope = OrgScope(session, org_id)
            row = _cursor(scope, connection_id, folder)
            current = dict(row.pending or {})
            if current.get(path) != seen:
                continue  # a newer observation arrived meanwhile
            if error is None and kind != "deleted" and entry is None:
                fresh = backend.stat(path)
                current[path] = {
                    **seen,
                    "size": fresh.size,
                    "modified": fresh.modified.isoformat(),
                    "revision": fresh.revision,
                    "seenAt": now.isoformat(),
                }
                row.pending = current
                summary.pending += 1
                continue
            if error is None:
                change = Change(
                    kind,  # one of the feed kinds, stored as text
                    entry
                    or Entry(
                        path=path,
                        size=int(seen["size"]),
                        modified=datetime.fromisoformat(seen["modified"]),
                        revision=str(seen["revision"]),
                    ),
                )
                try:
                    result = documents.record_change(
                        scope, connection_id=connection_id, change=change, backend=backend
                    )
                except StorageError as err:
                    error = err.message
                else:
                    current.pop(path)
                    row.pending = current
                    _count(summary, result)
                    if result.status == "new" and starter is not None and result.document_id:
                        starter(scope, result.document_id)
                    continue
            current[path] = {**seen, "attempts": int(seen["attempts"]) + 1, "error": error}
            row.pending = current
            row.last_error = f"{path}: {error}"
            summary.errors[path] = error
            summary.pending += 1


def _count(summary: ScanSummary, result: documents.IngestResult) -> None:
    if result.status == "new" and result.document_id:
        summary.new.append(result.document_id)
    elif result.status == "duplicate" and result.document_id:
        summary.duplicates.append(result.document_id)
    elif result.status == "unchanged":
        summary.unchanged += 1
    elif result.status == "ignored":
        summary.ignored += 1
    else:
        summary.deleted += 1


def scan_connection(
    db: Database,
    org_id: str,
    connection_id: str,
    backend: StorageBackend,
    *,
    settle_s: float,
    starter: Starter | None = None,
) -> ScanSummary:
    """Run one pass over every watched folder of a connection.

    Raises:
        NotFoundError: no such connection in this organization.
        StorageError: the change feed could not be read (the cursor is left as it was).
    """
    with db.session() as session:
        connection = OrgScope(session, org_id).get(StorageConfig, connection_id)
        folders = watched_folders(session, connection)
    summary = ScanSummary()
    for folder in folders:
        read_feed(db, org_id, connection_id, folder, backend)
        take_settled(
            db,
            org_id,
            connection_id,
            folder,
            backend,
            settle_s=settle_s,
            summary=summary,
            starter=starter,
        )
    return summary


__all__ = [
    "DEFAULT_FOLDERS",
    "ScanSummary",
    "Starter",
    "pipeline_starter",
    "read_feed",
    "scan_connection",
    "take_settled",
    "watched_folders",
]
