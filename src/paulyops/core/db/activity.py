"""Activity stamps of sessions and API tokens, written off the request path.

A read must not write: on SQLite, a transaction that read and then writes cannot wait for
the lock (its snapshot may be stale), so a ``last_seen_at`` update inside a GET answered
"database is locked" under concurrent load. Requests therefore only *note* activity here;
a background thread writes the notes in one short ``BEGIN IMMEDIATE`` transaction every
few seconds, which waits for the lock like every other writer.

Each session or token is noted at most once per :data:`TOUCH_EVERY` per process, and the
``UPDATE`` only moves a stamp forward, so several processes writing the same stamp are
harmless. Sessions found idle past their organization's limit are queued for revocation
the same way (the request itself just treats them as signed out).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, bindparam, update

from paulyops.core.db import generation
from paulyops.core.db.engine import Database
from paulyops.core.db.models import ApiToken, WebSession, utcnow
from paulyops.core.logging import get_logger

log = get_logger("paulyops.auth")

# How stale a stored stamp may get: the idle timeout is counted in minutes, so a minute
# of resolution costs nothing, and it bounds the writes to one per session a minute.
TOUCH_EVERY = timedelta(seconds=60)
# How long a note waits before it is written.
FLUSH_INTERVAL = 5.0
# Notes kept at most; past this the oldest are written at once.
MAX_PENDING = 10_000


class ActivityRecorder:
    """Collect activity stamps and revocations of idle sessions; write them in batches.

    Args:
        db: the database the stamps are written to.
        interval: seconds between background writes; 0 starts no thread (call
            :meth:`flush` yourself).
    """

    def __init__(self, db: Database, *, interval: float = FLUSH_INTERVAL) -> None:
        self.db = db
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[str, datetime] = {}  # session id -> the newest stamp noted
        self._used: dict[str, datetime] = {}  # token id -> the newest stamp noted
        self._pending_seen: dict[str, datetime] = {}
        self._pending_used: dict[str, datetime] = {}
        self._pending_revoked: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- noting (request path: memory only) ---------------------------------------------
    def last_seen(self, session_id: str, stored: datetime) -> datetime:
        """Return the newest activity of a session: ``stored`` or a newer noted stamp."""
        with self._lock:
            noted = self._seen.get(session_id)
        return noted if noted is not None and noted > stored else stored

    def note_session(self, session_id: str, stored: datetime, now: datetime) -> None:
        """Note that a session was used at ``now`` (stored stamp ``stored``)."""
        with self._lock:
            latest = max(stored, self._seen.get(session_id, stored))
            if now - latest < TOUCH_EVERY:
                return
            self._seen[session_id] = now
            self._pending_seen[session_id] = now
        self._ensure_thread()

    def note_token(self, token_id: str, stored: datetime | None, now: datetime) -> None:
        """Note that an API token was used at ``now`` (stored stamp ``stored``)."""
        with self._lock:
            latest = self._used.get(token_id, stored)
            if stored is not None and latest is not None:
                latest = max(latest, stored)
            if latest is not None and now - latest < TOUCH_EVERY:
                return
            self._used[token_id] = now
            self._pending_used[token_id] = now
        self._ensure_thread()

    def revoke_idle(self, session_id: str, now: datetime) -> None:
        """Queue the revocation of a session found idle past its limit."""
        with self._lock:
            self._pending_revoked.setdefault(session_id, now)
        self._ensure_thread()

    # --- writing (background) ---------------------------------------------------------
    def flush(self) -> int:
        """Write every pending note now; return how many rows were addressed."""
        with self._lock:
            seen, self._pending_seen = self._pending_seen, {}
            used, self._pending_used = self._pending_used, {}
            revoked, self._pending_revoked = self._pending_revoked, {}
            self._forget_older_than(utcnow() - TOUCH_EVERY)
        if not (seen or used or revoked):
            return 0
        try:
            with self._write() as conn:
                _write_stamps(conn, seen, used, revoked)
        except Exception as err:  # a background writer must not die; the next flush retries
            log.warning("activity_flush_failed", error=type(err).__name__)
            with self._lock:
                for target, notes in (
                    (self._pending_seen, seen),
                    (self._pending_used, used),
                    (self._pending_revoked, revoked),
                ):
                    for key, value in notes.items():
                        target.setdefault(key, value)
            return 0
        return len(seen) + len(used) + len(revoked)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        # A Core connection, not an ORM session: stamps are not principal changes (no
        # generation bump), and BEGIN IMMEDIATE makes SQLite wait for its write lock.
        conn = self.db.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()

    def _forget_older_than(self, cutoff: datetime) -> None:
        # A forgotten id is simply noted again next time: the stored stamp decides then.
        for notes in (self._seen, self._used):
            for key in [k for k, v in notes.items() if v < cutoff]:
                del notes[key]

    def _ensure_thread(self) -> None:
        if self.interval <= 0:
            return
        if len(self._pending_seen) + len(self._pending_used) > MAX_PENDING:
            self.flush()
        if self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="auth-activity", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop the background writer and write what is still pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


def _write_stamps(
    conn: Connection,
    seen: dict[str, datetime],
    used: dict[str, datetime],
    revoked: dict[str, datetime],
) -> None:
    sessions = cast(Table, WebSession.__table__)
    tokens = cast(Table, ApiToken.__table__)
    if seen:
        conn.execute(
            update(sessions)
            .where(sessions.c.id == bindparam("row_id"), sessions.c.last_seen_at < bindparam("at"))
            .values(last_seen_at=bindparam("at")),
            [{"row_id": key, "at": at} for key, at in seen.items()],
        )
    if used:
        conn.execute(
            update(tokens)
            .where(
                tokens.c.id == bindparam("row_id"),
                (tokens.c.last_used_at.is_(None)) | (tokens.c.last_used_at < bindparam("at")),
            )
            .values(last_used_at=bindparam("at")),
            [{"row_id": key, "at": at} for key, at in used.items()],
        )
    if revoked:
        conn.execute(
            update(sessions)
            .where(sessions.c.id == bindparam("row_id"), sessions.c.revoked_at.is_(None))
            .values(revoked_at=bindparam("at")),
            [{"row_id": key, "at": at} for key, at in revoked.items()],
        )
        # A revocation changes principals: cached ones must go (see core.db.generation).
        generation.bump(conn)


__all__ = ["FLUSH_INTERVAL", "TOUCH_EVERY", "ActivityRecorder"]
