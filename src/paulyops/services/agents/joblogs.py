"""An agent's log lines, stored with its jobs (``job_logs``) so any machine can read them.

The sandbox turns each stderr line into an
:class:`~paulyops.services.agents.runtime.AgentLogLine` (and a structured log line); the
executor stores them with :func:`store`, in the transaction that records the jobs'
outcomes. A line tagged with one of the batch's jobs goes to that job; an untagged line
(the batch's, e.g. before the first item) goes to every job of the batch. Per job at most
:data:`MAX_LINES_PER_JOB` lines and :data:`MAX_BYTES_PER_JOB` bytes of messages are kept,
each message clipped to :data:`MAX_MESSAGE_CHARS`; what is left over becomes one last line
``N more lines dropped``. Lines are kept as long as their job (deleted with it; kept when
the agent is uninstalled). :func:`read` gives them back to the CLI, the API and the console.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from paulyops.core.db.models import JobLog
from paulyops.core.db.scoped import OrgScope
from paulyops.services.agents.runtime import AgentLogLine

MAX_LINES_PER_JOB = 200
MAX_BYTES_PER_JOB = 64 * 1024
MAX_MESSAGE_CHARS = 2000
REDACTED = "[secret]"


def _redact(text: str, secrets: Sequence[str]) -> str:
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text


def store(
    session: Session,
    organization_id: str,
    job_ids: Sequence[str],
    lines: Iterable[AgentLogLine],
    *,
    dropped: int = 0,
    secrets: Sequence[str] = (),
) -> int:
    """Add the batch's log lines as ``job_logs`` rows in ``session``; return how many.

    ``dropped`` counts lines the sandbox already left out (its own cap per batch): each
    job's ``more lines dropped`` line includes them. ``secrets`` are replaced again here
    (the sandbox did it already; a runner that did not cannot leak them into the table).
    """
    if not job_ids:
        return 0
    scope = OrgScope(session, organization_id)
    wanted = set(job_ids)
    kept = dict.fromkeys(job_ids, 0)
    used = dict.fromkeys(job_ids, 0)
    lost = dict.fromkeys(job_ids, dropped)
    last_at = dict.fromkeys(job_ids, datetime.now(UTC))
    for line in lines:
        targets = [line.job_id] if line.job_id in wanted else list(job_ids)
        message = _redact(line.message, secrets)[:MAX_MESSAGE_CHARS]
        size = len(message.encode("utf-8", "replace"))
        for job_id in targets:
            if kept[job_id] >= MAX_LINES_PER_JOB or used[job_id] + size > MAX_BYTES_PER_JOB:
                lost[job_id] += 1
                continue
            kept[job_id] += 1
            used[job_id] += size
            last_at[job_id] = line.at
            scope.add(
                JobLog(
                    job_id=job_id,
                    seq=kept[job_id],
                    at=line.at,
                    level=line.level[:10],
                    logger=line.logger[:100],
                    message=message,
                )
            )
    total = sum(kept.values())
    for job_id, count in lost.items():
        if count:
            scope.add(
                JobLog(
                    job_id=job_id,
                    seq=kept[job_id] + 1,
                    at=last_at[job_id],
                    level="warning",
                    logger="paulyops",
                    message=f"{count} more lines dropped",
                )
            )
            total += 1
    return total


def read(
    scope: OrgScope, job_ids: Sequence[str], *, per_job: int = MAX_LINES_PER_JOB + 1
) -> dict[str, list[JobLog]]:
    """The stored log lines of these jobs of the organization, in order, by job id."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return {}
    rows = scope.session.scalars(
        scope.select(JobLog, JobLog.job_id.in_(ids)).order_by(JobLog.job_id, JobLog.seq)
    ).all()
    out: dict[str, list[JobLog]] = {}
    for row in rows:
        lines = out.setdefault(row.job_id, [])
        if len(lines) < per_job:
            lines.append(row)
    return out


__all__ = ["MAX_BYTES_PER_JOB", "MAX_LINES_PER_JOB", "MAX_MESSAGE_CHARS", "read", "store"]
