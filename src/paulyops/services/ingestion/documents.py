"""Turn a change of a storage connection's feed into a Document.

A file is read once, as a stream: its sha256 and size are computed while the bytes are
spooled (in memory up to :data:`SPOOL_BYTES`, then on disk), and its media type is sniffed
from the content into the one vocabulary (``services/ingestion/vocabulary.py``): Office
files by looking inside the zip. Decisions (docs/ingestion.md):

* files PaulyOps wrote (``Entry.written_by_paulyops``) and connection probes are never
  taken: no Document is created for them;
* the same connection, path and revision seen again (a re-delivered change after a crash)
  or the same path with the same content (only the mtime changed) is ``unchanged``;
* content already known in the organization becomes a Document with status
  ``duplicate`` and ``duplicate_of`` pointing at the first one;
* a modified file (a new revision with new content) becomes a **new Document**, a new
  version: the old one keeps its journey and results, the new one's ``found`` event names
  the version it supersedes.

Every step is a :class:`DocumentEvent`; everything is scoped to one organization.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
from typing import IO, Final, Literal

from paulyops.core.db.models import Document, DocumentEvent
from paulyops.core.db.scoped import OrgScope
from paulyops.services.storage.backends.base import (
    CHUNK_BYTES,
    PROBE_PREFIX,
    Change,
    Entry,
    StorageBackend,
    StorageError,
)

# Bytes kept in memory while reading a file; larger files spill to a temporary file.
SPOOL_BYTES: Final = 8 * 1024 * 1024
# How much of the start of a file the text sniffers look at.
HEAD_BYTES: Final = 64 * 1024
# Longest path a Document stores (the column's size).
MAX_PATH_CHARS: Final = 1024

IngestStatus = Literal["new", "duplicate", "unchanged", "ignored", "deleted"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one change became: ``document_id`` is ``None`` for ignored and unchanged files."""

    status: IngestStatus
    path: str
    document_id: str | None = None
    reason: str = ""


def _zip_type(spool: IO[bytes]) -> str:
    try:
        with zipfile.ZipFile(spool) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return "application/octet-stream"
    if "word/document.xml" in names:
        return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    if "xl/workbook.xml" in names:
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return "application/zip"


def _text_type(text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith("OFXHEADER:") or "<OFX>" in stripped[:4096].upper():
        return "application/x-ofx"
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict) and "resourceType" in value:
            return "application/fhir+json"
        if value is not None:
            return "application/json"
    if stripped.startswith("<"):
        return "application/xml"
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if len(lines) >= 2:
        for delimiter in (",", ";", "\t"):
            counts = {line.count(delimiter) for line in lines[:-1]}
            if len(counts) == 1 and counts != {0}:
                return "text/csv"
    if any(line.startswith(("# ", "## ", "```")) for line in lines):
        return "text/markdown"
    return "text/plain"


def sniff_media_type(head: bytes, spool: IO[bytes] | None = None) -> str:
    """Return the vocabulary's media type of a file from its first bytes (and the whole
    file, for zips).

    Args:
        head: the file's first bytes (:data:`HEAD_BYTES` is plenty).
        spool: the whole file, seekable; needed only to tell Office files from zips.
    """
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xffO\xffQ")):
        return "image/jp2"
    if head[128:132] == b"DICM":
        return "application/dicom"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        # An OLE file: legacy Excel names its stream "Workbook" (UTF-16).
        if "Workbook".encode("utf-16-le") in head or b"Book" in head:
            return "application/vnd.ms-excel"
        return "application/octet-stream"
    if head.startswith(b"PK\x03\x04"):
        if spool is None:
            return "application/zip"
        spool.seek(0)
        return _zip_type(spool)
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        # A head cut in the middle of a character is still text.
        if err.start < len(head) - 4:
            return "application/octet-stream"
        text = head[: err.start].decode("utf-8-sig")
    return _text_type(text)


@dataclass(frozen=True, slots=True)
class _Read:
    sha256: str
    size: int
    media_type: str


def read_file(backend: StorageBackend, path: str) -> _Read:
    """Stream one file once: sha256, size and sniffed media type.

    Raises:
        StorageError: the provider could not read it (the caller retries later).
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        with backend.open_read(path) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                spool.write(chunk)
        media_type = sniff_media_type(head, spool)
    return _Read(digest.hexdigest(), size, media_type)


def _event(scope: OrgScope, document: Document, step: str, message: str, **details: object) -> None:
    scope.add(
        DocumentEvent(document_id=document.id, step=step, message=message, details=dict(details))
    )


def _latest(scope: OrgScope, connection_id: str, path: str) -> Document | None:
    rows = scope.list(
        Document,
        Document.connection_id == connection_id,
        Document.path == path,
        order_by=Document.detected_at.desc(),
    )
    return rows[0] if rows else None


def is_ignored(entry: Entry) -> str | None:
    """Return why ingestion never takes this file, or ``None`` when it may."""
    if entry.written_by_paulyops:
        return "written by PaulyOps"
    name = entry.path.rsplit("/", 1)[-1]
    if name.startswith(PROBE_PREFIX) or entry.path.startswith(PROBE_PREFIX):
        return "a connection test's probe"
    if len(entry.path) > MAX_PATH_CHARS:
        return f"its path is longer than {MAX_PATH_CHARS} characters"
    return None


def record_change(
    scope: OrgScope, *, connection_id: str, change: Change, backend: StorageBackend
) -> IngestResult:
    """Record one (complete) change of a connection as a Document, in the caller's
    transaction.

    Raises:
        StorageError: the file could not be read; nothing was written.
    """
    entry = change.entry
    latest = _latest(scope, connection_id, entry.path)
    if change.kind == "deleted":
        if latest is not None:
            _event(scope, latest, "source.deleted", "the file was removed from the storage")
        return IngestResult("deleted", entry.path, latest.id if latest else None)
    reason = is_ignored(entry)
    if reason is not None:
        return IngestResult("ignored", entry.path, reason=reason)
    if latest is not None and latest.revision == entry.revision:
        return IngestResult("unchanged", entry.path, latest.id, "seen before")
    read = read_file(backend, entry.path)
    if latest is not None and latest.sha256 == read.sha256:
        latest.revision = entry.revision
        return IngestResult("unchanged", entry.path, latest.id, "same content")
    original = scope.first(Document, Document.sha256 == read.sha256, Document.status != "duplicate")
    document = scope.add(
        Document(
            connection_id=connection_id,
            path=entry.path,
            size=read.size,
            sha256=read.sha256,
            revision=entry.revision,
            media_type=read.media_type,
            origin="source",
            status="duplicate" if original is not None else "pending",
            duplicate_of=original.id if original is not None else None,
        )
    )
    scope.session.flush()
    _event(
        scope,
        document,
        "found",
        "a new version of a known file" if latest is not None else "a new file",
        change=change.kind,
        size=read.size,
        sha256=read.sha256,
        mediaType=read.media_type,
        revision=entry.revision,
        supersedes=latest.id if latest is not None else None,
    )
    if original is not None:
        _event(
            scope,
            document,
            "duplicate",
            f"same content as {original.path}",
            duplicateOf=original.id,
        )
        return IngestResult("duplicate", entry.path, document.id)
    return IngestResult("new", entry.path, document.id)


__all__ = [
    "HEAD_BYTES",
    "MAX_PATH_CHARS",
    "SPOOL_BYTES",
    "IngestResult",
    "StorageError",
    "is_ignored",
    "read_file",
    "record_change",
    "sniff_media_type",
]
