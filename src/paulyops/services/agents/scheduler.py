"""One leader at a time for the instance's periodic duties, leased through the database.

Every server and worker process may start a :class:`Scheduler`; only the one holding the
``scheduler_leases`` row (a conditional update: take it when it is ours or expired) runs
the registered tasks. The leader renews its lease each tick; when it stops (or dies), the
lease expires and another process takes over within one lease length.

Registered here: the job lease reaper (and, with a broker, the sweep that re-sends due
retries). Storage polls, scheduled reports, backups and retention register the same way::

    scheduler.register("backups", interval_s=86400, run=backup_now)
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from paulyops.core.db.engine import Database
from paulyops.core.db.models import SchedulerLease, utcnow
from paulyops.core.logging import get_logger

log = get_logger("paulyops.agents.scheduler")

LEASE_NAME = "scheduler"
DEFAULT_LEASE_S = 30.0


def process_owner(role: str) -> str:
    """Return a name for this process (host, pid, role) for leases and logs."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{role}"


@dataclass
class PeriodicTask:
    """A duty run every ``interval_s`` seconds by the leader."""

    name: str
    interval_s: float
    run: Callable[[], object]
    next_at: float = 0.0


def acquire_lease(db: Database, *, owner: str, lease_s: float, name: str = LEASE_NAME) -> bool:
    """Take or renew the lease ``name`` for ``owner``; return whether ``owner`` holds it."""
    now = utcnow()
    expires = now + timedelta(seconds=lease_s)
    with db.write_session() as session:
        taken = session.execute(
            update(SchedulerLease)
            .where(
                SchedulerLease.name == name,
                (SchedulerLease.owner == owner) | (SchedulerLease.expires_at < now),
            )
            .values(owner=owner, expires_at=expires, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]  # CursorResult at runtime
            return True
    try:
        with db.write_session() as session:
            session.add(SchedulerLease(name=name, owner=owner, expires_at=expires))
    except IntegrityError:  # someone else holds it (or just created it)
        return False
    return True


def release_lease(db: Database, *, owner: str, name: str = LEASE_NAME) -> None:
    """Give the lease up at once if ``owner`` holds it (a clean stop)."""
    with db.write_session() as session:
        session.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == name, SchedulerLease.owner == owner)
            .values(expires_at=utcnow() - timedelta(seconds=1))
            .execution_options(synchronize_session=False)
        )


class Scheduler:
    """Run registered periodic tasks while this process leads.

    Args:
        db: the database holding the lease.
        owner: this process's name (see :func:`process_owner`).
        lease_s: how long leadership lasts without renewal.
        tick_s: how often the loop wakes (renewal and due tasks).
    """

    def __init__(
        self,
        db: Database,
        *,
        owner: str,
        lease_s: float = DEFAULT_LEASE_S,
        tick_s: float | None = None,
    ) -> None:
        self.db = db
        self.owner = owner
        self.lease_s = lease_s
        self.tick_s = tick_s if tick_s is not None else lease_s / 3
        self.tasks: dict[str, PeriodicTask] = {}
        self.is_leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, name: str, *, interval_s: float, run: Callable[[], object]) -> None:
        """Add a periodic duty (replacing one of the same name)."""
        self.tasks[name] = PeriodicTask(name, interval_s, run)

    def start(self) -> None:
        """Start the loop in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and give the lease up, so another process leads at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.is_leader:
            try:
                release_lease(self.db, owner=self.owner)
            except Exception:  # the lease then simply expires
                log.warning("scheduler_release_failed", exc_info=True)
            self.is_leader = False

    def tick(self) -> None:
        """Renew (or try to take) the lease, then run the tasks that are due."""
        try:
            leader = acquire_lease(self.db, owner=self.owner, lease_s=self.lease_s)
        except Exception:  # the database is down: not the leader until it is back
            log.warning("scheduler_lease_failed", exc_info=True)
            leader = False
        if leader != self.is_leader:
            log.info("scheduler_leadership", owner=self.owner, leader=leader)
            self.is_leader = leader
        if not leader:
            return
        now = time.monotonic()
        for task in list(self.tasks.values()):
            if task.next_at > now:
                continue
            task.next_at = now + task.interval_s
            try:
                task.run()
            except Exception:  # one failing duty must not stop the others
                log.exception("scheduled_task_failed", task=task.name)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.tick_s)


__all__ = [
    "DEFAULT_LEASE_S",
    "LEASE_NAME",
    "PeriodicTask",
    "Scheduler",
    "acquire_lease",
    "process_owner",
    "release_lease",
]
