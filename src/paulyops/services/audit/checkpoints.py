"""Checkpoints: the instance signs a chain's head, so a rewritten chain cannot pass.

Someone who can write to the database can also recompute every hash after their edit;
what stops that is the **checkpoint**: the instance signs (Ed25519, ``PAULYOPS_INSTANCE_KEY``)
a chain's head ``(seq, row_hash)`` at the end of every provision, on an interval while the
server runs and at its shutdown (:func:`checkpoint_unanchored`), on export and on purge.
A signature covers :data:`CHECKPOINT_DOMAIN` followed by :func:`checkpoint_message`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditCheckpoint, new_id, utcnow
from paulyops.core.errors import FieldError, NotFoundError, SpecValidationError
from paulyops.core.logging import get_logger
from paulyops.core.security.signatures import (
    KeySource,
    encode_signature,
    instance_signing_key,
    instance_verifying_key,
    public_key_id,
    sign,
)
from paulyops.core.settings import Settings
from paulyops.services.audit.chain import (
    _CHECKPOINTS,
    _LOGS,
    _dumps,
    _json_safe,
    _read_head,
    format_timestamp,
    list_chains,
)

log = get_logger("paulyops.audit")

# Signatures cover this prefix too, so a checkpoint signature can never be replayed as a
# signature of anything else the instance key signs.
CHECKPOINT_DOMAIN: Final = b"paulyops-audit-checkpoint-v1\n"

CheckpointKind = Literal["head", "export", "purge"]
SigningKeySource = KeySource


# The instance key's helpers live with every other Ed25519 helper (packages use them too).
signing_key = instance_signing_key
verifying_key = instance_verifying_key
signer_key_id = public_key_id


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
    cp.signature = encode_signature(sign(private, checkpoint_message(cp)))
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


__all__ = [
    "CHECKPOINT_DOMAIN",
    "CheckpointKind",
    "SigningKeySource",
    "anchor_chains",
    "checkpoint",
    "checkpoint_all",
    "checkpoint_key",
    "checkpoint_message",
    "checkpoint_unanchored",
    "signer_key_id",
    "signing_key",
    "unanchored_chains",
    "verifying_key",
    "write_checkpoint",
]
