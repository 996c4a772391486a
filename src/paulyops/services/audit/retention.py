"""Retention purge: delete a chain's oldest rows, leaving a signed purge checkpoint.

The checkpoint records the last purged seq and its ``row_hash``, so
:func:`~paulyops.services.audit.verification.verify` accepts the chain that now starts
right after it. On PostgreSQL the application role cannot delete audit rows: the delete
goes through one privileged function (migration 0002) that refuses without that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import CursorResult, func, select, text
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditCheckpoint, AuditLog
from paulyops.core.errors import ConflictError
from paulyops.core.logging import security_event
from paulyops.services.audit.chain import _lock_chain, _require_aware, format_timestamp
from paulyops.services.audit.checkpoints import SigningKeySource, _sign_checkpoint

# The privileged purge path installed by migration 0002 on PostgreSQL.
PG_PURGE_FUNCTION: Final = "paulyops_audit_purge"
SQLITE_DELETE_TRIGGER: Final = "audit_logs_no_delete"


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What :func:`purge` removed: ``through_seq`` is ``None`` when nothing was old enough."""

    chain: str
    purged: int
    through_seq: int | None
    checkpoint: AuditCheckpoint | None


def _purge_boundary(session: Session, chain: str, before: datetime) -> int | None:
    """Return the last seq of the chain's prefix whose rows are all older than ``before``."""
    first = session.scalar(select(func.min(AuditLog.seq)).where(AuditLog.chain == chain))
    if first is None:
        return None
    young = session.scalar(
        select(func.min(AuditLog.seq)).where(AuditLog.chain == chain, AuditLog.created_at >= before)
    )
    if young is None:
        return session.scalar(select(func.max(AuditLog.seq)).where(AuditLog.chain == chain))
    return young - 1 if young > first else None


def _delete_prefix(session: Session, chain: str, through_seq: int) -> int:
    """Delete rows up to ``through_seq`` through the privileged path of migration 0002."""
    params = {"chain": chain, "seq": through_seq}
    if session.get_bind().dialect.name == "postgresql":
        purged = session.scalar(text(f"SELECT {PG_PURGE_FUNCTION}(:chain, :seq)"), params)
        return int(purged or 0)
    # A trigger on a main table cannot consult a TEMP flag table, so lift the trigger for
    # this one transaction: SQLite DDL is transactional and a failure restores it.
    trigger_sql = session.scalar(
        text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :name"),
        {"name": SQLITE_DELETE_TRIGGER},
    )
    if trigger_sql is not None:
        session.execute(text(f"DROP TRIGGER {SQLITE_DELETE_TRIGGER}"))
    deleted = cast(
        "CursorResult[Any]",
        session.execute(
            text("DELETE FROM audit_logs WHERE chain = :chain AND seq <= :seq"), params
        ),
    )
    if trigger_sql is not None:
        session.execute(text(trigger_sql))
    return deleted.rowcount


def purge(db: Database, key: SigningKeySource, *, chain: str, before: datetime) -> PurgeResult:
    """Delete the prefix of ``chain`` older than ``before`` and sign a purge checkpoint.

    Only a prefix goes: the rows up to (not including) the first row created at or after
    ``before``. The checkpoint records the last purged seq and its ``row_hash``, so
    :func:`verify` accepts the chain that now starts right after it. Checkpoint and delete
    share one transaction; on PostgreSQL the delete goes through the ``SECURITY DEFINER``
    function ``paulyops_audit_purge``, which refuses without that checkpoint.

    Raises:
        SpecValidationError: ``before`` is naive.
        ConfigError: the instance key is missing or malformed.
    """
    cutoff = _require_aware(before, "before")
    with db.write_session() as session:
        _lock_chain(session, chain)
        through = _purge_boundary(session, chain, cutoff)
        if through is None:
            return PurgeResult(chain=chain, purged=0, through_seq=None, checkpoint=None)
        head_hash = session.scalar(
            select(AuditLog.row_hash).where(AuditLog.chain == chain, AuditLog.seq == through)
        )
        if head_hash is None:
            raise ConflictError(
                f"audit chain {chain!r}: seq {through} is missing; run `paulyops audit verify`"
            )
        count = session.scalar(
            select(func.count()).where(AuditLog.chain == chain, AuditLog.seq <= through)
        )
        cp = _sign_checkpoint(
            session,
            key,
            chain=chain,
            kind="purge",
            seq=through,
            head_hash=head_hash,
            details={"before": format_timestamp(cutoff), "rows": count},
        )
        purged = _delete_prefix(session, chain, through)
    security_event("audit.purged", severity="info", chain=chain, through_seq=through, rows=purged)
    return PurgeResult(chain=chain, purged=purged, through_seq=through, checkpoint=cp)


__all__ = ["PG_PURGE_FUNCTION", "SQLITE_DELETE_TRIGGER", "PurgeResult", "purge"]
