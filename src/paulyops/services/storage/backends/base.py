"""The seam every storage provider implements, and what it returns.

One interface for local folders, S3 (and S3-compatible services), Google Drive and Dropbox:
list, stat, streamed read and write, delete, and a change feed with a resumable cursor.
Paths are always *relative* POSIX paths inside the connection's root (``invoices/a.pdf``):
a provider refuses absolute paths, ``..`` components, NUL bytes and (local) symlinks with
:class:`StorageError` ``kind="invalid_path"`` before touching anything.

Errors are :class:`StorageError` with a ``kind`` callers can act on and a ``message`` for
people that names what is wrong (never a credential). The change feed is the ingestion's
only source of new files: :meth:`StorageBackend.changes` returns a page of changes since an
opaque cursor and the cursor to resume from, so nothing is picked up twice after a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Literal, Protocol

# Folder (local) or key prefix (S3) under which connection tests write their probe.
PROBE_PREFIX = ".paulyops-probe"

# Bytes per chunk when providers stream reads and writes.
CHUNK_BYTES = 1024 * 1024

ErrorKind = Literal[
    "invalid_path",  # absolute, "..", NUL, a symlink on the way (local): refused up front
    "not_found",  # no such file (or bucket / folder)
    "auth",  # credentials refused, token expired and not refreshable, consent revoked
    "denied",  # authenticated but not allowed (permission, scope)
    "unavailable",  # network, DNS, TLS, timeouts, 5xx after the retries
    "rate_limited",  # 429 after the retries
    "too_large",  # over a size limit the caller gave
    "conflict",  # the file changed under us (revision mismatch)
    "invalid",  # a provider-side refusal of the request itself
]

ChangeKind = Literal["added", "modified", "deleted"]


class StorageError(Exception):
    """A storage operation that failed, said for people.

    Attributes:
        kind: what went wrong, one of :data:`ErrorKind`.
        message: a sentence for people; names the path or bucket, never a credential.
        retryable: whether trying again later may succeed (``unavailable``, ``rate_limited``).
    """

    def __init__(self, kind: ErrorKind, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retryable = (
            retryable if retryable is not None else kind in ("unavailable", "rate_limited")
        )


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """The outcome of a connection test.

    ``message`` is for people (the console shows it as it is) and ``details`` for logs and
    the audit trail; neither ever contains a credential.
    """

    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """One file in a connection.

    Attributes:
        path: relative POSIX path inside the connection's root.
        size: bytes.
        modified: last modification time (timezone-aware UTC).
        revision: the provider's version marker (local: ``"<mtime_ns>-<size>"``; S3: the
            ETag; Drive: ``md5Checksum`` or ``version``; Dropbox: ``rev``); changes when the
            content changes.
        content_hash: a provider-computed hash when one is free (S3 ETag of a single-part
            upload, Drive md5, Dropbox content_hash), prefixed with its algorithm
            (``md5:...``, ``dropbox:...``); ``None`` otherwise. Never a substitute for the
            sha256 ingestion computes while reading.
        media_type: what the provider says the type is (advisory; ingestion sniffs content).
        written_by_paulyops: the file carries PaulyOps's own marker (S3 object metadata
            ``paulyops-origin``, Drive appProperties, Dropbox property/sidecar, local
            extended attribute ``user.paulyops.origin`` or the ``.paulyops-written`` ledger):
            ingestion never takes it.
    """

    path: str
    size: int
    modified: datetime
    revision: str
    content_hash: str | None = None
    media_type: str | None = None
    written_by_paulyops: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """One change in a change feed; ``entry`` is the file's state after it (last seen for
    ``deleted``)."""

    kind: ChangeKind
    entry: Entry


@dataclass(frozen=True, slots=True)
class ChangePage:
    """A page of the change feed.

    Attributes:
        changes: in the order they happened (as far as the provider can tell).
        cursor: opaque text to pass to the next :meth:`StorageBackend.changes` call; store
            it only after the changes were handled, so a crash re-delivers rather than loses.
        has_more: another page is ready right away (call again with ``cursor``).
    """

    changes: list[Change]
    cursor: str
    has_more: bool = False


class ConnectionTester(Protocol):
    """What every provider has had since the first wave: a connection test."""

    def test_connection(self) -> ConnectionCheck:
        """Check that the place is reachable, readable and writable, writing nothing lasting."""
        ...


class StorageBackend(ConnectionTester, Protocol):
    """A place documents are stored: a folder, a bucket, a Drive, a Dropbox."""

    def list(self, folder: str = "", *, recursive: bool = True) -> Iterator[Entry]:
        """Yield the files under ``folder`` (``""`` = the root); folders themselves are not
        entries. Raises :class:`StorageError`."""
        ...

    def stat(self, path: str) -> Entry:
        """Return one file's entry. Raises :class:`StorageError` (``not_found``...)."""
        ...

    def open_read(self, path: str) -> AbstractContextManager[BinaryIO]:
        """Open a file for a streamed read (``with backend.open_read(p) as f: f.read(n)``).
        Raises :class:`StorageError`."""
        ...

    def write(
        self,
        path: str,
        data: BinaryIO,
        *,
        media_type: str | None = None,
        written_by_paulyops: bool = True,
    ) -> Entry:
        """Write a file from a stream, atomically where the provider allows (never a
        half-written file under ``path``), creating folders on the way; marks it as written
        by PaulyOps unless told otherwise. Raises :class:`StorageError`."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file; a missing file is not an error. Raises :class:`StorageError`."""
        ...

    def changes(self, folder: str, cursor: str | None) -> ChangePage:
        """Return what changed under ``folder`` since ``cursor``.

        ``cursor=None`` starts the feed: every file present is reported as ``added`` (over
        as many pages as needed) and the last page's cursor marks "now". Raises
        :class:`StorageError`; an unusable cursor (expired, from another folder) raises
        ``kind="invalid"`` and the caller restarts with ``None`` (ingestion de-duplicates).
        """
        ...


__all__ = [
    "CHUNK_BYTES",
    "PROBE_PREFIX",
    "Change",
    "ChangeKind",
    "ChangePage",
    "ConnectionCheck",
    "ConnectionTester",
    "Entry",
    "ErrorKind",
    "StorageBackend",
    "StorageError",
]
