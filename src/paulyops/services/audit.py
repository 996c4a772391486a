"""The append-only, hash-chained audit log: record, checkpoint, verify, export, purge.

Every state-changing service call appends one :class:`AuditLog` row to its organization's
chain, or to :data:`INSTANCE_CHAIN` for events with no organization. Within a chain, rows
are numbered ``seq = 1, 2, 3...`` without gaps, and each row stores

* ``prev_hash``: the ``row_hash`` of the row before it (64 zeros for the first row, or the
  head hash of the signed purge checkpoint once older rows were purged), and
* ``row_hash``: the sha256 of the row's canonical form (:func:`canonical_row`): the JSON
  object of every column except ``row_hash``, keys sorted, no spaces, UTF-8, with
  ``created_at`` as ISO 8601 UTC with microseconds (``2026-05-01T09:30:00.123456Z``).

So editing, deleting, inserting or reordering a row breaks the chain where it happened.
Someone who can write to the database can also recompute every hash after their edit;
what stops that is the **checkpoint**: the instance signs (Ed25519, ``PAULYOPS_INSTANCE_KEY``)
a chain's head ``(seq, row_hash)`` at the end of every provision, on an interval while the
server runs and at its shutdown (:func:`checkpoint_unanchored`), on export and on purge.
:func:`verify` checks both, names the first row where the chain goes wrong, and counts the
rows after the newest checkpoint (``unanchored``: deleting those would go unnoticed).

Concurrency: appends to one chain are serialized, so the chain never forks. On PostgreSQL
:func:`record` takes a transaction-level advisory lock for the chain before reading its
head; on SQLite the caller must hold the write lock from the start of its transaction,
i.e. use :meth:`Database.write_session` (``BEGIN IMMEDIATE``). ``UNIQUE(chain, seq)`` is
the final guard: a writer that skipped the lock fails rather than forking the chain.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO, cast, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, CursorResult, RowMapping, bindparam, func, select, text, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN, AuditCheckpoint, AuditLog, new_id, utcnow
from paulyops.core.errors import (
    ConfigError,
    ConflictError,
    FieldError,
    NotFoundError,
    SpecValidationError,
)
from paulyops.core.logging import get_correlation_id, get_logger, redact_value, security_event
from paulyops.core.settings import Settings, decode_key, key_id

log = get_logger("paulyops.audit")

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
# Signatures cover this prefix too, so a checkpoint signature can never be replayed as a
# signature of anything else the instance key signs.
CHECKPOINT_DOMAIN: Final = b"paulyops-audit-checkpoint-v1\n"
# Advisory locks on PostgreSQL: (namespace, chain hash) in the two-int4 key space, apart
# from the migration lock's single bigint key.
PG_LOCK_NAMESPACE: Final = 0x41554454  # "AUDT"
# The privileged purge path installed by migration 0002 on PostgreSQL.
PG_PURGE_FUNCTION: Final = "paulyops_audit_purge"
SQLITE_DELETE_TRIGGER: Final = "audit_logs_no_delete"
# Rows fetched per round trip while verifying or exporting.
STREAM_BATCH: Final = 1000
# How far :func:`verify` looks for the seq a moved row was written with.
MAX_RENUMBER_SEARCH: Final = 16

CheckpointKind = Literal["head", "export", "purge"]
ExportFormat = Literal["jsonl", "csv"]
ProblemKind = Literal[
    "edited", "missing", "inserted", "reordered", "truncated", "rewritten", "bad_checkpoint"
]
SigningKeySource = Settings | Ed25519PrivateKey | str | bytes
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
    return row


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


# --- keys and checkpoints -------------------------------------------------------------------


def signing_key(source: SigningKeySource) -> Ed25519PrivateKey:
    """Return the instance's Ed25519 signing key from settings, its base64url seed or bytes.

    Raises:
        ConfigError: ``PAULYOPS_INSTANCE_KEY`` is missing or not base64url of 32 bytes.
    """
    if isinstance(source, Ed25519PrivateKey):
        return source
    if isinstance(source, Settings):
        if source.instance_key is None:
            raise ConfigError(
                "PAULYOPS_INSTANCE_KEY: not set; audit checkpoints need the instance key "
                "(run `paulyops setup` or restore .env.local)"
            )
        source = source.instance_key.get_secret_value()
    if isinstance(source, str):
        try:
            source = decode_key(source)
        except ValueError as err:
            raise ConfigError(f"PAULYOPS_INSTANCE_KEY: {err}") from None
    if len(source) != 32:
        raise ConfigError(f"PAULYOPS_INSTANCE_KEY: expected 32 bytes, got {len(source)}")
    return Ed25519PrivateKey.from_private_bytes(source)


def verifying_key(source: SigningKeySource | Ed25519PublicKey) -> Ed25519PublicKey:
    """Return the public key that checks checkpoints signed by ``source``."""
    if isinstance(source, Ed25519PublicKey):
        return source
    return signing_key(source).public_key()


def signer_key_id(key: Ed25519PublicKey) -> str:
    """Return a checkpoint's ``key_id``: the first 8 hex chars of the public key's sha256.

    The public key, not the seed, so anyone holding only the public key can match it.
    """
    return key_id(key.public_bytes_raw())


def checkpoint_message(cp: AuditCheckpoint) -> bytes:
    """Return the bytes a checkpoint signature covers."""
    doc = {
        "id": cp.id,
        "chain": cp.chain,
        "kind": cp.kind,
        "seq": cp.seq,
        "head_hash": cp.head_hash,
        "created_at": format_timestamp(cp.created_at),
        "key_id": cp.key_id,
        "details": cp.details,
    }
    return CHECKPOINT_DOMAIN + _dumps(doc).encode("utf-8")


def _sign_checkpoint(
    session: Session,
    key: SigningKeySource,
    *,
    chain: str,
    kind: CheckpointKind,
    seq: int,
    head_hash: str,
    details: Mapping[str, Any] | None = None,
) -> AuditCheckpoint:
    private = signing_key(key)
    cp = AuditCheckpoint(
        id=new_id("ackp"),
        chain=chain,
        kind=kind,
        seq=seq,
        head_hash=head_hash,
        created_at=utcnow(),
        key_id=signer_key_id(private.public_key()),
        details=_json_safe(details, "details"),
    )
    signature = private.sign(checkpoint_message(cp))
    cp.signature = base64.urlsafe_b64encode(signature).decode("ascii").rstrip("=")
    session.add(cp)
    session.flush()
    return cp


def write_checkpoint(
    session: Session, key: SigningKeySource, chain: str, *, kind: CheckpointKind = "head"
) -> AuditCheckpoint:
    """Sign the current head of ``chain`` in the caller's (write) transaction.

    Raises:
        NotFoundError: the chain has no rows (and was never purged).
        ConfigError: the instance key is missing or malformed.
    """
    if kind not in ("head", "export"):
        raise SpecValidationError(
            f"checkpoint.kind: expected 'head' or 'export', got {kind!r}",
            [FieldError("kind", "purge checkpoints are written only by purge()")],
        )
    seq, head_hash = _read_head(session, chain)
    if seq == 0:
        raise NotFoundError(f"audit chain {chain!r} has no rows")
    cp = _sign_checkpoint(session, key, chain=chain, kind=kind, seq=seq, head_hash=head_hash)
    log.info("audit_checkpoint", chain=chain, kind=kind, seq=seq, key_id=cp.key_id)
    return cp


def checkpoint(
    db: Database, key: SigningKeySource, chain: str, kind: CheckpointKind = "head"
) -> AuditCheckpoint:
    """Sign the current head of ``chain`` in its own transaction and return the checkpoint."""
    with db.write_session() as session:
        return write_checkpoint(session, key, chain, kind=kind)


def checkpoint_key(settings: Settings) -> Ed25519PrivateKey | None:
    """Return the key that signs checkpoints, or ``None`` when the instance has none."""
    if settings.instance_key is None:
        return None
    return signing_key(settings)


def anchor_chains(session: Session, key: SigningKeySource, chains: Sequence[str]) -> int:
    """Sign the head of each of ``chains`` in the caller's write transaction.

    Used at the end of a provision, so the rows it wrote are anchored the moment they
    commit. Chains without rows are skipped. Returns the number of checkpoints written.
    """
    written = 0
    for chain in dict.fromkeys(chains):
        try:
            write_checkpoint(session, key, chain)
        except NotFoundError:
            continue
        written += 1
    return written


_HEADS_SQL: Final = select(_LOGS.c.chain, func.max(_LOGS.c.seq)).group_by(_LOGS.c.chain)
_SIGNED_SQL: Final = select(_CHECKPOINTS.c.chain, func.max(_CHECKPOINTS.c.seq)).group_by(
    _CHECKPOINTS.c.chain
)


def unanchored_chains(session: Session) -> list[str]:
    """Return the chains whose newest row is past their newest checkpoint."""
    heads = {chain: int(seq) for chain, seq in session.execute(_HEADS_SQL)}
    signed = {chain: int(seq) for chain, seq in session.execute(_SIGNED_SQL)}
    return [chain for chain, seq in heads.items() if seq > signed.get(chain, 0)]


def checkpoint_unanchored(db: Database, key: SigningKeySource) -> list[AuditCheckpoint]:
    """Sign the head of every chain that has rows after its newest checkpoint.

    What the server runs on an interval and at shutdown: a chain with no new rows gets
    no new checkpoint, so an idle instance writes nothing.
    """
    with db.session() as session:
        chains = unanchored_chains(session)
    written = []
    for chain in chains:
        with db.write_session() as session:
            if chain in unanchored_chains(session):  # another process may have signed it
                written.append(write_checkpoint(session, key, chain))
    return written


def list_chains(session: Session) -> list[str]:
    """Return every chain with rows or checkpoints, the instance chain first."""
    names = session.scalars(
        union(select(AuditLog.chain).distinct(), select(AuditCheckpoint.chain).distinct())
    ).all()
    return sorted(set(names), key=lambda name: (name != INSTANCE_CHAIN, name))


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing wrong with a chain.

    Args:
        seq: the seq of the row (or, for ``missing`` and ``truncated``, the first seq lost).
        id: the row's (or the bad checkpoint's) id; ``None`` when the row is gone.
        kind: edited, missing, inserted, reordered, truncated, rewritten, bad_checkpoint.
        message: one sentence for an operator, naming the row.
    """

    seq: int
    id: str | None
    kind: ProblemKind
    message: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verification result of one chain."""

    chain: str
    status: Literal["ok", "broken"]
    rows_checked: int
    first_seq: int | None
    last_seq: int | None
    checkpoints_checked: int
    problem: Problem | None = None
    unanchored: int = 0


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verification result of every chain checked."""

    chains: list[ChainReport]

    @property
    def is_ok(self) -> bool:
        """Whether every chain verified."""
        return all(report.status == "ok" for report in self.chains)

    @property
    def broken(self) -> list[ChainReport]:
        """The chains with a problem."""
        return [report for report in self.chains if report.status != "ok"]

    @property
    def unanchored(self) -> int:
        """Rows of every chain written after its newest checkpoint."""
        return sum(report.unanchored for report in self.chains)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _checkpoint_problem(
    cp: AuditCheckpoint, trusted: Mapping[str, Ed25519PublicKey]
) -> Problem | None:
    key = trusted.get(cp.key_id)
    where = f"checkpoint {cp.id} ({cp.kind}, seq {cp.seq}, {_when(cp.created_at)})"
    if key is None:
        return Problem(cp.seq, cp.id, "bad_checkpoint", f"{where} is signed by unknown key")
    try:
        signature = base64.urlsafe_b64decode(cp.signature + "=" * (-len(cp.signature) % 4))
        key.verify(signature, checkpoint_message(cp))
    except (InvalidSignature, ValueError):
        return Problem(cp.seq, cp.id, "bad_checkpoint", f"{where}: signature does not verify")
    return None


class _ChainCheck:
    """One chain's verification: a single ordered pass plus look-ups when it breaks."""

    def __init__(self, session: Session, chain: str, checkpoints: Sequence[AuditCheckpoint]):
        self.session = session
        self.chain = chain
        purges = [cp for cp in checkpoints if cp.kind == "purge"]
        base = max(purges, key=lambda cp: cp.seq, default=None)
        self.base_seq = base.seq if base else 0
        self.base_hash = base.head_hash if base else GENESIS_HASH
        self.anchors: dict[int, list[AuditCheckpoint]] = {}
        for cp in checkpoints:
            if cp.kind != "purge" and cp.seq > self.base_seq:
                self.anchors.setdefault(cp.seq, []).append(cp)
        self.rows_checked = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None

    @property
    def unanchored(self) -> int:
        """Rows after the newest signed head (or purge point): deletable without a trace."""
        last = self.last_seq if self.last_seq is not None else self.base_seq
        return max(0, last - max(self.base_seq, max(self.anchors, default=0)))

    def run(self) -> Problem | None:
        stmt = (
            select(*_ROW_COLUMNS)
            .where(AuditLog.chain == self.chain)
            .order_by(AuditLog.seq)
            .execution_options(yield_per=STREAM_BATCH)
        )
        result = self.session.execute(stmt).mappings()
        rows = iter(result)
        expected_seq, expected_prev = self.base_seq + 1, self.base_hash
        previous: RowMapping | None = None
        good_anchor = self.base_seq
        try:
            for row in rows:
                seq = row["seq"]
                if self.first_seq is None:
                    self.first_seq = seq
                if seq <= self.base_seq:
                    return Problem(
                        seq,
                        row["id"],
                        "inserted",
                        f"row seq {seq} ({row['id']}) exists although the signed purge "
                        f"checkpoint says rows up to seq {self.base_seq} were purged",
                    )
                if seq > expected_seq:
                    return self._missing(expected_seq, row)
                actual = compute_row_hash(row)
                if actual != row["row_hash"] or row["prev_hash"] != expected_prev:
                    following = next(rows, None)
                    result.close()
                    return self._diagnose(row, actual, expected_prev, previous, following)
                self.rows_checked += 1
                self.last_seq = seq
                for cp in self.anchors.get(seq, []):
                    if cp.head_hash != row["row_hash"]:
                        result.close()
                        return self._anchor_broken(cp, row, good_anchor)
                    good_anchor = seq
                previous, expected_seq, expected_prev = row, seq + 1, row["row_hash"]
        finally:
            result.close()
        return self._truncated_at_end()

    # -- diagnoses --------------------------------------------------------------------------
    def _missing(self, expected: int, row: RowMapping) -> Problem:
        gone = (
            f"row seq {expected}"
            if row["seq"] == expected + 1
            else (f"rows seq {expected}-{row['seq'] - 1}")
        )
        return Problem(
            expected,
            None,
            "missing",
            f"{gone} missing (deleted): the chain jumps to seq {row['seq']} ({row['id']})",
        )

    def _seq_of_hash(self, row_hash: str) -> int | None:
        if row_hash == self.base_hash:
            return self.base_seq
        return self.session.scalar(
            select(AuditLog.seq)
            .where(AuditLog.chain == self.chain, AuditLog.row_hash == row_hash)
            .limit(1)
        )

    def _id_at(self, seq: int) -> str | None:
        return self.session.scalar(
            select(AuditLog.id).where(AuditLog.chain == self.chain, AuditLog.seq == seq)
        )

    def _written_as(self, row: RowMapping, seq: int) -> bool:
        return compute_row_hash({**row, "seq": seq}) == str(row["row_hash"])

    def _inserted(self, first: int, row: RowMapping, linked: int) -> Problem:
        inserted_id = self._id_at(first)
        return Problem(
            first,
            inserted_id,
            "inserted",
            f"row seq {first} ({inserted_id}) was inserted: row {row['id']} now at "
            f"seq {row['seq']} was chained to seq {linked}",
        )

    def _diagnose(
        self,
        row: RowMapping,
        actual: str,
        expected_prev: str,
        previous: RowMapping | None,
        following: RowMapping | None,
    ) -> Problem:
        seq, row_id = row["seq"], row["id"]
        if following is not None and following["prev_hash"] == expected_prev:
            return Problem(
                seq,
                row_id,
                "inserted",
                f"row seq {seq} ({row_id}) was inserted: the next row links straight to "
                f"seq {seq - 1}",
            )
        linked = self._seq_of_hash(row["prev_hash"])
        if actual != row["row_hash"]:
            return self._diagnose_hash(row, linked)
        if linked is not None and linked < seq - 1:
            return self._inserted(linked + 1, row, linked)
        if linked is not None:
            return Problem(
                seq,
                row_id,
                "reordered",
                f"row seq {seq} ({row_id}) is chained to seq {linked}: rows were reordered",
            )
        if (
            previous is not None
            and following is not None
            and following["prev_hash"] == row["row_hash"]
        ):
            return Problem(
                previous["seq"],
                previous["id"],
                "edited",
                f"row seq {previous['seq']} ({previous['id']}) was changed and re-hashed: "
                f"seq {seq} is chained to a hash no row has",
            )
        return Problem(
            seq,
            row_id,
            "inserted",
            f"row seq {seq} ({row_id}) is not chained to seq {seq - 1}: it was forged or "
            "replaced outside the audit service",
        )

    def _diagnose_hash(self, row: RowMapping, linked: int | None) -> Problem:
        seq, row_id = row["seq"], row["id"]
        if linked is not None and linked + 1 != seq and self._written_as(row, linked + 1):
            written = linked + 1
            if written < seq:
                return self._inserted(written, row, linked)
            return Problem(
                seq,
                row_id,
                "reordered",
                f"row seq {seq} ({row_id}) was written as seq {written}: rows were reordered",
            )
        if linked is None:
            for written in range(seq + 1, seq + MAX_RENUMBER_SEARCH + 1):
                if self._written_as(row, written):
                    return Problem(
                        seq,
                        None,
                        "missing",
                        f"row seq {seq} missing (deleted) and later rows renumbered: "
                        f"row {row_id} now at seq {seq} was written as seq {written}",
                    )
        return Problem(
            seq,
            row_id,
            "edited",
            f"row seq {seq} ({row_id}) was edited: its content no longer matches its hash",
        )

    def _anchor_broken(self, cp: AuditCheckpoint, row: RowMapping, good_anchor: int) -> Problem:
        first_new = self.session.scalar(
            select(func.min(AuditLog.seq)).where(
                AuditLog.chain == self.chain,
                AuditLog.seq > good_anchor,
                AuditLog.seq <= cp.seq,
                AuditLog.created_at > cp.created_at,
            )
        )
        if first_new is not None:
            return Problem(
                first_new,
                self._id_at(first_new),
                "truncated",
                f"truncated after seq {first_new - 1}: the checkpoint of {_when(cp.created_at)} "
                f"signed seq {cp.seq}, but rows from seq {first_new} on were written after it",
            )
        return Problem(
            cp.seq,
            row["id"],
            "rewritten",
            f"row seq {cp.seq} ({row['id']}) does not match the checkpoint of "
            f"{_when(cp.created_at)}: rows after seq {good_anchor} were changed and re-hashed",
        )

    def _truncated_at_end(self) -> Problem | None:
        top = max(self.anchors, default=0)
        last = self.last_seq if self.last_seq is not None else self.base_seq
        if top <= last:
            return None
        cp = self.anchors[top][0]
        return Problem(
            last + 1,
            None,
            "truncated",
            f"truncated after seq {last}: the checkpoint of {_when(cp.created_at)} says the "
            f"chain reached seq {top}",
        )


def _verify_chain(
    session: Session, chain: str, trusted: Mapping[str, Ed25519PublicKey]
) -> ChainReport:
    checkpoints = session.scalars(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.chain == chain)
        .order_by(AuditCheckpoint.seq, AuditCheckpoint.created_at)
    ).all()
    problems: list[Problem] = []
    valid: list[AuditCheckpoint] = []
    for cp in checkpoints:
        problem = _checkpoint_problem(cp, trusted)
        if problem is None:
            valid.append(cp)
        else:
            problems.append(problem)
    check = _ChainCheck(session, chain, valid)
    walked = check.run()
    if walked is not None:
        problems.append(walked)
    first = min(problems, key=lambda p: p.seq, default=None)
    return ChainReport(
        chain=chain,
        status="ok" if first is None else "broken",
        rows_checked=check.rows_checked,
        first_seq=check.first_seq,
        last_seq=check.last_seq,
        checkpoints_checked=len(valid),
        problem=first,
        unanchored=check.unanchored,
    )


def verify(
    db: Database,
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    chain: str | None = None,
) -> VerifyReport:
    """Walk each chain in seq order and report the first problem of each.

    Recomputes every row hash and ``prev_hash`` link, checks every checkpoint's signature,
    that each signed head still matches its row, and that the chain still reaches the
    newest signed head. A chain whose older rows were purged starts after its newest valid
    purge checkpoint, linked to that checkpoint's head hash.

    Args:
        db: the database.
        public_key: the instance's public key (or several, e.g. before and after a rotation).
        chain: one chain (an organization id or ``instance``); default every chain.
    """
    keys = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    trusted = {signer_key_id(key): key for key in keys}
    with db.session() as session:
        if db.dialect == "postgresql":
            # One snapshot for checkpoints and rows, so a purge running meanwhile is not
            # mistaken for deleted rows.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        chains = [chain] if chain is not None else list_chains(session)
        return VerifyReport([_verify_chain(session, name, trusted) for name in chains])


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What :func:`export` wrote: the row count and the checkpoint that anchors each chain."""

    rows: int
    checkpoints: list[AuditCheckpoint]


def export_record(values: RowValues) -> dict[str, Any]:
    """Return a row as exported: :data:`EXPORT_COLUMNS`, ``created_at`` as in the hash."""
    doc = {name: values[name] for name in EXPORT_COLUMNS}
    doc["created_at"] = format_timestamp(values["created_at"])
    return doc


def _require_aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise SpecValidationError(
            f"{field}: expected an aware UTC datetime, got {value.isoformat()!r}",
            [FieldError(field, "expected an aware UTC datetime")],
        )
    return value


def export(
    db: Database,
    key: SigningKeySource,
    *,
    chain: str | None = None,
    since: datetime | None = None,
    fmt: ExportFormat = "jsonl",
    out: TextIO,
) -> ExportResult:
    """Sign a checkpoint of each chain, then stream its rows up to that head to ``out``.

    ``jsonl`` writes one JSON object per row; ``csv`` a header and one line per row, with
    ``changes`` as JSON. Either way each record holds :data:`EXPORT_COLUMNS`, so anyone can
    recompute ``row_hash`` from the other fields and follow ``prev_hash``.

    Args:
        db: the database.
        key: the instance key (settings or seed) that signs the checkpoints.
        chain: one chain; default every chain.
        since: only rows created at or after this (aware) time.
        fmt: ``jsonl`` or ``csv``.
        out: a text stream (open CSV files with ``newline=""``).

    Raises:
        NotFoundError: ``chain`` was given and has no rows.
        SpecValidationError: unknown ``fmt`` or a naive ``since``.
    """
    if fmt not in get_args(ExportFormat):
        raise SpecValidationError(
            f"format: expected 'jsonl' or 'csv', got {fmt!r}",
            [FieldError("format", "unknown export format", allowed=list(get_args(ExportFormat)))],
        )
    if since is not None:
        since = _require_aware(since, "since")
    anchors = _checkpoint_chains(db, key, chain, kind="export")
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    count = 0
    with db.session() as session:
        for cp in anchors:
            stmt = (
                select(*_ROW_COLUMNS)
                .where(AuditLog.chain == cp.chain, AuditLog.seq <= cp.seq)
                .order_by(AuditLog.seq)
                .execution_options(yield_per=STREAM_BATCH)
            )
            if since is not None:
                stmt = stmt.where(AuditLog.created_at >= since)
            for row in session.execute(stmt).mappings():
                doc = export_record(row)
                if writer is None:
                    out.write(_dumps(doc) + "\n")
                else:
                    doc["changes"] = _dumps(doc["changes"])
                    writer.writerow(["" if doc[c] is None else doc[c] for c in EXPORT_COLUMNS])
                count += 1
    return ExportResult(rows=count, checkpoints=anchors)


def _checkpoint_chains(
    db: Database, key: SigningKeySource, chain: str | None, *, kind: CheckpointKind
) -> list[AuditCheckpoint]:
    if chain is not None:
        return [checkpoint(db, key, chain, kind=kind)]
    with db.session() as session:
        chains = list_chains(session)
    anchors = []
    for name in chains:
        try:
            anchors.append(checkpoint(db, key, name, kind=kind))
        except NotFoundError:
            continue  # only checkpoints left, no rows: nothing to sign or export
    return anchors


def checkpoint_all(
    db: Database, key: SigningKeySource, chain: str | None = None
) -> list[AuditCheckpoint]:
    """Sign a ``head`` checkpoint of ``chain``, or of every chain with rows."""
    return _checkpoint_chains(db, key, chain, kind="head")


# --- retention purge ------------------------------------------------------------------------


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


__all__ = [
    "CHECKPOINT_DOMAIN",
    "EXPORT_COLUMNS",
    "GENESIS_HASH",
    "HASHED_COLUMNS",
    "ChainReport",
    "CheckpointKind",
    "ExportFormat",
    "ExportResult",
    "Problem",
    "ProblemKind",
    "PurgeResult",
    "SigningKeySource",
    "VerifyReport",
    "anchor_chains",
    "append",
    "canonical_row",
    "checkpoint",
    "checkpoint_all",
    "checkpoint_key",
    "checkpoint_message",
    "checkpoint_unanchored",
    "compute_row_hash",
    "export",
    "export_record",
    "format_timestamp",
    "list_chains",
    "purge",
    "record",
    "signer_key_id",
    "signing_key",
    "unanchored_chains",
    "verify",
    "verifying_key",
    "write_checkpoint",
]
