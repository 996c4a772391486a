"""The marketplace's tables: stored package archives, trusted publisher keys, revocations,
and each organization's unsigned-package policy.

``agent_packages`` keeps every verified archive's bytes, so every server and worker reads
the same package (never one machine's disk). An organization's upload is that
organization's alone (``organization_id`` set, unique per organization, id and version);
catalog and bundled packages are instance-wide (``organization_id`` NULL, unique per id
and version through a partial index, since NULLs never collide in a unique constraint).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import Base, JsonDict, TimestampMixin, id_column, utcnow
from paulyops.core.db.models.org import OrgScoped

INSTANCE_WIDE_WHERE = "organization_id IS NULL"


class AgentPackage(TimestampMixin, Base):
    """One verified package version and its archive's bytes.

    ``source`` says where it came from: ``upload`` (an organization), ``catalog`` or
    ``bundled``. ``signature_state`` is ``signed``, ``unsigned`` or ``bundled``; a signed
    package names the key (``key_id`` and the full ``key_fingerprint``) it was verified
    with, so a later revocation of that key reaches it.
    """

    __tablename__ = "agent_packages"
    __table_args__ = (
        UniqueConstraint("organization_id", "agent_id", "version"),
        Index(
            "uq_agent_packages_instance_agent_id_version",
            "agent_id",
            "version",
            unique=True,
            sqlite_where=text(INSTANCE_WIDE_WHERE),
            # postgresql_where: added by add_postgresql_options(), see there.
        ),
    )

    id: Mapped[str] = id_column("pkg")
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[str] = mapped_column(String(120), index=True)
    version: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    publisher: Mapped[str] = mapped_column(String(120))
    manifest: Mapped[JsonDict] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64))
    checksums_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    signature_state: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str | None] = mapped_column(String(16))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    uploaded_by: Mapped[str | None] = mapped_column(String(40))
    # Deferred: listings never load megabytes of archive they do not show.
    archive: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class TrustedPublisherKey(TimestampMixin, Base):
    """A publisher's Ed25519 public key the instance trusts for one id namespace (global)."""

    __tablename__ = "trusted_publisher_keys"
    __table_args__ = (UniqueConstraint("fingerprint", "publisher"),)

    id: Mapped[str] = id_column("tkey")
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    public_key: Mapped[str] = mapped_column(Text)
    publisher: Mapped[str] = mapped_column(String(120))
    added_by: Mapped[str | None] = mapped_column(String(40))
    revoked_at: Mapped[datetime | None]


class PackageRevocation(Base):
    """A revoked key (by fingerprint) or package version: nothing signed by it validates."""

    __tablename__ = "package_revocations"

    id: Mapped[str] = id_column("rev")
    kind: Mapped[str] = mapped_column(String(20))  # "key" or "version"
    key_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    key_id: Mapped[str | None] = mapped_column(String(16))
    public_key: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[str | None] = mapped_column(String(120), index=True)
    version: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(500), default="")
    revoked_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MarketplacePolicy(OrgScoped, TimestampMixin, Base):
    """An organization's marketplace policy: whether unsigned packages are allowed."""

    __tablename__ = "marketplace_policies"
    __table_args__ = (UniqueConstraint("organization_id"),)

    id: Mapped[str] = id_column("mpol")
    allow_unsigned: Mapped[bool] = mapped_column(default=False)
    updated_by: Mapped[str | None] = mapped_column(String(40))


def add_postgresql_options() -> None:
    """Give the instance-wide partial index its PostgreSQL ``WHERE`` as well.

    A ``postgresql_where`` in the model would make SQLAlchemy import its whole PostgreSQL
    dialect when the models load (to check the keyword), about 0.1 s at every start on
    SQLite. :class:`~paulyops.core.db.engine.Database` calls this for a PostgreSQL URL,
    before anything compiles the index, so there the model is what it always was.
    """
    name = "uq_agent_packages_instance_agent_id_version"
    table = Base.metadata.tables[AgentPackage.__tablename__]
    (index,) = [i for i in table.indexes if i.name == name]
    options = index.dialect_options["postgresql"]
    if options["where"] is None:
        options["where"] = text(INSTANCE_WIDE_WHERE)


__all__ = [
    "INSTANCE_WIDE_WHERE",
    "AgentPackage",
    "MarketplacePolicy",
    "PackageRevocation",
    "TrustedPublisherKey",
    "add_postgresql_options",
]
