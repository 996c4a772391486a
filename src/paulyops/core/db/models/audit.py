"""The append-only, hash-chained audit log and its signed checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import Base, JsonDict, id_column

# The instance-level chain (sign-in, user creation, setup token, key rotation) uses this
# value instead of an organization id, so every row sits in exactly one chain.
INSTANCE_CHAIN = "instance"


class AuditLog(Base):
    """One audit row. ``chain`` is the organization id or ``instance``.

    ``seq`` numbers the rows of a chain from 1 without gaps; ``row_hash`` is the sha256 of
    the row's canonical form including ``prev_hash``. Rows hold actor ids, never personal
    data, so erasing a user keeps every hash valid.
    """

    __tablename__ = "audit_logs"
    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_logs_chain_created", "chain", "created_at"),
    )

    id: Mapped[str] = id_column("aud")
    chain: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(120))
    outcome: Mapped[str] = mapped_column(String(20))
    client_address: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[JsonDict] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement of a chain's head (or of a purged prefix) at a point in time."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[str] = id_column("ackp")
    chain: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(Text)
    details: Mapped[JsonDict] = mapped_column(default=dict)


__all__ = ["INSTANCE_CHAIN", "AuditCheckpoint", "AuditLog"]
