"""Verification: walk a chain, recompute every hash and link, check every checkpoint.

:func:`verify` names the first row where a chain goes wrong (edited, missing, inserted,
reordered, truncated, rewritten, or a checkpoint that does not verify) and counts the rows
after the newest checkpoint (``unanchored``: deleting those would go unnoticed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import RowMapping, func, select
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditCheckpoint, AuditLog
from paulyops.core.security.signatures import verify_encoded
from paulyops.services.audit.chain import (
    _ROW_COLUMNS,
    GENESIS_HASH,
    STREAM_BATCH,
    compute_row_hash,
    list_chains,
)
from paulyops.services.audit.checkpoints import checkpoint_message, signer_key_id

# How far :func:`verify` looks for the seq a moved row was written with.
MAX_RENUMBER_SEARCH: Final = 16

ProblemKind = Literal[
    "edited", "missing", "inserted", "reordered", "truncated", "rewritten", "bad_checkpoint"
]


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
    if not verify_encoded(key, cp.signature, checkpoint_message(cp)):
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


__all__ = ["ChainReport", "Problem", "ProblemKind", "VerifyReport", "verify"]
