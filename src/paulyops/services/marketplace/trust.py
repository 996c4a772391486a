"""The instance trust store: publisher keys bound to id namespaces, and revocations.

A trusted key validates packages of its namespace only (a key trusted for ``acme``
validates ``acme.*``). A revocation names a key or one package version; from then on
nothing signed by that key, and no package of that version, validates — whatever list
still names the key (a catalog's, an older ``--trust`` file). A revoked key is never
trusted again. Every change here is instance-level: its audit row goes to the instance
chain, and a revocation is also a security event.

:func:`trust_inputs` is what the validator is given wherever a package comes in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import PackageRevocation, TrustedPublisherKey, utcnow
from paulyops.core.errors import ConflictError, FieldError, NotFoundError
from paulyops.core.logging import security_event
from paulyops.core.security.signatures import public_key_id, public_key_pem
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.commands import Command, invalid
from paulyops.services.marketplace.manifest import AGENT_ID, RESERVED_PREFIX, parse_version
from paulyops.services.marketplace.validate import (
    Revocations,
    RevokedKey,
    TrustedKey,
    key_fingerprint,
)

PUBLISHER_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
KEY_REF_PATTERN = r"^[0-9a-f]{8,64}$"
MAX_PUBLIC_KEY = 4096


class TrustKey(Command):
    """Trust a publisher's public key for the namespace ``publisher.*``."""

    publisher: str = Field(
        pattern=PUBLISHER_PATTERN,
        description="the namespace the key signs for, e.g. 'acme' (for acme.*)",
    )
    public_key: str = Field(
        min_length=1,
        max_length=MAX_PUBLIC_KEY,
        description="the key file's text: PEM, as `paulyops package keygen` writes it",
    )


class RevokeTrust(Command):
    """Revoke a key (by key id or fingerprint) or one package version (id and version)."""

    key: str | None = Field(
        None,
        pattern=KEY_REF_PATTERN,
        description="the key id (8 hex characters) or its full sha256 fingerprint",
    )
    agent_id: str | None = Field(None, max_length=120, description="e.g. 'acme.reader'")
    version: str | None = Field(None, max_length=40, description="e.g. '1.2.0'")
    reason: str = Field("", max_length=500, description="why, for the audit trail")

    @model_validator(mode="after")
    def _one_target(self) -> RevokeTrust:
        by_version = self.agent_id is not None or self.version is not None
        if (self.key is None) == (not by_version):
            raise ValueError("name either a key, or a package id and version")
        if by_version and (self.agent_id is None or self.version is None):
            raise ValueError("a version revocation needs both the package id and the version")
        return self


@dataclass(frozen=True, slots=True)
class TrustedKeyView:
    """A trusted key as listed (never more than public data)."""

    id: str
    key_id: str
    fingerprint: str
    publisher: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def namespace(self) -> str:
        """The ids the key validates, e.g. ``acme.*``."""
        return f"{self.publisher}.*"


@dataclass(frozen=True, slots=True)
class RevocationView:
    """A revocation as listed."""

    id: str
    kind: Literal["key", "version"]
    key_id: str | None
    fingerprint: str | None
    agent_id: str | None
    version: str | None
    reason: str
    created_at: datetime

    @property
    def target(self) -> str:
        """What was revoked, in words: ``key 2054279f`` or ``acme.reader 1.2.0``."""
        if self.kind == "key":
            return f"key {self.key_id}"
        return f"{self.agent_id} {self.version}"


@dataclass(frozen=True, slots=True)
class TrustListing:
    """The whole trust store."""

    keys: list[TrustedKeyView]
    revocations: list[RevocationView]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read an Ed25519 public key from PEM text (``#`` comment lines are ignored).

    Raises:
        CommandError: not an Ed25519 public key (field ``publicKey``).
    """
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    try:
        key = serialization.load_pem_public_key("\n".join(lines).strip().encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise invalid(
            [FieldError("publicKey", "not an Ed25519 public key in PEM form (a .pub file)")]
        )
    return key


def _key_view(row: TrustedPublisherKey) -> TrustedKeyView:
    return TrustedKeyView(
        row.id, row.key_id, row.fingerprint, row.publisher, row.created_at, row.revoked_at
    )


def _revocation_view(row: PackageRevocation) -> RevocationView:
    kind: Literal["key", "version"] = "key" if row.kind == "key" else "version"
    return RevocationView(
        row.id,
        kind,
        row.key_id,
        row.key_fingerprint,
        row.agent_id,
        row.version,
        row.reason,
        row.created_at,
    )


def _revoked_fingerprints(session: Session) -> set[str]:
    rows = session.scalars(
        select(PackageRevocation.key_fingerprint).where(PackageRevocation.kind == "key")
    )
    return {fp for fp in rows if fp}


def trust_key(session: Session, command: TrustKey, *, actor: Actor) -> TrustedKeyView:
    """Trust a publisher key for its namespace; write the instance audit row.

    Raises:
        CommandError: the key is not an Ed25519 public key, or the namespace is reserved.
        ConflictError: the key was revoked, or is already trusted for this namespace.
    """
    key = parse_public_key(command.public_key)
    if command.publisher + "." == RESERVED_PREFIX:
        raise invalid(
            [
                FieldError(
                    "publisher",
                    f"the namespace {RESERVED_PREFIX}* is reserved for the agents bundled "
                    "with PaulyOps, which are trusted as part of it",
                )
            ]
        )
    fingerprint = key_fingerprint(key)
    kid = public_key_id(key)
    if fingerprint in _revoked_fingerprints(session):
        raise ConflictError(f"key {kid} was revoked; a revoked key is never trusted again")
    existing = session.scalars(
        select(TrustedPublisherKey).where(
            TrustedPublisherKey.fingerprint == fingerprint,
            TrustedPublisherKey.publisher == command.publisher,
        )
    ).first()
    if existing is not None:
        raise ConflictError(f"key {kid} is already trusted for {command.publisher}.*")
    row = TrustedPublisherKey(
        key_id=kid,
        fingerprint=fingerprint,
        public_key=public_key_pem(key).decode("ascii"),
        publisher=command.publisher,
        added_by=actor.id,
    )
    session.add(row)
    session.flush()
    actors.record(
        session,
        actor,
        "marketplace.key_trusted",
        organization_id=None,
        target_type="publisher_key",
        target_id=row.id,
        changes={"keyId": kid, "fingerprint": fingerprint, "publisher": command.publisher},
    )
    security_event("marketplace.key_trusted", severity="info", key_id=kid)
    return _key_view(row)


def _revoke_key(session: Session, command: RevokeTrust) -> PackageRevocation:
    ref = command.key or ""
    rows = list(
        session.scalars(
            select(TrustedPublisherKey).where(TrustedPublisherKey.fingerprint.startswith(ref))
        )
    )
    fingerprints = {row.fingerprint for row in rows}
    if not rows:
        raise NotFoundError(f"key: no key {ref} in the trust store (see `trust list`)")
    if len(fingerprints) > 1:
        raise ConflictError(
            f"key: {ref} matches {len(fingerprints)} keys; give the full fingerprint"
        )
    fingerprint = fingerprints.pop()
    if fingerprint in _revoked_fingerprints(session):
        raise ConflictError(f"key {rows[0].key_id} is revoked already")
    now = utcnow()
    for row in rows:
        row.revoked_at = now
    revocation = PackageRevocation(
        kind="key",
        key_fingerprint=fingerprint,
        key_id=rows[0].key_id,
        public_key=rows[0].public_key,
        reason=command.reason,
    )
    return revocation


def _revoke_version(session: Session, command: RevokeTrust) -> PackageRevocation:
    agent_id, version = command.agent_id or "", command.version or ""
    errors = []
    if not AGENT_ID.fullmatch(agent_id):
        errors.append(FieldError("agentId", f"expected an id like 'acme.reader', got {agent_id!r}"))
    try:
        parse_version(version)
    except ValueError as err:
        errors.append(FieldError("version", str(err)))
    if errors:
        raise invalid(errors)
    exists = session.scalars(
        select(PackageRevocation.id).where(
            PackageRevocation.kind == "version",
            PackageRevocation.agent_id == agent_id,
            PackageRevocation.version == version,
        )
    ).first()
    if exists is not None:
        raise ConflictError(f"{agent_id} {version} is revoked already")
    return PackageRevocation(
        kind="version", agent_id=agent_id, version=version, reason=command.reason
    )


def revoke(session: Session, command: RevokeTrust, *, actor: Actor) -> RevocationView:
    """Revoke a key or a package version; write the instance audit row.

    Raises:
        NotFoundError: no such key in the trust store.
        ConflictError: already revoked, or a key id matching several keys.
        CommandError: a malformed package id or version.
    """
    if command.key is not None:
        row = _revoke_key(session, command)
    else:
        row = _revoke_version(session, command)
    row.revoked_by = actor.id
    session.add(row)
    session.flush()
    # Imported here: the agents' lifecycle builds on this module (trust_inputs).
    from paulyops.services.agents.integrity import quarantine_revoked

    quarantined = quarantine_revoked(session, row, actor=actor)
    view = _revocation_view(row)
    actors.record(
        session,
        actor,
        f"marketplace.{row.kind}_revoked",
        organization_id=None,
        target_type="revocation",
        target_id=row.id,
        changes={
            "keyId": row.key_id,
            "fingerprint": row.key_fingerprint,
            "agentId": row.agent_id,
            "version": row.version,
            "reason": row.reason,
            "quarantinedInstallations": len(quarantined),
        },
    )
    security_event("marketplace.revoked", target=view.target, quarantined=len(quarantined))
    return view


def list_trust(session: Session) -> TrustListing:
    """Return every trusted key (revoked ones too, marked) and every revocation."""
    keys = session.scalars(
        select(TrustedPublisherKey).order_by(
            TrustedPublisherKey.publisher, TrustedPublisherKey.created_at
        )
    )
    revocations = session.scalars(select(PackageRevocation).order_by(PackageRevocation.created_at))
    return TrustListing(
        keys=[_key_view(row) for row in keys],
        revocations=[_revocation_view(row) for row in revocations],
    )


def trust_inputs(session: Session) -> tuple[list[TrustedKey], Revocations]:
    """Return the validator's trust input: the live trusted keys and the revocations."""
    revocations = list(session.scalars(select(PackageRevocation)))
    revoked_keys = [
        RevokedKey(key=parse_public_key(row.public_key), reason=row.reason)
        for row in revocations
        if row.kind == "key" and row.public_key
    ]
    gone = {row.key_fingerprint for row in revocations if row.kind == "key"}
    trusted = [
        TrustedKey(key=parse_public_key(row.public_key), publisher=row.publisher)
        for row in session.scalars(
            select(TrustedPublisherKey).where(TrustedPublisherKey.revoked_at.is_(None))
        )
        if row.fingerprint not in gone
    ]
    versions = {
        (row.agent_id, row.version): row.reason
        for row in revocations
        if row.kind == "version" and row.agent_id and row.version
    }
    return trusted, Revocations(keys=revoked_keys, versions=versions)


def is_key_ref(value: str) -> bool:
    """Whether ``value`` looks like a key id or fingerprint (8 to 64 lowercase hex)."""
    return re.fullmatch(KEY_REF_PATTERN, value) is not None


__all__ = [
    "RevocationView",
    "RevokeTrust",
    "TrustKey",
    "TrustListing",
    "TrustedKeyView",
    "is_key_ref",
    "list_trust",
    "parse_public_key",
    "revoke",
    "trust_inputs",
    "trust_key",
]
