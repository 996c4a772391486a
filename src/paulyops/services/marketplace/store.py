"""Stored package archives and each organization's unsigned-package policy.

Every verified archive is kept in the database (``agent_packages``), so every server and
worker reads the same bytes; nothing depends on one machine's disk. An organization's
upload is that organization's alone; catalog and bundled packages are instance-wide.

An upload is read once into memory, capped at the validator's archive limit while it is
read (never trusting a declared size), and the very bytes that were validated are stored:
a rejected upload stores nothing and writes nothing to disk. Unsigned packages are
accepted only where the organization's policy allows them (off by default, a "developer
mode"); turning it on, and every unsigned package accepted under it, is a security event
with its own audit row.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import BinaryIO, Literal

from pydantic import Field
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paulyops.core.db.models import AgentPackage, MarketplacePolicy
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, FieldError, NotFoundError
from paulyops.core.logging import security_event
from paulyops.core.security.sanitize import safe_filename
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.commands import Command
from paulyops.services.marketplace.archive import Limits
from paulyops.services.marketplace.errors import PackageError
from paulyops.services.marketplace.trust import trust_inputs
from paulyops.services.marketplace.validate import (
    AvailableAgent,
    Report,
    Runtime,
    validate_package,
)

Source = Literal["upload", "catalog", "bundled"]
READ_CHUNK = 256 * 1024
# What a multipart body may add around the archive itself (boundaries, headers, the
# CSRF field): the web layer's body limit is the archive limit plus this.
MULTIPART_OVERHEAD = 64 * 1024


class UploadPackage(Command):
    """Upload one package archive for the organization (the bytes travel beside it)."""

    file_name: str = Field(
        "package.pauly", max_length=255, description="the name the file had on the client"
    )


class SetUnsignedPolicy(Command):
    """Allow or refuse unsigned packages in the organization (a developer mode)."""

    allow_unsigned: bool = Field(
        description="accept packages without a signature; every use is a security event"
    )


@dataclass(frozen=True, slots=True)
class StoredPackage:
    """A stored package version (never its bytes)."""

    id: str
    agent_id: str
    version: str
    organization_id: str | None
    source: str
    sha256: str
    size: int
    signature_state: str
    key_id: str | None
    created: bool


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The organization's marketplace policy."""

    allow_unsigned: bool


def max_upload_bytes(limits: Limits | None = None) -> int:
    """Return the largest HTTP body an upload may have (archive limit plus multipart)."""
    return (limits or Limits()).max_archive_bytes + MULTIPART_OVERHEAD


def _too_large(size: int, limit: int) -> PackageError:
    message = f"the package is larger than the limit of {limit} bytes"
    if size:
        message = f"the package is {size} bytes or more; the limit is {limit} bytes"
    return PackageError(message, [FieldError("file", message)])


def read_capped(stream: BinaryIO, limit: int) -> bytes:
    """Read ``stream`` to its end, stopping as soon as it passes ``limit`` bytes.

    Raises:
        PackageError: more than ``limit`` bytes (field ``file``).
    """
    out = bytearray()
    while chunk := stream.read(READ_CHUNK):
        out += chunk
        if len(out) > limit:
            raise _too_large(len(out), limit)
    return bytes(out)


def unsigned_allowed(scope: OrgScope) -> bool:
    """Whether the organization accepts unsigned packages (off unless turned on)."""
    row = scope.first(MarketplacePolicy)
    return bool(row and row.allow_unsigned)


def set_unsigned_policy(scope: OrgScope, command: SetUnsignedPolicy, *, actor: Actor) -> PolicyView:
    """Turn the organization's unsigned-package mode on or off; audit and log it."""
    row = scope.first(MarketplacePolicy)
    before = bool(row and row.allow_unsigned)
    if row is None:
        row = scope.add(MarketplacePolicy(allow_unsigned=False))
    row.allow_unsigned = command.allow_unsigned
    row.updated_by = actor.id
    scope.session.flush()
    actors.record(
        scope.session,
        actor,
        "marketplace.unsigned_policy_changed",
        organization_id=scope.organization_id,
        target_type="marketplace_policy",
        target_id=row.id,
        changes={"allowUnsigned": {"from": before, "to": command.allow_unsigned}},
    )
    security_event(
        "marketplace.unsigned_policy_changed",
        severity="warning" if command.allow_unsigned else "info",
        organization_id=scope.organization_id,
        allow_unsigned=command.allow_unsigned,
    )
    return PolicyView(command.allow_unsigned)


def _visible(organization_id: str | None) -> ColumnElement[bool]:
    if organization_id is None:
        return AgentPackage.organization_id.is_(None)
    return or_(
        AgentPackage.organization_id.is_(None), AgentPackage.organization_id == organization_id
    )


def available_agents(session: Session, organization_id: str | None) -> list[AvailableAgent]:
    """Return the stored agent versions an organization's dependencies may resolve to."""
    rows = session.execute(
        select(AgentPackage.agent_id, AgentPackage.version, AgentPackage.manifest).where(
            _visible(organization_id)
        )
    )
    return [
        AvailableAgent(agent_id, version, dict(manifest.get("dependencies", {}).get("agents", {})))
        for agent_id, version, manifest in rows
    ]


def _view(row: AgentPackage, *, created: bool) -> StoredPackage:
    return StoredPackage(
        row.id,
        row.agent_id,
        row.version,
        row.organization_id,
        row.source,
        row.sha256,
        row.size,
        row.signature_state,
        row.key_id,
        created,
    )


def store_package(
    session: Session,
    data: bytes,
    report: Report,
    *,
    organization_id: str | None,
    source: Source,
    uploaded_by: str | None,
) -> StoredPackage:
    """Keep a package that passed every check; return the stored row (or the same one).

    Storing the identical archive again changes nothing. Catalog and bundled packages
    (``organization_id`` None) are instance-wide.

    Raises:
        ConflictError: the same id and version is stored with other bytes, in the
            organization or instance-wide.
        PackageError: the report has failures (nothing is stored).
    """
    report.raise_for_failure()
    manifest = report.manifest
    assert manifest is not None
    assert report.checksums_sha256 is not None
    sha256 = hashlib.sha256(data).hexdigest()
    clash = session.scalars(
        select(AgentPackage).where(
            _visible(organization_id),
            AgentPackage.agent_id == manifest.id,
            AgentPackage.version == manifest.version,
        )
    ).first()
    if clash is not None:
        if clash.sha256 == sha256 and clash.organization_id == organization_id:
            return _view(clash, created=False)
        where = "in this organization" if clash.organization_id else "in the marketplace"
        raise ConflictError(
            f"{manifest.id} {manifest.version} is already {where} with other contents; "
            "publish a new version instead"
        )
    state = "bundled" if source == "bundled" else "signed" if report.signed_by else "unsigned"
    row = AgentPackage(
        organization_id=organization_id,
        agent_id=manifest.id,
        version=manifest.version,
        name=manifest.name,
        publisher=manifest.publisher,
        manifest=manifest.model_dump(mode="json", by_alias=True),
        source=source,
        sha256=sha256,
        checksums_sha256=report.checksums_sha256,
        size=len(data),
        signature_state=state,
        key_id=report.signed_by,
        key_fingerprint=report.signed_fingerprint,
        uploaded_by=uploaded_by,
        archive=data,
    )
    try:
        # A concurrent upload of the same id and version may commit between the clash
        # check above and this insert; the unique index then decides, in a savepoint.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return _stored_meanwhile(session, organization_id, manifest.id, manifest.version, sha256)
    return _view(row, created=True)


def _stored_meanwhile(
    session: Session, organization_id: str | None, agent_id: str, version: str, sha256: str
) -> StoredPackage:
    """Answer for an insert a concurrent upload of the same id and version won."""
    won = session.scalars(
        select(AgentPackage).where(
            AgentPackage.organization_id.is_(None)
            if organization_id is None
            else AgentPackage.organization_id == organization_id,
            AgentPackage.agent_id == agent_id,
            AgentPackage.version == version,
        )
    ).first()
    if won is not None and won.sha256 == sha256:
        return _view(won, created=False)
    raise ConflictError(
        f"{agent_id} {version} was stored meanwhile with other contents; "
        "publish a new version instead"
    )


def upload_package(
    scope: OrgScope,
    command: UploadPackage,
    archive: BinaryIO,
    *,
    actor: Actor,
    limits: Limits | None = None,
    runtime: Runtime | None = None,
) -> tuple[StoredPackage, Report]:
    """Validate an uploaded package against the instance trust store and keep it.

    Args:
        scope: the uploading organization.
        command: what the client said about the file.
        archive: the uploaded bytes (read once, capped at the archive limit).
        actor: who uploads.
        limits: the validator's archive limits (default :class:`Limits`).
        runtime: what the package must be compatible with (default: this process).

    Raises:
        PackageError: over the size limit, or a check failed; ``errors`` holds one entry
            per failed check (nothing is stored).
        ConflictError: the same id and version exists with other contents.
    """
    limits = limits or Limits()
    data = read_capped(archive, limits.max_archive_bytes)
    session = scope.session
    trusted, revoked = trust_inputs(session)
    allow = unsigned_allowed(scope)
    report = validate_package(
        io.BytesIO(data),
        trusted=trusted,
        allow_unsigned=allow,
        limits=limits,
        runtime=runtime,
        available=available_agents(session, scope.organization_id),
        revoked=revoked,
    )
    if not report.is_ok:
        security_event(
            "marketplace.package_rejected",
            severity="info",
            organization_id=scope.organization_id,
            check=report.failures()[0].name,
        )
    stored = store_package(
        session,
        data,
        report,
        organization_id=scope.organization_id,
        source="upload",
        uploaded_by=actor.id,
    )
    if not stored.created:
        return stored, report
    name = safe_filename(command.file_name, default="package.pauly")
    actors.record(
        session,
        actor,
        "marketplace.package_uploaded",
        organization_id=scope.organization_id,
        target_type="agent_package",
        target_id=stored.id,
        changes={
            "agentId": stored.agent_id,
            "version": stored.version,
            "sha256": stored.sha256,
            "size": stored.size,
            "signature": stored.signature_state,
            "keyId": stored.key_id,
            "fileName": name,
        },
    )
    if stored.signature_state == "unsigned":
        actors.record(
            session,
            actor,
            "marketplace.unsigned_package_accepted",
            organization_id=scope.organization_id,
            target_type="agent_package",
            target_id=stored.id,
            changes={"agentId": stored.agent_id, "version": stored.version},
        )
        security_event(
            "marketplace.unsigned_package_accepted",
            organization_id=scope.organization_id,
            agent_id=stored.agent_id,
            version=stored.version,
        )
    return stored, report


def load_archive(session: Session, package_id: str, *, organization_id: str | None) -> bytes:
    """Return a stored archive's bytes, if the organization may see it.

    Raises:
        NotFoundError: no such package, or one of another organization.
    """
    data = session.scalars(
        select(AgentPackage.archive).where(
            AgentPackage.id == package_id,
            _visible(organization_id),
        )
    ).first()
    if data is None:
        raise NotFoundError(f"package {package_id!r} not found")
    return data


__all__ = [
    "MULTIPART_OVERHEAD",
    "PolicyView",
    "SetUnsignedPolicy",
    "StoredPackage",
    "UploadPackage",
    "available_agents",
    "load_archive",
    "max_upload_bytes",
    "read_capped",
    "set_unsigned_policy",
    "store_package",
    "unsigned_allowed",
    "upload_package",
]
