"""Live processes: each server reports its key ring to the database with a heartbeat.

A server inserts a :class:`~paulyops.core.db.models.LiveProcess` row when it is ready,
refreshes it every :data:`HEARTBEAT_INTERVAL` seconds and right after its key ring
reloaded, and deletes it at shutdown. A row whose heartbeat is younger than
:data:`LIVE_WINDOW` is a *live* process. ``paulyops keys reencrypt`` and ``keys retire``
ask :func:`require_current_writers` first: while a live process still encrypts with a key
other than the active one, moving values away from that key (or dropping it) would break
that process, so they refuse and name it.

:class:`ProcessMonitor` is the one background thread that does both halves of this for a
server: it checks ``.env.local`` for a rotated ring (:mod:`paulyops.core.security.keywatch`)
about once a second and writes the heartbeat.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from paulyops.core.db.engine import Database
from paulyops.core.db.models import LiveProcess, new_id, utcnow
from paulyops.core.errors import ConflictError
from paulyops.core.logging import get_logger
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.keywatch import DEFAULT_CHECK_INTERVAL, KeyRingWatcher

log = get_logger("paulyops.processes")

HEARTBEAT_INTERVAL = 10.0
# Three missed heartbeats plus slack: a process this quiet is gone (killed, host lost).
LIVE_WINDOW = timedelta(seconds=45)
# Rows of processes that died without deleting theirs are removed after a day.
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class ProcessInfo:
    """A live process as ``paulyops keys`` reports it (no secret: key ids only)."""

    id: str
    host: str
    pid: int
    kind: str
    key_id: str
    heartbeat_at: datetime

    @property
    def label(self) -> str:
        """``<host> pid <pid>`` for messages."""
        return f"{self.host} pid {self.pid}"


def register(db: Database, ring: KeyRing, *, kind: str = "server") -> str:
    """Insert this process's row and return its id; forget long-dead processes."""
    now = utcnow()
    row = LiveProcess(
        id=new_id("proc"),
        host=socket.gethostname()[:255],
        pid=os.getpid(),
        kind=kind,
        key_id=ring.active_key_id,
        key_ids=list(ring.key_ids),
        started_at=now,
        heartbeat_at=now,
    )
    with db.write_session() as session:
        session.execute(delete(LiveProcess).where(LiveProcess.heartbeat_at < now - FORGET_AFTER))
        session.add(row)
    return row.id


def heartbeat(db: Database, process_id: str, ring: KeyRing) -> None:
    """Refresh the heartbeat and key ids of process ``process_id``."""
    with db.write_session() as session:
        session.execute(
            update(LiveProcess)
            .where(LiveProcess.id == process_id)
            .values(
                heartbeat_at=utcnow(),
                key_id=ring.active_key_id,
                key_ids=list(ring.key_ids),
            )
        )


def unregister(db: Database, process_id: str) -> None:
    """Delete the row of a process that shuts down."""
    with db.write_session() as session:
        session.execute(delete(LiveProcess).where(LiveProcess.id == process_id))


def live_processes(db: Database, *, now: datetime | None = None) -> list[ProcessInfo]:
    """Return the processes whose heartbeat is within :data:`LIVE_WINDOW`, oldest first."""
    since = (now or utcnow()) - LIVE_WINDOW
    with db.session() as session:
        rows = session.scalars(
            select(LiveProcess)
            .where(LiveProcess.heartbeat_at >= since)
            .order_by(LiveProcess.started_at)
        ).all()
        return [ProcessInfo(r.id, r.host, r.pid, r.kind, r.key_id, r.heartbeat_at) for r in rows]


def require_current_writers(db: Database, active_key_id: str, *, command: str) -> None:
    """Refuse while a live process encrypts with a key other than ``active_key_id``.

    Args:
        db: the database.
        active_key_id: the active key of the ring the command uses.
        command: the command being refused, for the message (``keys reencrypt``).

    Raises:
        ConflictError: naming each such process (host, pid, key id).
    """
    stale = [p for p in live_processes(db) if p.key_id != active_key_id]
    if not stale:
        return
    names = "; ".join(f"{p.label} writes with key {p.key_id}" for p in stale)
    raise ConflictError(
        f"key id: `paulyops {command}` needs every running process on the active key "
        f"{active_key_id}, but {names}. A server on this machine reloads .env.local within "
        "seconds (or at once on SIGHUP); on other machines copy the lines `paulyops keys "
        "rotate` printed into their .env.local, then run this again. A process that was "
        f"stopped without shutting down drops out after {int(LIVE_WINDOW.total_seconds())} s."
    )


class ProcessMonitor:
    """Reload the key ring when ``.env.local`` changes and heartbeat the process row.

    Args:
        db: the database (connected and migrated before :meth:`start`).
        watcher: the key ring watcher of this process.
        kind: what runs here (``server``).
        heartbeat_interval: seconds between heartbeats.
    """

    def __init__(
        self,
        db: Database,
        watcher: KeyRingWatcher,
        *,
        kind: str = "server",
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.db = db
        self.watcher = watcher
        self.kind = kind
        self.heartbeat_interval = heartbeat_interval
        self.process_id: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Register this process and start the background thread."""
        self._thread = threading.Thread(target=self._run, name="process-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            reloaded = self.watcher.maybe_reload()
            now = time.monotonic()
            if (reloaded or now >= next_beat) and self._beat():
                next_beat = now + self.heartbeat_interval
            self._stop.wait(min(DEFAULT_CHECK_INTERVAL, self.heartbeat_interval))

    def _beat(self) -> bool:
        try:
            if self.process_id is None:
                self.process_id = register(self.db, self.watcher.ring, kind=self.kind)
            else:
                heartbeat(self.db, self.process_id, self.watcher.ring)
        except SQLAlchemyError as err:
            # The database is away: the health monitor reports that; try again next tick.
            log.warning("process_heartbeat_failed", error=type(err).__name__)
            return False
        return True

    def stop(self) -> None:
        """Stop the thread and delete this process's row (best effort)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.process_id is not None:
            try:
                unregister(self.db, self.process_id)
            except SQLAlchemyError as err:
                log.warning("process_unregister_failed", error=type(err).__name__)
            self.process_id = None


__all__ = [
    "HEARTBEAT_INTERVAL",
    "LIVE_WINDOW",
    "ProcessInfo",
    "ProcessMonitor",
    "heartbeat",
    "live_processes",
    "register",
    "require_current_writers",
    "unregister",
]
