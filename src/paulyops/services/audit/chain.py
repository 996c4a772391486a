"""The chain itself: a row's canonical form and hash, and appending rows to a chain.

Within a chain, rows are numbered ``seq = 1, 2, 3...`` without gaps, and each row stores

* ``prev_hash``: the ``row_hash`` of the row before it (64 zeros for the first row, or the
  head hash of the signed purge checkpoint once older rows were purged), and
* ``row_hash``: the sha256 of the row's canonical form (:func:`canonical_row`): the JSON
  object of every column except ``row_hash``, keys sorted, no spaces, UTF-8, with
  ``created_at`` as ISO 8601 UTC with microseconds (``2026-05-01T09:30:00.123456Z``).

Concurrency: appends to one chain are serialized, so the chain never forks. On PostgreSQL
:func:`record` takes a transaction-level advisory lock for the chain before reading its
head; on SQLite the caller must hold the write lock from the start of its transaction,
i.e. use :meth:`Database.write_session` (``BEGIN IMMEDIATE``). ``UNIQUE(chain, seq)`` is
the final guard: a writer that skipped the lock fails rather than forking the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, RowMapping, bindparam, event, select, text, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paulyops.core import metrics
from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN, AuditCheckpoint, AuditLog, new_id, utcnow
from paulyops.core.errors import ConflictError, FieldError, SpecValidationError
from paulyops.core.logging import get_correlation_id, redact_value

GENESIS_HASH: Final = "0" * 64
# The columns a row hash covers, in the model's order. Fixed rather than derived from the
# table: a column added later must not change the hash of every row written before it.
HASHED_COLUMNS: Final = (
    "id",
    "chain",
    "seq",
    "created_at",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "client_address",
    "correlation_id",
    "changes",
    "prev_hash",
)
EXPORT_COLUMNS: Final = (*HASHED_COLUMNS, "row_hash")
# Advisory locks on PostgreSQL: (namespace, chain hash) in the two-int4 key space, apart
# from the migration lock's single bigint key.
PG_LOCK_NAMESPACE: Final = 0x41554454  # "AUDT"
# Rows fetched per round trip while verifying or exporting.
STREAM_BATCH: Final = 1000

# A row's values: a dict built from a model, or a row streamed from a query.
RowValues = Mapping[str, Any] | RowMapping

_LIMITS: Final = {
    "chain": 40,
    "actor_type": 20,
    "actor_id": 40,
    "action": 80,
    "target_type": 40,
    "target_id": 120,
    "outcome": 20,
    "client_address": 64,
}
_ROW_COLUMNS: Final = tuple(getattr(AuditLog, name) for name in EXPORT_COLUMNS)

# Appending is the hot path: statements built once, run on the connection (not the ORM).
_LOGS: Final = AuditLog.__table__
_CHECKPOINTS: Final = AuditCheckpoint.__table__
_HEAD_SQL: Final = (
    select(_LOGS.c.seq, _LOGS.c.row_hash)
    .where(_LOGS.c.chain == bindparam("chain"))
    .order_by(_LOGS.c.seq.desc())
    .limit(1)
)
_PURGED_HEAD_SQL: Final = (
    select(_CHECKPOINTS.c.seq, _CHECKPOINTS.c.head_hash)
    .where(_CHECKPOINTS.c.chain == bindparam("chain"), _CHECKPOINTS.c.kind == "purge")
    .order_by(_CHECKPOINTS.c.seq.desc())
    .limit(1)
)
_LOCK_SQL: Final = text("SELECT pg_advisory_xact_lock(:ns, :key)")
_PG_LOCKED_HEAD_SQL: Final = text(
    "SELECT seq, row_hash FROM paulyops_audit_lock_head(:ns, :key, :chain)"
)


# --- canonical form -------------------------------------------------------------------------


def format_timestamp(value: datetime) -> str:
    """Return ``value`` as ISO 8601 UTC with microseconds, e.g. ``2026-05-01T09:30:00.000001Z``.

    Raises:
        ValueError: ``value`` is naive.
    """
    if value.tzinfo is None:
        raise ValueError("naive datetime given; use an aware UTC datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_row(values: RowValues) -> bytes:
    """Return the bytes a row hash covers: its :data:`HASHED_COLUMNS` as canonical JSON."""
    doc = {name: values[name] for name in HASHED_COLUMNS}
    doc["created_at"] = format_timestamp(values["created_at"])
    return _dumps(doc).encode("utf-8")


def compute_row_hash(values: RowValues) -> str:
    """Return the sha256 (hex) of :func:`canonical_row`."""
    return hashlib.sha256(canonical_row(values)).hexdigest()


def _row_values(row: AuditLog) -> dict[str, Any]:
    return {name: getattr(row, name) for name in EXPORT_COLUMNS}


def _json_safe(value: Mapping[str, Any] | None, field: str) -> dict[str, Any]:
    """Return ``value`` as it reads back from a JSON column, so hashes survive the trip."""
    try:
        loaded = json.loads(json.dumps(value or {}, default=str, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise SpecValidationError(
            f"{field}: expected a JSON object", [FieldError(field, f"not JSON: {err}")]
        ) from err
    if not isinstance(loaded, dict):
        raise SpecValidationError(
            f"{field}: expected a JSON object, got {type(value).__name__}",
            [FieldError(field, "expected a JSON object")],
        )
    return loaded


def _check_lengths(values: Mapping[str, str | None]) -> None:
    errors = [
        FieldError(name, f"expected at most {limit} characters, got {len(value)}")
        for name, limit in _LIMITS.items()
        if (value := values.get(name)) is not None and len(value) > limit
    ]
    if not values.get("chain"):
        errors.append(FieldError("chain", "expected an organization id or 'instance', got ''"))
    if errors:
        raise SpecValidationError(f"audit.{errors[0].field}: {errors[0].message}", errors)


# --- appending ------------------------------------------------------------------------------


def _chain_lock_key(chain: str) -> int:
    return int.from_bytes(hashlib.sha256(chain.encode("utf-8")).digest()[:4], "big", signed=True)


def _lock_chain(session: Session, chain: str) -> None:
    """Serialize writers of ``chain`` until the transaction ends (PostgreSQL only)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_SQL, {"ns": PG_LOCK_NAMESPACE, "key": _chain_lock_key(chain)})


def _read_head(session: Session, chain: str) -> tuple[int, str]:
    """Return ``(seq, row_hash)`` of the chain's newest row, or where a purge left it."""
    conn = session.connection()
    head = conn.execute(_HEAD_SQL, {"chain": chain}).first()
    if head is not None:
        return head.seq, head.row_hash
    return _purged_head(conn, chain)


def _locked_head(session: Session, chain: str) -> tuple[int, str]:
    """Take the chain lock (PostgreSQL) and return the head, in one round trip.

    The lock and the read must be separate statements: under READ COMMITTED a statement's
    snapshot predates any lock it takes, so a read in the same statement could miss the
    row the previous lock holder just committed. ``paulyops_audit_lock_head`` (migration
    0002) runs both inside one volatile function, where each statement has a fresh snapshot.
    """
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return _read_head(session, chain)
    params = {"ns": PG_LOCK_NAMESPACE, "key": _chain_lock_key(chain), "chain": chain}
    head = conn.execute(_PG_LOCKED_HEAD_SQL, params).one()
    if head.seq is not None:
        return head.seq, head.row_hash
    return _purged_head(conn, chain)


def _purged_head(conn: Connection, chain: str) -> tuple[int, str]:
    purged = conn.execute(_PURGED_HEAD_SQL, {"chain": chain}).first()
    if purged is not None:
        return purged.seq, purged.head_hash
    return 0, GENESIS_HASH


def record(
    session: Session,
    *,
    chain: str,
    action: str,
    actor_type: str,
    actor_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "success",
    client_address: str | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Append one row to ``chain`` in the caller's transaction and return it (flushed).

    On SQLite the session must come from :meth:`Database.write_session`, so the write lock
    is held from BEGIN; otherwise a concurrent append makes this transaction fail with
    "database is locked" (never a forked chain). On PostgreSQL the chain's advisory lock
    is held until the caller commits: keep the transaction short.

    Args:
        session: the caller's open session.
        chain: the organization id, or :data:`INSTANCE_CHAIN`.
        action: a stable name such as ``organization.provisioned``.
        actor_type: ``user``, ``api_token``, ``system``...
        actor_id: the actor's id (never a name or an email).
        target_type: what was acted on, e.g. ``agent_installation``.
        target_id: its id.
        outcome: ``success``, ``failure`` or ``denied``.
        client_address: the client's address, as the trusted proxies report it.
        changes: what changed; secret values are redacted before hashing and storing.

    Raises:
        SpecValidationError: a value is too long, or ``changes`` is not a JSON object.
        ConflictError: another writer took this seq (it skipped the chain lock).
    """
    correlation_id = get_correlation_id()
    _check_lengths(
        {
            "chain": chain,
            "actor_type": actor_type,
            "actor_id": actor_id,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "outcome": outcome,
            "client_address": client_address,
        }
    )
    clean_changes = _json_safe(redact_value(dict(changes or {})), "changes")
    head_seq, head_hash = _locked_head(session, chain)
    row = AuditLog(
        id=new_id("aud"),
        chain=chain,
        seq=head_seq + 1,
        created_at=utcnow(),
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        client_address=client_address,
        # Correlation ids may come from a request header; the column holds 64 characters.
        correlation_id=correlation_id[:64] if correlation_id else None,
        changes=clean_changes,
        prev_hash=head_hash,
    )
    row.row_hash = compute_row_hash(_row_values(row))
    session.add(row)
    try:
        session.flush()
    except IntegrityError as err:
        if not _is_seq_clash(err):
            raise  # another pending object of the caller failed, not the audit row
        raise ConflictError(
            f"audit chain {chain!r}: seq {row.seq} was taken by a concurrent writer "
            "that did not hold the chain lock"
        ) from err
    _note_pending(session, chain)
    return row


# Appends are counted for Prometheus when their transaction commits, not when flushed: a
# transaction rolled back (a failed use case, a test's fixture) appended nothing.
_PENDING_KEY: Final = "paulyops.audit_pending"


def _note_pending(session: Session, chain: str) -> None:
    kind = "instance" if chain == INSTANCE_CHAIN else "organization"
    pending: dict[str, int] = session.info.setdefault(_PENDING_KEY, {})
    pending[kind] = pending.get(kind, 0) + 1


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    if pending:
        for kind, amount in pending.items():
            metrics.count_audit_appends(kind, amount)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def _is_seq_clash(err: IntegrityError) -> bool:
    message = str(err.orig)
    # PostgreSQL names the constraint; SQLite names the columns.
    return "uq_audit_logs_chain_seq" in message or "audit_logs.chain, audit_logs.seq" in message


def append(
    db: Database,
    *,
    chain: str,
    action: str,
    actor_type: str,
    actor_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "success",
    client_address: str | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Append one row in its own write transaction; see :func:`record` for the arguments."""
    with db.write_session() as session:
        return record(
            session,
            chain=chain,
            action=action,
            actor_type=actor_type,
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            outcome=outcome,
            client_address=client_address,
            changes=changes,
        )


def list_chains(session: Session) -> list[str]:
    """Return every chain with rows or checkpoints, the instance chain first."""
    names = session.scalars(
        union(select(AuditLog.chain).distinct(), select(AuditCheckpoint.chain).distinct())
    ).all()
    return sorted(set(names), key=lambda name: (name != INSTANCE_CHAIN, name))


def _require_aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise SpecValidationError(
            f"{field}: expected an aware UTC datetime, got {value.isoformat()!r}",
            [FieldError(field, "expected an aware UTC datetime")],
        )
    return value


__all__ = [
    "EXPORT_COLUMNS",
    "GENESIS_HASH",
    "HASHED_COLUMNS",
    "PG_LOCK_NAMESPACE",
    "STREAM_BATCH",
    "RowValues",
    "append",
    "canonical_row",
    "compute_row_hash",
    "format_timestamp",
    "list_chains",
    "record",
]
