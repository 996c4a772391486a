"""Organizations, people and roles, and the per-organization configuration rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import Base, JsonDict, TimestampMixin, encrypted_column, id_column


class OrgScoped:
    """Marker for rows that belong to one organization.

    Such rows are only reachable through :class:`paulyops.core.db.scoped.OrgScope`,
    which always filters on ``organization_id``.
    """

    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )


class Organization(TimestampMixin, Base):
    """A tenant: one business using the instance."""

    __tablename__ = "organizations"

    id: Mapped[str] = id_column("org")
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    industry: Mapped[str] = mapped_column(String(40))
    compliance_level: Mapped[str] = mapped_column(String(20))
    size: Mapped[str] = mapped_column(String(20))
    rbac_model: Mapped[str] = mapped_column(String(20))
    spec_hash: Mapped[str] = mapped_column(String(64))
    settings: Mapped[JsonDict] = mapped_column(default=dict)


class User(TimestampMixin, Base):
    """A person who can sign in; global, joined to organizations by memberships."""

    __tablename__ = "users"

    id: Mapped[str] = id_column("usr")
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None]
    is_platform_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    totp_secret: Mapped[bytes | None] = encrypted_column()
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    recovery_codes: Mapped[list[str]] = mapped_column(default=list)
    last_sign_in_at: Mapped[datetime | None]


class Role(OrgScoped, TimestampMixin, Base):
    """A named set of permissions in one organization; ``parent`` forms hierarchies."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = id_column("role")
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(String(400), default="")
    permissions: Mapped[list[str]] = mapped_column(default=list)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("roles.id", ondelete="SET NULL"))
    is_builtin: Mapped[bool] = mapped_column(default=False)
    rank: Mapped[int] = mapped_column(default=0)


class Membership(OrgScoped, TimestampMixin, Base):
    """A user's place in an organization, with one role."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)

    id: Mapped[str] = id_column("mem")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"))


class Delegation(OrgScoped, TimestampMixin, Base):
    """A time-boxed grant of a subset of one member's permissions to another (enterprise)."""

    __tablename__ = "delegations"

    id: Mapped[str] = id_column("dlg")
    from_user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    to_user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    permissions: Mapped[list[str]] = mapped_column(default=list)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class StorageConfig(OrgScoped, TimestampMixin, Base):
    """One storage connection of an organization (local, S3, Google Drive, Dropbox)."""

    __tablename__ = "storage_configs"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = id_column("stor")
    name: Mapped[str] = mapped_column(String(80))
    provider: Mapped[str] = mapped_column(String(20))
    settings: Mapped[JsonDict] = mapped_column(default=dict)
    credentials: Mapped[bytes | None] = encrypted_column()
    backup_strategy: Mapped[str] = mapped_column(String(20))
    retention_days: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    last_tested_at: Mapped[datetime | None]


class SecurityConfig(OrgScoped, TimestampMixin, Base):
    """An organization's security and compliance settings (one row per organization)."""

    __tablename__ = "security_configs"
    __table_args__ = (UniqueConstraint("organization_id"),)

    id: Mapped[str] = id_column("sec")
    # The roles model is the organization's (Organization.rbac_model), stored once.
    audit_logging: Mapped[bool]
    audit_retention_days: Mapped[int]
    encryption_level: Mapped[str] = mapped_column(String(20))
    require_admin_2fa: Mapped[bool] = mapped_column(default=False)
    session_idle_minutes: Mapped[int] = mapped_column(default=60)
    session_absolute_hours: Mapped[int] = mapped_column(default=12)
    allow_unsigned_agents: Mapped[bool] = mapped_column(default=False)
    settings: Mapped[JsonDict] = mapped_column(default=dict)


class AgentConfig(OrgScoped, TimestampMixin, Base):
    """An organization's agent preferences (one row per organization)."""

    __tablename__ = "agent_configs"
    __table_args__ = (UniqueConstraint("organization_id"),)

    id: Mapped[str] = id_column("agcfg")
    default_agents: Mapped[list[str]] = mapped_column(default=list)
    auto_routing: Mapped[bool] = mapped_column(default=True)
    confidence_threshold: Mapped[float] = mapped_column(default=0.9)
    monitoring_enabled: Mapped[bool] = mapped_column(default=True)
    routing_hints: Mapped[JsonDict] = mapped_column(default=dict)


__all__ = [
    "AgentConfig",
    "Delegation",
    "Membership",
    "OrgScoped",
    "Organization",
    "Role",
    "SecurityConfig",
    "StorageConfig",
    "User",
]
