"""Manual runs and run history of an organization's agents (``paulyops agents run | logs``).

The CLI, the API and the console call these; they never touch Job rows themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AgentEvent, AgentInstallation, Job, Organization
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import FieldError, NotFoundError, SpecValidationError
from paulyops.services.actor import Actor
from paulyops.services.agents import jobs
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from paulyops.services.organizations import organization_id

MEDIA_TYPES = {
    ".txt": "text/plain",
    ".csv": "text/csv",
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as people see it."""

    id: str
    agent_id: str
    status: str
    attempts: int
    max_attempts: int
    input_name: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: str | None
    result: dict[str, Any] | None

    @property
    def is_finished(self) -> bool:
        """Whether the job reached an end state (succeeded, dead, cancelled)."""
        return self.status in jobs.FINISHED


@dataclass(frozen=True, slots=True)
class EventView:
    """One AgentEvent of an installation."""

    kind: str
    created_at: datetime
    details: dict[str, Any]


def _view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        agent_id=job.agent_id,
        status=job.status,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        input_name=str((job.input or {}).get("name") or ""),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        duration_ms=job.duration_ms,
        error=job.error,
        result=job.result,
    )


def resolve_organization(db: Database, ref: str | None) -> str:
    """Return the organization named by ``--org`` (id or slug), or the only one.

    Raises:
        NotFoundError: no such organization, or none at all.
        SpecValidationError: several exist and none was named.
    """
    if ref:
        return organization_id(db, ref)
    with db.session() as session:
        ids = session.scalars(select(Organization.id).limit(2)).all()
    if not ids:
        raise NotFoundError("no organization exists yet: run `paulyops setup` first")
    if len(ids) > 1:
        raise SpecValidationError(
            "--org: several organizations exist; name one with --org SLUG",
            [FieldError("--org", "name the organization (its slug or id)")],
        )
    return ids[0]


def _installation(scope: OrgScope, ref: str) -> AgentInstallation:
    found = scope.first(
        AgentInstallation, or_(AgentInstallation.id == ref, AgentInstallation.agent_id == ref)
    )
    if found is None:
        raise NotFoundError(f"no agent {ref!r} is installed in this organization")
    return found


def run_file(
    db: Database,
    organization_id: str,
    agent: str,
    path: Path,
    *,
    actor: Actor,
    policy: JobPolicy,
) -> JobView:
    """Queue one manual run of ``agent`` (installation id or agent id) on a local file.

    The file's bytes are staged in the database (up to 50 MB), so a worker on any machine
    can run it. Audited as ``agent.run``.

    Raises:
        NotFoundError: no such agent installed, or no such file.
        ConflictError: the agent is disabled or quarantined.
        SpecValidationError: the file is too big to stage.
    """
    if not path.is_file():
        raise NotFoundError(f"--input: no such file: {path}")
    size = path.stat().st_size
    if size > jobs.MAX_STAGED_BYTES:
        raise SpecValidationError(
            f"--input: {path.name} is {size} bytes, more than the 50 MB a run can stage",
            [FieldError("--input", "at most 50 MB; use a storage connection for larger files")],
        )
    # Read at most one byte more than the cap: a file that grew since the check is
    # refused, never loaded whole.
    with path.open("rb") as fh:
        data = fh.read(jobs.MAX_STAGED_BYTES + 1)
    if len(data) > jobs.MAX_STAGED_BYTES:
        raise SpecValidationError(
            f"--input: {path.name} grew past the 50 MB a run can stage while it was read",
            [FieldError("--input", "at most 50 MB; use a storage connection for larger files")],
        )
    spec = JobSpec(
        name=path.name,
        media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
        data=data,
        metadata={"origin": "manual"},
    )
    with db.write_session() as session:
        scope = OrgScope(session, organization_id)
        installation = _installation(scope, agent)
        (job,) = jobs.enqueue(scope, installation.id, [spec], policy=policy, actor=actor)
        return _view(job)


def job_history(db: Database, organization_id: str, ref: str, *, limit: int = 20) -> list[JobView]:
    """Return a job (``job_...``) or an agent's latest jobs, newest first.

    Raises:
        NotFoundError: no such job or installed agent here.
    """
    with db.session() as session:
        scope = OrgScope(session, organization_id)
        if ref.startswith("job_"):
            return [_view(jobs.get_job(scope, ref))]
        installation = _installation(scope, ref)
        return [_view(job) for job in jobs.recent_jobs(scope, installation.id, limit=limit)]


def recent_runs(scope: OrgScope, ref: str, *, limit: int = 20) -> list[JobView]:
    """Return an installed agent's latest jobs, newest first, in the caller's session.

    Raises:
        NotFoundError: no such installed agent in this organization.
    """
    installation = _installation(scope, ref)
    return [_view(job) for job in jobs.recent_jobs(scope, installation.id, limit=limit)]


def agent_events(
    db: Database, organization_id: str, ref: str, *, limit: int = 20
) -> list[EventView]:
    """Return an agent's latest events (runs, quarantine, lifecycle), newest first."""
    with db.session() as session:
        scope = OrgScope(session, organization_id)
        installation = _installation(scope, ref)
        rows = session.scalars(
            scope.select(AgentEvent, AgentEvent.installation_id == installation.id)
            .order_by(AgentEvent.created_at.desc(), AgentEvent.id.desc())
            .limit(max(1, min(limit, 500)))
        ).all()
        return [EventView(e.kind, e.created_at, dict(e.details or {})) for e in rows]


def wait_for(
    db: Database, organization_id: str, job_id: str, *, timeout_s: float, poll_s: float = 0.2
) -> JobView:
    """Wait until a job finished (or the timeout passed) and return it as it is then."""
    deadline = time.monotonic() + timeout_s
    while True:
        (view,) = job_history(db, organization_id, job_id)
        if view.is_finished or time.monotonic() >= deadline:
            return view
        time.sleep(poll_s)


def success_rate(db: Database, organization_id: str, ref: str) -> float | None:
    """Share of an agent's finished jobs that succeeded (``None`` before the first)."""
    with db.session() as session:
        scope = OrgScope(session, organization_id)
        installation = _installation(scope, ref)
        rows = dict(
            session.execute(
                select(Job.status, func.count())
                .where(
                    Job.organization_id == organization_id,
                    Job.installation_id == installation.id,
                    Job.status.in_((jobs.SUCCEEDED, jobs.DEAD)),
                )
                .group_by(Job.status)
            ).all()
        )
    total = sum(rows.values())
    return rows.get(jobs.SUCCEEDED, 0) / total if total else None


__all__ = [
    "EventView",
    "JobView",
    "agent_events",
    "job_history",
    "recent_runs",
    "resolve_organization",
    "run_file",
    "success_rate",
    "wait_for",
]
