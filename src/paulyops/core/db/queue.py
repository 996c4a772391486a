"""The agent job queue at a glance: numbers for healthz and ``/metrics``.

Lives in core (it only counts rows) so the health checks registered by
:class:`~paulyops.core.instance.Instance` can use it; the job store itself is
``services/agents/jobs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AgentInstallation, Job, utcnow

WAITING = ("queued", "failed")


def due_clause(now: datetime) -> Any:
    """SQL condition of a job that waits and is due (claimable once its agent runs)."""
    return and_(
        Job.status.in_(WAITING),
        or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now),
    )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Due jobs waiting, the oldest one's wait, running and dead jobs, quarantined agents."""

    depth: int
    oldest_age_s: float | None
    running: int
    dead: int
    quarantined: int


def queue_stats(db: Database) -> QueueStats:
    """Count the instance's queue (all organizations together: numbers only, no names)."""
    now = utcnow()
    with db.session() as session:
        depth, oldest = session.execute(
            select(func.count(), func.min(Job.next_attempt_at)).where(due_clause(now))
        ).one()
        counts: dict[str, int] = {
            status: int(count)
            for status, count in session.execute(
                select(Job.status, func.count())
                .where(Job.status.in_(("running", "dead")))
                .group_by(Job.status)
            ).all()
        }
        quarantined = session.scalar(
            select(func.count())
            .select_from(AgentInstallation)
            .where(AgentInstallation.status == "quarantined")
        )
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    return QueueStats(
        depth=int(depth),
        oldest_age_s=age,
        running=counts.get("running", 0),
        dead=counts.get("dead", 0),
        quarantined=int(quarantined or 0),
    )


__all__ = ["WAITING", "QueueStats", "due_clause", "queue_stats"]
