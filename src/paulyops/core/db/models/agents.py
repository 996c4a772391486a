"""Agent packages, per-organization installations, jobs and agent events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import (
    Base,
    JsonDict,
    TimestampMixin,
    encrypted_column,
    id_column,
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
    granted_permissions: Mapped[list[str]] = mapped_column(default=list)
    config: Mapped[bytes | None] = encrypted_column()
    failure_count: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class Job(OrgScoped, TimestampMixin, Base):
    """One agent run on some input."""

    __tablename__ = "jobs"

    id: Mapped[str] = id_column("job")
    installation_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_installations.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    input: Mapped[JsonDict] = mapped_column(default=dict)
    result: Mapped[JsonDict | None]
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    next_attempt_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(64))


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


__all__ = ["AgentEvent", "AgentInstallation", "AgentPackage", "Job"]
