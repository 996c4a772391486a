"""Agent packages, per-organization installations, jobs and agent events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import (
    Base,
    JsonDict,
    TimestampMixin,
    encrypted_column,
    id_column,
    utcnow,
)
from paulyops.core.db.models.marketplace import AgentPackage
from paulyops.core.db.models.org import OrgScoped


class AgentInstallation(OrgScoped, TimestampMixin, Base):
    """An agent installed in one organization, with the permissions an admin granted."""

    __tablename__ = "agent_installations"
    __table_args__ = (UniqueConstraint("organization_id", "agent_id"),)

    id: Mapped[str] = id_column("inst")
    agent_id: Mapped[str] = mapped_column(String(120))
    package_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_packages.id", ondelete="SET NULL")
    )
    version: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="enabled")
    # The capabilities an admin granted (services/marketplace/capabilities.py), exactly the
    # ones the current version's manifest requests: granted all or nothing.
    granted_permissions: Mapped[list[str]] = mapped_column(default=list)
    granted_by: Mapped[str | None] = mapped_column(String(60))
    granted_at: Mapped[datetime | None]
    # The secret settings fields (``secret: true`` in the manifest), key-ring encrypted.
    config: Mapped[bytes | None] = encrypted_column()
    # The settings that are not secret, validated against the manifest's settings schema.
    settings: Mapped[JsonDict] = mapped_column(default=dict)
    failure_count: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The sha256 of the current version's archive: its unpack cache folder's name.
    package_sha256: Mapped[str | None] = mapped_column(String(64))
    # The version an update replaced, kept for a rollback (and its grants).
    previous_package_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_packages.id", ondelete="SET NULL")
    )
    previous_version: Mapped[str | None] = mapped_column(String(40))
    previous_sha256: Mapped[str | None] = mapped_column(String(64))
    previous_permissions: Mapped[list[str] | None]
    # Runs of a freshly updated version that must succeed before it is trusted; a failure
    # while this is above zero rolls back to the previous version.
    probation_runs_left: Mapped[int] = mapped_column(default=0)
    # An update that asks for capabilities not granted yet waits here for a new grant.
    pending_package_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_packages.id", ondelete="SET NULL")
    )
    pending_version: Mapped[str | None] = mapped_column(String(40))
    quarantined_reason: Mapped[str | None] = mapped_column(Text)
    quarantined_at: Mapped[datetime | None]
    # The status to return to when an admin releases the quarantine.
    quarantined_from: Mapped[str | None] = mapped_column(String(20))


class Job(OrgScoped, TimestampMixin, Base):
    """One agent run on one input: the durable record and the truth of that run.

    States (``services/agents/jobs.py``): ``queued`` -> ``running`` (a worker holds the
    lease: ``lease_owner`` until ``lease_expires_at``, renewed at every heartbeat) ->
    ``succeeded``; ``running`` -> ``failed`` (claimable again at ``next_attempt_at``) ->
    ``dead`` after ``max_attempts`` claims; ``cancelled``. ``attempts`` counts claims, so
    a job whose run always kills its worker ends ``dead`` too. ``input`` names the file
    (a path, or a staged ``job_inputs`` row) and its metadata; ``dispatched_at`` is when a
    broker message was last sent for it (Celery only).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        # The claim: due jobs of one installation, oldest first.
        Index("ix_jobs_claim", "installation_id", "status", "next_attempt_at"),
        # The reaper: running jobs whose lease ran out.
        Index("ix_jobs_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = id_column("job")
    installation_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_installations.id", ondelete="SET NULL"), index=True
    )
    agent_id: Mapped[str] = mapped_column(String(120), default="")
    kind: Mapped[str] = mapped_column(String(20), default="run")
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    input: Mapped[JsonDict] = mapped_column(default=dict)
    result: Mapped[JsonDict | None]
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(64))


class JobInput(OrgScoped, Base):
    """An input's bytes staged in the database, for workers that share no disk with it.

    Capped at :data:`paulyops.services.agents.jobs.MAX_STAGED_BYTES`; deleted with its job
    once the job is finished (succeeded, dead or cancelled).
    """

    __tablename__ = "job_inputs"

    id: Mapped[str] = id_column("jin")
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobLog(OrgScoped, Base):
    """One line an agent logged (stderr) during a run of a job, stored with the outcome.

    Written by the executor in the outcome's transaction, bounded per job (see
    ``services/agents/execute.py``), the message clipped and its secrets already
    redacted. Kept as long as its job (deleted with it, kept when the agent is
    uninstalled), so a run's logs are readable from any machine.
    """

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_job_seq", "job_id", "seq"),)

    id: Mapped[str] = id_column("jlog")
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="info")
    logger: Mapped[str] = mapped_column(String(100), default="")
    message: Mapped[str] = mapped_column(Text, default="")


class SchedulerLease(Base):
    """Who leads a periodic duty (instance-wide): one row per lease name."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    owner: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AgentEvent(OrgScoped, TimestampMixin, Base):
    """A lifecycle event of an agent installation (install, update, run, quarantine...)."""

    __tablename__ = "agent_events"

    id: Mapped[str] = id_column("agev")
    installation_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_installations.id", ondelete="SET NULL"), index=True
    )
    agent_id: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(40))
    details: Mapped[JsonDict] = mapped_column(default=dict)


__all__ = [
    "AgentEvent",
    "AgentInstallation",
    "AgentPackage",
    "Job",
    "JobInput",
    "JobLog",
    "SchedulerLease",
]
