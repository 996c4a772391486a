"""The live processes of an instance and the encryption key each one writes with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import Base, id_column


class LiveProcess(Base):
    """A running server process: where it runs, its key ring and its last heartbeat.

    Instance-level (no organization). A process inserts its row when it is ready, updates
    ``heartbeat_at`` on an interval and whenever it reloads its key ring, and deletes the
    row when it shuts down; a row whose heartbeat is old belongs to a process that died.
    ``key_id`` is the key the process encrypts with (never key material).
    """

    __tablename__ = "live_processes"

    id: Mapped[str] = id_column("proc")
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str] = mapped_column(String(16))
    key_ids: Mapped[list[str]] = mapped_column(default=list)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)


__all__ = ["LiveProcess"]
