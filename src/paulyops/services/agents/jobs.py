"""The durable job store: enqueue, claim with a lease, heartbeat, complete, fail, reap.

A Job row is the truth of every run. States::

    queued ──claim──> running ──complete──> succeeded
                        ├──fail / lease expired──> failed ──(next_attempt_at)──> running
                        └──after max_attempts claims──> dead
    any unfinished job ──cancel──> cancelled

Delivery is **at least once** with **at most one successful completion per job record**:

* a claim takes up to :data:`~paulyops.services.agents.runtime.MAX_BATCH` due jobs of
  *one* installation in one conditional ``UPDATE`` (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL; on SQLite the writer's ``BEGIN IMMEDIATE`` serializes claimers), setting
  ``lease_owner`` and ``lease_expires_at`` and counting the attempt;
* :func:`heartbeat` extends the lease (callers beat every third of it);
* :func:`complete` and :func:`fail` change a job only while its lease is still the
  caller's, so a worker that lost its lease (reaped, handed back) cannot finish a job
  another worker has claimed since;
* :func:`reap` turns expired leases into retries, or into ``dead`` once the attempts are
  used up: a run that always kills its worker (out of memory) ends ``dead``, not in a loop.

Attempts count *claims*, so the agent's idempotency key ``(job_id, attempt)`` differs on
every delivery. Who runs a claimed batch: ``services/agents/execute.py``.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, event, func, or_, select, update
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AgentInstallation, Job, JobInput, utcnow
from paulyops.core.db.queue import QueueStats, due_clause, queue_stats
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, FieldError, NotFoundError, SpecValidationError
from paulyops.services.actor import Actor
from paulyops.services.actor import record as audit_record
from paulyops.services.agents.runtime import MAX_BATCH

# Inputs travel through the database only when a worker may not share the disk (DESIGN.md,
# "Inputs on other machines"); anything bigger needs a shared storage connection.
MAX_STAGED_BYTES = 50 * 1024 * 1024
# Errors are stored for people to read, never whole tracebacks or agent floods.
MAX_ERROR_CHARS = 2000

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
DEAD = "dead"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, DEAD, CANCELLED)
WAITING = (QUEUED, FAILED)
FINISHED = (SUCCEEDED, DEAD, CANCELLED)
# Only these installations' jobs are claimed; a quarantined or disabled one keeps its queue.
RUNNABLE_INSTALLATION = "enabled"


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """How long leases last and how retries back off (from the instance settings).

    Args:
        lease_s: seconds a claim lasts without a heartbeat.
        max_attempts: claims before a job is dead.
        retry_base_s: delay before the second attempt; doubled for each further one.
        retry_max_s: the longest delay.
    """

    lease_s: float = 60.0
    max_attempts: int = 3
    retry_base_s: float = 10.0
    retry_max_s: float = 3600.0

    @property
    def heartbeat_s(self) -> float:
        """Seconds between heartbeats: a third of the lease."""
        return self.lease_s / 3

    def backoff(self, attempts: int) -> timedelta:
        """Return the delay before the attempt after ``attempts`` claims."""
        seconds = self.retry_base_s * (2 ** max(0, attempts - 1))
        return timedelta(seconds=min(seconds, self.retry_max_s))

    @classmethod
    def from_settings(cls, settings: Any) -> JobPolicy:
        """Build the policy from :class:`~paulyops.core.settings.Settings`."""
        return cls(
            lease_s=settings.job_lease_s,
            max_attempts=settings.job_max_attempts,
            retry_base_s=settings.job_retry_base_s,
            retry_max_s=settings.job_retry_max_s,
        )


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One input to run an installation's agent on.

    Exactly one of ``path`` (a file readable where the job runs: local storage with
    embedded workers), ``data`` (bytes staged in ``job_inputs``, up to 50 MB) or ``source``
    (a reference the worker fetches itself, e.g. ``{"kind": "storage", "connection": id,
    "path": ..., "revision": ..., "sha256": ...}``; ``size``/``sha256`` copied when given)
    is given.
    """

    name: str
    media_type: str = "application/octet-stream"
    path: str | None = None
    data: bytes | None = None
    document_class: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as claimed: what the executor needs, detached from any session."""

    id: str
    organization_id: str
    installation_id: str
    agent_id: str
    attempt: int
    max_attempts: int
    input: Mapping[str, Any]
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A batch of jobs of one installation, leased to ``owner`` until ``expires_at``."""

    owner: str
    installation_id: str
    organization_id: str
    jobs: tuple[ClaimedJob, ...]
    expires_at: datetime

    @property
    def job_ids(self) -> list[str]:
        """The claimed jobs' ids, in claim order."""
        return [job.id for job in self.jobs]


# --- dispatch: who is told that jobs are waiting -------------------------------------------

Dispatcher = Callable[[str, Sequence[str]], None]
"""Called after a commit with (installation id, new job ids): wakes the embedded runner or
sends the Celery task."""

_dispatchers: weakref.WeakKeyDictionary[Any, Dispatcher] = weakref.WeakKeyDictionary()


def set_dispatcher(db: Database, dispatcher: Dispatcher | None) -> None:
    """Make ``dispatcher`` hear about jobs enqueued on ``db`` (``None`` removes it)."""
    if dispatcher is None:
        _dispatchers.pop(db.engine, None)
    else:
        _dispatchers[db.engine] = dispatcher


def _dispatch_after_commit(session: Session, installation_id: str, job_ids: list[str]) -> None:
    engine = session.get_bind()
    engine = getattr(engine, "engine", engine)

    def _after_commit(_session: Session) -> None:
        dispatcher = _dispatchers.get(engine)
        if dispatcher is not None:
            dispatcher(installation_id, job_ids)

    event.listen(session, "after_commit", _after_commit, once=True)


# --- enqueue ------------------------------------------------------------------------------


def _input_document(spec: JobSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": spec.name,
        "mediaType": spec.media_type,
        "documentClass": spec.document_class,
        "metadata": dict(spec.metadata),
    }
    if spec.data is not None:
        doc["source"] = {"kind": "staged"}
        doc["size"] = len(spec.data)
        doc["sha256"] = hashlib.sha256(spec.data).hexdigest()
    elif spec.source is not None:
        doc["source"] = dict(spec.source)
        for key in ("size", "sha256"):
            if spec.source.get(key) is not None:
                doc[key] = spec.source[key]
    else:
        doc["source"] = {"kind": "path", "path": spec.path}
    return doc


# Bidirectional controls: a name like "report\u202etxt.exe" shows as "reportexe.txt".
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _is_file_name(name: str) -> bool:
    """A name the console, the logs and an agent can show as it is: one path part, no
    folders (``/`` or ``\\``), not ``.`` or ``..``, no control or text-direction characters."""
    if not name or len(name) > 255 or name in (".", "..") or "/" in name or "\\" in name:
        return False
    return not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in _BIDI_CONTROLS for c in name)


def _check_specs(specs: Sequence[JobSpec]) -> None:
    errors: list[FieldError] = []
    for index, spec in enumerate(specs):
        where = f"inputs[{index}]"
        given = [v for v in (spec.path, spec.data, spec.source) if v is not None]
        if len(given) != 1:
            errors.append(
                FieldError(where, "expected exactly one of a path, staged bytes or a source")
            )
        elif spec.source is not None and not isinstance(spec.source.get("kind"), str):
            errors.append(FieldError(where, "expected a source with a 'kind'"))
        if spec.data is not None and len(spec.data) > MAX_STAGED_BYTES:
            errors.append(
                FieldError(
                    where,
                    f"{spec.name}: {len(spec.data)} bytes is more than the "
                    f"{MAX_STAGED_BYTES // (1024 * 1024)} MB an input may be staged with; "
                    "use a storage connection the workers can read",
                )
            )
        if not _is_file_name(spec.name):
            errors.append(
                FieldError(
                    where,
                    f"expected a file name (no folders, control or text-direction "
                    f"characters), got {spec.name!r}",
                )
            )
    if errors:
        raise SpecValidationError(errors[0].message, errors)


def enqueue(
    scope: OrgScope,
    installation_id: str,
    specs: Sequence[JobSpec],
    *,
    policy: JobPolicy,
    actor: Actor | None = None,
    kind: str = "run",
    correlation_id: str | None = None,
) -> list[Job]:
    """Queue one job per input for an installation, in the caller's transaction.

    The dispatcher (embedded runner or Celery) hears of them after the commit. Only a
    manual run (``actor`` given: a person, a token, the CLI) writes an audit row; jobs
    made by ingestion are recorded by the jobs themselves.

    Raises:
        NotFoundError: no such installation in this organization.
        ConflictError: the installation is not enabled.
        SpecValidationError: an input has neither or both of path and bytes, or is too big.
    """
    _check_specs(specs)
    installation = scope.get(AgentInstallation, installation_id)
    if installation.status != RUNNABLE_INSTALLATION:
        raise ConflictError(
            f"agent {installation.agent_id} is {installation.status}: it runs no jobs "
            "until it is enabled"
            + (" (or released)" if installation.status == "quarantined" else "")
        )
    now = utcnow()
    jobs: list[Job] = []
    for spec in specs:
        job = Job(
            installation_id=installation.id,
            agent_id=installation.agent_id,
            kind=kind,
            status=QUEUED,
            input=_input_document(spec),
            max_attempts=policy.max_attempts,
            next_attempt_at=now,
            correlation_id=correlation_id,
        )
        scope.add(job)
        jobs.append(job)
    scope.session.flush()
    for job, spec in zip(jobs, specs, strict=True):
        if spec.data is not None:
            scope.add(
                JobInput(
                    job_id=job.id,
                    sha256=job.input["sha256"],
                    size=len(spec.data),
                    data=spec.data,
                )
            )
    if actor is not None:
        audit_record(
            scope.session,
            actor,
            "agent.run",
            organization_id=scope.organization_id,
            target_type="agent_installation",
            target_id=installation.id,
            changes={"jobs": [job.id for job in jobs], "agent": installation.agent_id},
        )
    _dispatch_after_commit(scope.session, installation.id, [job.id for job in jobs])
    return jobs


def staged_input(db: Database, job: ClaimedJob) -> bytes:
    """Return a staged input's bytes.

    Raises:
        NotFoundError: the job has no staged input (anymore).
    """
    with db.session() as session:
        data = session.scalar(
            select(JobInput.data).where(
                JobInput.job_id == job.id, JobInput.organization_id == job.organization_id
            )
        )
    if data is None:
        raise NotFoundError(f"job {job.id}: its staged input is gone")
    return data


# --- claim --------------------------------------------------------------------------------


def _due(now: datetime) -> Any:
    return due_clause(now)


def _pick_installation(session: Session, now: datetime, job_ids: Sequence[str] | None) -> Any:
    stmt = (
        select(Job.installation_id)
        .join(AgentInstallation, AgentInstallation.id == Job.installation_id)
        .where(_due(now), AgentInstallation.status == RUNNABLE_INSTALLATION)
        .order_by(Job.next_attempt_at, Job.created_at)
        .limit(1)
    )
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(list(job_ids)))
    return session.scalar(stmt)


def claim(
    db: Database,
    *,
    owner: str,
    policy: JobPolicy,
    limit: int = MAX_BATCH,
    job_ids: Sequence[str] | None = None,
) -> Claim | None:
    """Lease up to ``limit`` due jobs of one installation to ``owner``.

    Args:
        owner: a name unique to this worker thread (host, pid, thread).
        policy: the lease length.
        limit: the most jobs in the batch (at most :data:`MAX_BATCH`).
        job_ids: claim the installation of these jobs (a Celery task's); the batch is
            filled with that installation's other due jobs.

    Returns:
        The claim, or ``None`` when nothing is due.
    """
    limit = max(1, min(limit, MAX_BATCH))
    for _ in range(3):  # another claimer may take the picked installation's last jobs
        now = utcnow()
        expires = now + timedelta(seconds=policy.lease_s)
        with db.write_session() as session:
            installation_id = _pick_installation(session, now, job_ids)
            if installation_id is None:
                return None
            # A task's own jobs first, then the rest of the installation's queue.
            first = [Job.id.in_(list(job_ids)[:limit]).desc()] if job_ids is not None else []
            wanted = (
                select(Job.id)
                .where(Job.installation_id == installation_id, _due(now))
                .order_by(*first, Job.next_attempt_at, Job.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
                # Materialized: as a plain IN (subquery) PostgreSQL may rescan it and
                # lease more than ``limit`` rows (seen in the tests).
                .cte("picked")
                .prefix_with("MATERIALIZED")
            )
            rows = session.execute(
                update(Job)
                .where(Job.id.in_(select(wanted.c.id)), _due(now))
                .values(
                    status=RUNNING,
                    lease_owner=owner,
                    lease_expires_at=expires,
                    heartbeat_at=now,
                    started_at=now,
                    finished_at=None,
                    attempts=Job.attempts + 1,
                    updated_at=now,
                )
                .returning(
                    Job.id,
                    Job.organization_id,
                    Job.agent_id,
                    Job.attempts,
                    Job.max_attempts,
                    Job.input,
                    Job.correlation_id,
                    Job.created_at,
                )
                .execution_options(synchronize_session=False)
            ).all()
        if rows:
            jobs = tuple(
                ClaimedJob(
                    id=row.id,
                    organization_id=row.organization_id,
                    installation_id=installation_id,
                    agent_id=row.agent_id,
                    attempt=row.attempts,
                    max_attempts=row.max_attempts,
                    input=row.input,
                    correlation_id=row.correlation_id,
                )
                for row in sorted(rows, key=lambda row: (row.created_at, row.id))
            )
            return Claim(owner, installation_id, jobs[0].organization_id, jobs, expires)
    return None


# --- while running ------------------------------------------------------------------------


def _ours(job_ids: Sequence[str], owner: str) -> Any:
    return and_(Job.id.in_(list(job_ids)), Job.status == RUNNING, Job.lease_owner == owner)


def heartbeat(db: Database, job_ids: Sequence[str], *, owner: str, policy: JobPolicy) -> list[str]:
    """Extend the lease of the caller's running jobs; return the ids still held."""
    now = utcnow()
    with db.write_session() as session:
        rows = session.execute(
            update(Job)
            .where(_ours(job_ids, owner))
            .values(
                heartbeat_at=now,
                lease_expires_at=now + timedelta(seconds=policy.lease_s),
                updated_at=now,
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).all()
    return [row.id for row in rows]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _drop_staged(session: Session, job_id: str) -> None:
    session.execute(delete(JobInput).where(JobInput.job_id == job_id))


def complete(
    db: Database,
    job_id: str,
    *,
    owner: str,
    result: Mapping[str, Any],
    duration_ms: float | None = None,
    session: Session | None = None,
) -> bool:
    """Mark a job succeeded if ``owner`` still holds its lease; return whether it did.

    A ``False`` means another worker owns the job now (or it was cancelled): the result
    is discarded, so a record never completes twice.
    """

    def _run(s: Session) -> bool:
        now = utcnow()
        done = s.execute(
            update(Job)
            .where(_ours([job_id], owner))
            .values(
                status=SUCCEEDED,
                result=dict(result),
                error=None,
                finished_at=now,
                duration_ms=duration_ms,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount == 1:  # type: ignore[attr-defined]  # CursorResult at runtime
            _drop_staged(s, job_id)
            return True
        return False

    if session is not None:
        return _run(session)
    with db.write_session() as s:
        return _run(s)


@dataclass(frozen=True, slots=True)
class Failure:
    """What :func:`fail` did: ``retry`` (``failed``, due at ``next_attempt_at``) or ``dead``."""

    state: str
    next_attempt_at: datetime | None


def fail(
    db: Database,
    job_id: str,
    *,
    owner: str,
    error: str,
    policy: JobPolicy,
    duration_ms: float | None = None,
    retry: bool = True,
    session: Session | None = None,
) -> Failure | None:
    """Record a failed attempt if ``owner`` still holds the lease.

    The job is retried after the backoff, or is ``dead`` with the reason once its
    attempts are used up (or ``retry`` is false: a failure no retry can fix).

    Returns:
        What became of the job, or ``None`` when the lease was no longer ours.
    """

    def _run(s: Session) -> Failure | None:
        now = utcnow()
        row = s.execute(
            select(Job.attempts, Job.max_attempts).where(_ours([job_id], owner))
        ).first()
        if row is None:
            return None
        outcome = _failure_for(row.attempts, row.max_attempts, now, policy, retry=retry)
        reason = error if outcome.state == FAILED else _dead_reason(error, row.attempts)
        s.execute(
            update(Job)
            .where(_ours([job_id], owner))
            .values(
                status=outcome.state,
                error=_clip(reason),
                finished_at=now,
                duration_ms=duration_ms,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=outcome.next_attempt_at,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if outcome.state == DEAD:
            _drop_staged(s, job_id)
        return outcome

    if session is not None:
        return _run(session)
    with db.write_session() as s:
        return _run(s)


def _failure_for(
    attempts: int, max_attempts: int, now: datetime, policy: JobPolicy, *, retry: bool
) -> Failure:
    if retry and attempts < max_attempts:
        return Failure(FAILED, now + policy.backoff(attempts))
    return Failure(DEAD, None)


def _dead_reason(error: str, attempts: int) -> str:
    return f"dead after {attempts} attempt{'s' if attempts != 1 else ''}: {error}"


def release(db: Database, job_ids: Sequence[str], *, owner: str, started: bool) -> list[str]:
    """Hand leased jobs back to the queue at once (a graceful stop).

    Args:
        started: whether their run had begun; an unstarted claim gives its attempt back.

    Returns:
        The ids handed back (those still leased to ``owner``).
    """
    now = utcnow()
    values: dict[str, Any] = {
        "status": QUEUED,
        "lease_owner": None,
        "lease_expires_at": None,
        "next_attempt_at": now,
        "dispatched_at": None,
        "updated_at": now,
    }
    if not started:
        values["attempts"] = Job.attempts - 1
    with db.write_session() as session:
        rows = session.execute(
            update(Job)
            .where(_ours(job_ids, owner))
            .values(**values)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).all()
    return [row.id for row in rows]


# --- the reaper ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReapReport:
    """What one reaper pass did: ids retried and ids now dead."""

    retried: list[str]
    dead: list[str]


LEASE_LOST = "the worker stopped heartbeating (killed, out of memory, or its machine went away)"


def reap(db: Database, *, policy: JobPolicy, limit: int = 500) -> ReapReport:
    """Make jobs whose lease expired claimable again, or dead when their attempts ran out."""
    now = utcnow()
    retried: list[str] = []
    dead: list[str] = []
    with db.write_session() as session:
        rows = session.execute(
            select(Job.id, Job.attempts, Job.max_attempts, Job.lease_owner)
            .where(Job.status == RUNNING, Job.lease_expires_at < now)
            .order_by(Job.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            outcome = _failure_for(row.attempts, row.max_attempts, now, policy, retry=True)
            error = f"lease of {row.lease_owner} expired: {LEASE_LOST}"
            if outcome.state == DEAD:
                error = _dead_reason(error, row.attempts)
                dead.append(row.id)
                _drop_staged(session, row.id)
            else:
                retried.append(row.id)
            session.execute(
                update(Job)
                .where(Job.id == row.id, Job.status == RUNNING, Job.lease_expires_at < now)
                .values(
                    status=outcome.state,
                    error=_clip(error),
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    next_attempt_at=outcome.next_attempt_at,
                    dispatched_at=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
    return ReapReport(retried, dead)


# --- reading ------------------------------------------------------------------------------


def cancel(scope: OrgScope, job_id: str, *, actor: Actor) -> Job:
    """Cancel a job that has not finished (a running one's result will be discarded).

    Raises:
        NotFoundError: no such job in this organization.
        ConflictError: the job already finished.
    """
    job = scope.get(Job, job_id)
    if job.status in FINISHED:
        raise ConflictError(f"job {job_id} is already {job.status}")
    job.status = CANCELLED
    job.lease_owner = None
    job.lease_expires_at = None
    job.finished_at = utcnow()
    _drop_staged(scope.session, job.id)
    audit_record(
        scope.session,
        actor,
        "agent.job.cancel",
        organization_id=scope.organization_id,
        target_type="job",
        target_id=job.id,
    )
    return job


def get_job(scope: OrgScope, job_id: str) -> Job:
    """Return one job of the organization.

    Raises:
        NotFoundError: no such job here.
    """
    return scope.get(Job, job_id)


def recent_jobs(scope: OrgScope, installation_id: str, *, limit: int = 20) -> list[Job]:
    """Return an installation's latest jobs, newest first."""
    limit = max(1, min(limit, 500))
    stmt = (
        scope.select(Job, Job.installation_id == installation_id)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    return list(scope.session.scalars(stmt))


def due_for_dispatch(db: Database, *, stale_s: float, limit: int = 1000) -> dict[str, list[str]]:
    """Return due jobs no broker message is in flight for, by installation (Celery sweep).

    A job counts as in flight when a message was sent after it became due and less than
    ``stale_s`` ago; older messages are presumed lost and sent again (a duplicate only
    costs a task that finds nothing to claim).
    """
    now = utcnow()
    stale = now - timedelta(seconds=stale_s)
    with db.write_session() as session:
        rows = session.execute(
            select(Job.id, Job.installation_id)
            .join(AgentInstallation, AgentInstallation.id == Job.installation_id)
            .where(
                _due(now),
                AgentInstallation.status == RUNNABLE_INSTALLATION,
                or_(
                    Job.dispatched_at.is_(None),
                    Job.dispatched_at < Job.next_attempt_at,
                    Job.dispatched_at < stale,
                ),
            )
            .order_by(Job.next_attempt_at)
            .limit(limit)
        ).all()
        ids = [row.id for row in rows]
        if ids:
            mark_dispatched(session, ids, now)
    grouped: dict[str, list[str]] = {}
    for row in rows:
        grouped.setdefault(row.installation_id, []).append(row.id)
    return grouped


def mark_dispatched(session: Session, job_ids: Sequence[str], when: datetime | None = None) -> None:
    """Stamp that a broker message was sent for these jobs."""
    session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)))
        .values(dispatched_at=when or utcnow())
        .execution_options(synchronize_session=False)
    )


def requeue_installation(scope: OrgScope, installation_id: str) -> int:
    """Make an installation's waiting jobs due now and unsent (call it on release/enable).

    A quarantined or disabled installation keeps its queue; once it runs again, its jobs
    are due at once and the broker sweep sends them again (their earlier messages found
    nothing to claim). Returns how many jobs wait.
    """
    now = utcnow()
    ids = list(
        scope.session.scalars(
            select(Job.id).where(
                Job.organization_id == scope.organization_id,
                Job.installation_id == installation_id,
                Job.status.in_(WAITING),
            )
        )
    )
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        scope.session.execute(
            update(Job)
            .where(Job.id.in_(chunk))
            .values(next_attempt_at=now, dispatched_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        for first in range(0, len(chunk), MAX_BATCH):
            _dispatch_after_commit(scope.session, installation_id, chunk[first : first + MAX_BATCH])
    return len(ids)


def next_due_at(db: Database) -> datetime | None:
    """Return when the next waiting job becomes due (for a runner's timed wake-up)."""
    with db.session() as session:
        value: datetime | None = session.scalar(
            select(func.min(Job.next_attempt_at))
            .join(AgentInstallation, AgentInstallation.id == Job.installation_id)
            .where(Job.status.in_(WAITING), AgentInstallation.status == RUNNABLE_INSTALLATION)
        )
    return value


__all__ = [
    "CANCELLED",
    "DEAD",
    "FAILED",
    "FINISHED",
    "MAX_STAGED_BYTES",
    "QUEUED",
    "RUNNING",
    "STATES",
    "SUCCEEDED",
    "Claim",
    "ClaimedJob",
    "Dispatcher",
    "Failure",
    "JobPolicy",
    "JobSpec",
    "QueueStats",
    "ReapReport",
    "cancel",
    "claim",
    "complete",
    "due_for_dispatch",
    "enqueue",
    "fail",
    "get_job",
    "heartbeat",
    "mark_dispatched",
    "next_due_at",
    "queue_stats",
    "reap",
    "recent_jobs",
    "release",
    "requeue_installation",
    "set_dispatcher",
    "staged_input",
]
