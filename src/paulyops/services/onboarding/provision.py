"""``provision(spec)``: the one writer of a new organization.

Everything happens in one transaction — the organization, its roles, the owner's account
and membership, storage connections (credentials encrypted), security and agent settings,
and the audit rows — so a failure at any step leaves nothing behind.

The organization's identity is its normalized slug. Provisioning the same spec again
returns the existing organization and changes nothing; a different spec under a slug that
is taken is a :class:`ConflictError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import (
    INSTANCE_CHAIN,
    AgentConfig,
    AgentInstallation,
    AuditLog,
    Membership,
    Organization,
    Role,
    SecurityConfig,
    StorageConfig,
    User,
    utcnow,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    ConflictError,
    FieldError,
    PaulyOpsError,
    SpecValidationError,
)
from paulyops.core.logging import (
    business_metric,
    correlation_scope,
    get_correlation_id,
    get_logger,
    security_event,
    timed,
)
from paulyops.core.security.fields import write_secret_json
from paulyops.core.settings import Settings
from paulyops.services import actor as actors
from paulyops.services import audit
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, links, rbac, tokens
from paulyops.services.auth.permissions import OWNER, role_templates
from paulyops.services.onboarding.firstrun import consume_setup_tokens
from paulyops.services.onboarding.spec import SECRET_FIELDS, SetupSpec
from paulyops.services.onboarding.templates import load_catalog

log = get_logger(__name__)

# A fixed advisory-lock key for provisioning ("PROVISIO" in ASCII).
PROVISION_LOCK_KEY = 0x50524F564953494F


@dataclass
class ProvisionResult:
    """The brief's response, plus what the front door needs to show once."""

    success: bool
    organization_id: str
    message: str
    next_steps: list[str]
    created: bool
    owner_user_id: str | None = None
    owner_password_link: str | None = field(default=None, repr=False)
    details: dict[str, Any] = field(default_factory=dict)

    def as_wire(self) -> dict[str, Any]:
        """Return the JSON response body (camelCase)."""
        body: dict[str, Any] = {
            "success": self.success,
            "organizationId": self.organization_id,
            "message": self.message,
            "nextSteps": self.next_steps,
            "created": self.created,
        }
        if self.owner_password_link:
            body["ownerPasswordLink"] = self.owner_password_link
        return body


@dataclass(frozen=True)
class ProvisionContext:
    """What provisioning needs from the instance.

    Args:
        actor: who asked (user, token, setup token holder, CLI).
        jwt_secret: not read by provision any more (one-time links are opaque tokens
            stored as hashes, see :mod:`paulyops.services.auth.links`).
        public_url: the address links point at.
        owner_user_id: an existing user who becomes the owner (a platform admin creating
            another organization), instead of ``spec.owner``.
        setup_token_id: the setup token to consume on success.
        owner_password_hash: a password hash for a new owner (the web wizard asks for the
            password first); without it the owner gets a one-time password link.
        data_dir: where the setup token file lives (deleted when consumed).
        redis_configured: whether REDIS_URL is set (for next steps).
        checkpoint_key: signs a checkpoint of the chains the provision wrote, in its
            transaction, so deleting its rows later is detected (every front door passes
            :func:`~paulyops.services.audit.checkpoint_key`).
    """

    actor: Actor
    jwt_secret: str = field(repr=False)
    public_url: str
    data_dir: Path
    owner_user_id: str | None = None
    setup_token_id: str | None = None
    redis_configured: bool = False
    owner_password_hash: str | None = field(default=None, repr=False)
    checkpoint_key: Ed25519PrivateKey | None = field(default=None, repr=False)

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        actor: Actor,
        owner_user_id: str | None = None,
        setup_token_id: str | None = None,
        owner_password_hash: str | None = None,
    ) -> ProvisionContext:
        """Return the context for provisioning on the instance ``settings`` describe.

        Fills the links' address, the data directory, whether Redis is configured and
        the key that signs the provision's audit checkpoint, so no front door reads them
        (or the audit service) itself.
        """
        secret = settings.jwt_secret
        return cls(
            actor=actor,
            jwt_secret=secret.get_secret_value() if secret else "",
            public_url=settings.effective_public_url,
            data_dir=settings.data_dir,
            owner_user_id=owner_user_id,
            setup_token_id=setup_token_id,
            redis_configured=bool(settings.redis_url),
            owner_password_hash=owner_password_hash,
            checkpoint_key=audit.checkpoint_key(settings),
        )


def provision(db: Database, spec: SetupSpec, ctx: ProvisionContext) -> ProvisionResult:
    """Create the organization described by ``spec`` (or return it if it exists).

    Raises:
        ConflictError: the slug is taken by an organization set up differently.
        SpecValidationError: no owner was named where one is required.
    """
    spec_hash = spec.canonical_hash()
    # Every audit row of one provision shares a correlation id, also outside a request.
    with correlation_scope(get_correlation_id()), timed("provision", slug=spec.slug):
        existing = _existing(db, spec, spec_hash, ctx)
        if existing is not None:
            return existing
        try:
            with db.write_session() as session:
                result = _create(session, spec, spec_hash, ctx)
        except IntegrityError:
            # Another request created the same slug between our check and our insert.
            existing = _existing(db, spec, spec_hash, ctx)
            if existing is not None:
                return existing
            raise
    business_metric("organization.provisioned", industry=spec.organization.industry.value)
    return result


def _existing(
    db: Database, spec: SetupSpec, spec_hash: str, ctx: ProvisionContext
) -> ProvisionResult | None:
    # A write session: a repeated setup may issue a fresh password link (a row).
    with db.write_session() as session:
        org = session.scalars(select(Organization).where(Organization.slug == spec.slug)).first()
        if org is None:
            return None
        if org.spec_hash != spec_hash:
            raise ConflictError(
                f"an organization with the slug {spec.slug!r} already exists with different "
                "settings; choose another name or change it in the console"
            )
        owner = _owner_without_password(session, spec, org.id, ctx)
        link = links.issue_password_link(session, owner, ctx.public_url) if owner else None
        message = "Organization already set up with these settings; nothing changed"
        if link is not None:
            # An interrupted setup (killed after the commit, before its link was shown)
            # left an owner who can never sign in: whoever may provision gets a new link.
            message += "; its owner has not set a password yet, so here is a new one-time link"
            security_event(
                "owner_password_link.reissued",
                severity="info",
                organization_id=org.id,
                user_id=owner.id if owner else None,
            )
        return ProvisionResult(
            success=True,
            organization_id=org.id,
            message=message,
            next_steps=_next_steps(session, spec, org.id, ctx, link=link),
            created=False,
            owner_user_id=owner.id if owner else None,
            owner_password_link=link,
        )


def _owner_without_password(
    session: Session, spec: SetupSpec, org_id: str, ctx: ProvisionContext
) -> User | None:
    """Return the spec's owner when a repeated setup may hand them a new password link.

    Only an owner this setup created fits: named by the spec, an Owner of this
    organization and of no other, with no password ever set. A link for anyone else
    would let whoever repeats the setup take over an account that is in use. And only
    the authority that provisioned it receives one (:func:`_provisioned_by`).
    """
    if ctx.owner_user_id is not None or spec.owner is None:
        return None
    if not _provisioned_by(session, org_id, ctx.actor):
        return None
    user = accounts.find_user(session, str(spec.owner.email))
    if user is None or user.password_hash is not None:
        return None
    memberships = session.execute(
        select(Membership.organization_id, Role.name)
        .join(Role, Role.id == Membership.role_id)
        .where(Membership.user_id == user.id)
    ).all()
    if [(m_org, role) for m_org, role in memberships] != [(org_id, OWNER)]:
        return None
    return user


# Actors with local access to the server (its files and database): they could read or
# reset anything anyway, so they may always recover an interrupted setup.
LOCAL_ACTORS = frozenset({"cli", "system"})
# A platform admin appears as "user" (session) or "token" (API token) with their user id.
_PERSON_ACTORS = frozenset({"user", "token"})


def _provisioned_by(session: Session, org_id: str, actor: Actor) -> bool:
    """Whether ``actor`` is the one who provisioned the organization (or has local access).

    Another platform admin repeating someone else's setup must not receive the new
    owner's link: it would be an account takeover, not a recovery.
    """
    if actor.type in LOCAL_ACTORS:
        return True
    row = session.execute(
        select(AuditLog.actor_type, AuditLog.actor_id)
        .where(AuditLog.chain == org_id, AuditLog.action == "organization.provisioned")
        .order_by(AuditLog.seq)
        .limit(1)
    ).first()
    if row is None or row.actor_id is None or row.actor_id != actor.id:
        return False
    return row.actor_type == actor.type or {row.actor_type, actor.type} <= _PERSON_ACTORS


def _create(
    session: Session, spec: SetupSpec, spec_hash: str, ctx: ProvisionContext
) -> ProvisionResult:
    if session.get_bind().dialect.name == "postgresql":
        # One provision at a time: "is this the first user?" and the setup token's state
        # must not change under us (SQLite's write_session already serializes writers).
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PROVISION_LOCK_KEY})
    org = _create_organization(session, spec, spec_hash)
    scope = OrgScope(session, org.id)
    record = _recorder(session, ctx.actor, org.id)
    roles = rbac.seed_roles(scope, spec.security.rbac_model.value)
    for name, role in roles.items():
        record("role.created", "role", role.id, {"name": name, "builtin": True})
    owner, link = _owner(session, spec, ctx)
    membership = scope.add(Membership(user_id=owner.id, role_id=roles[OWNER].id))
    session.flush()
    record("member.added", "membership", membership.id, {"user_id": owner.id, "role": OWNER})
    for index, provider in enumerate(spec.storage.providers):
        row = _storage_row(scope, spec, provider, index)
        record(
            "storage.created",
            "storage_config",
            row.id,
            {"provider": row.provider, "name": row.name},
        )
    security = scope.add(
        SecurityConfig(
            audit_logging=spec.security.audit_logging,
            audit_retention_days=spec.security.data_retention,
            encryption_level=spec.security.encryption_level.value,
            require_admin_2fa=spec.security.require_admin_2fa,
        )
    )
    session.flush()
    record("security.configured", "security_config", security.id, _security_summary(spec))
    template = spec.template
    agents = scope.add(
        AgentConfig(
            default_agents=spec.agents.default_agent_ids,
            auto_routing=spec.agents.auto_routing,
            confidence_threshold=spec.agents.confidence_threshold,
            monitoring_enabled=spec.agents.monitoring_enabled,
            routing_hints={
                "hints": [
                    hint.model_dump(by_alias=True, exclude_none=True)
                    for hint in template.routing_hints
                ]
            }
            if template
            else {},
        )
    )
    session.flush()
    installed, unavailable = _install_default_agents(scope, spec, ctx)
    record(
        "agents.configured",
        "agent_config",
        agents.id,
        {
            "default_agents": agents.default_agents,
            "installed": installed,
            "unavailable": unavailable,
        },
    )
    if ctx.setup_token_id is not None:
        tokens.consume_setup_token(session, ctx.setup_token_id, org.id, ctx.data_dir)
        record("setup_token.consumed", "setup_token", ctx.setup_token_id, {})
    # The instance is set up now, whichever door this came through: no other setup token
    # (e.g. the one a running server printed) may set up a second organization.
    for token_id in consume_setup_tokens(session, org.id, ctx.data_dir):
        record("setup_token.consumed", "setup_token", token_id, {"reason": "instance_set_up"})
    record(
        "organization.provisioned",
        "organization",
        org.id,
        {"slug": org.slug, "industry": org.industry, "compliance_level": org.compliance_level},
    )
    if ctx.checkpoint_key is not None:
        # Anchor the tail right away: the setup's rows are the first an attacker with
        # database access would want gone, long before the server's next interval.
        audit.anchor_chains(session, ctx.checkpoint_key, [org.id, INSTANCE_CHAIN])
    return ProvisionResult(
        success=True,
        organization_id=org.id,
        message="Organization setup completed successfully",
        next_steps=_next_steps(session, spec, org.id, ctx, link=link),
        created=True,
        owner_user_id=owner.id,
        owner_password_link=link,
    )


def _install_default_agents(
    scope: OrgScope, spec: SetupSpec, ctx: ProvisionContext
) -> tuple[list[str], list[str]]:
    """Install the bundled default agents for real, granted what they declare.

    Each install runs in a savepoint of the provision's transaction and is recorded as
    granted by the setup's actor. A default whose package does not exist (or failed its
    checks) is recorded as unavailable, as before. The bundled archives are built once per
    process (keyed by their sha256), so a quick setup stays fast.

    Returns:
        the installed and the unavailable package ids.
    """
    # Imported here: the lifecycle imports the marketplace, which imports onboarding.
    from paulyops.services.agents import lifecycle
    from paulyops.services.agents.installations import agent_cache

    catalog = load_catalog()
    unavailable = catalog.unavailable_ids(spec.agents.default_agents)
    installed: list[str] = []
    cache = agent_cache(ctx.data_dir)
    for agent_id in spec.agents.default_agent_ids:
        if agent_id in unavailable:
            continue
        savepoint = scope.session.begin_nested()
        try:
            outcome = lifecycle.install_bundled(scope, agent_id, actor=ctx.actor, cache=cache)
        except PaulyOpsError as err:
            savepoint.rollback()
            log.warning("default_agent_not_installed", agent_id=agent_id, reason=err.message)
            unavailable.append(agent_id)
            continue
        savepoint.commit()
        if outcome is None:
            unavailable.append(agent_id)
        else:
            installed.append(agent_id)
    return installed, unavailable


def _create_organization(session: Session, spec: SetupSpec, spec_hash: str) -> Organization:
    template = spec.template
    org = Organization(
        slug=spec.slug,
        name=spec.organization.name,
        industry=spec.organization.industry.value,
        compliance_level=spec.organization.compliance_level.value,
        size=spec.organization.size.value,
        rbac_model=spec.security.rbac_model.value,
        spec_hash=spec_hash,
        settings={
            "timezone": spec.organization.timezone,
            "adminContact": spec.organization.admin_contact,
            "folders": list(template.folders) if template else ["inbox", "archive"],
            "documentRetentionDays": spec.storage.retention_days,
            "backupStrategy": spec.storage.backup_strategy.value,
        },
    )
    session.add(org)
    session.flush()
    return org


def _recorder(session: Session, actor: Actor, org_id: str) -> Any:
    def record(action: str, target_type: str, target_id: str, changes: dict[str, Any]) -> None:
        actors.record(
            session,
            actor,
            action,
            organization_id=org_id,
            target_type=target_type,
            target_id=target_id,
            changes=changes,
        )

    return record


def _owner(session: Session, spec: SetupSpec, ctx: ProvisionContext) -> tuple[User, str | None]:
    """Return the owner (existing or new) and, for a new account, a password-set link."""
    if ctx.owner_user_id is not None:
        user = accounts.get_user(session, ctx.owner_user_id)
        return user, None
    if spec.owner is None:
        raise SpecValidationError(
            "the organization needs an owner",
            [FieldError("owner", "expected the owner's email and name")],
        )
    first_user = accounts.count_users(session) == 0
    found = accounts.find_user(session, str(spec.owner.email))
    if found is not None:
        user = found
    else:
        user = accounts.create_user(
            session,
            _NO_HASHING,
            email=str(spec.owner.email),
            name=spec.owner.name,
            password=None,
            is_platform_admin=first_user,
        )
        if ctx.owner_password_hash:
            user.password_hash = ctx.owner_password_hash
            user.password_changed_at = utcnow()
        actors.record(
            session,
            ctx.actor,
            "user.created",
            organization_id=None,
            target_type="user",
            target_id=user.id,
            changes={"is_platform_admin": first_user},
        )
    link = None
    if user.password_hash is None and found is None:
        # Only an account created right here gets a link: handing out a password link for
        # an existing account would let whoever provisions take it over.
        link = links.issue_password_link(session, user, ctx.public_url)
    return user, link


class _NoHashing:
    """Stands in for password hashing when an account is created without a password."""

    def hash(self, password: str) -> str:  # pragma: no cover - never called without a password
        raise RuntimeError("provision creates owners without passwords")


_NO_HASHING: Any = _NoHashing()


def _storage_row(scope: OrgScope, spec: SetupSpec, provider: Any, index: int) -> StorageConfig:
    wire = provider.model_dump(mode="json", by_alias=True, context={"include_secrets": True})
    secrets: dict[str, Any] = {}
    for name, info in type(provider).model_fields.items():
        wire_name = info.alias or name
        if name in SECRET_FIELDS and wire_name in wire:
            value = wire.pop(wire_name)
            if value:
                secrets[wire_name] = value
    missing = provider.missing_settings()
    row = StorageConfig(
        name=provider.name,
        provider=provider.type,
        settings={key: value for key, value in wire.items() if key not in {"type", "name"}},
        backup_strategy=spec.storage.backup_strategy.value,
        retention_days=spec.storage.retention_days,
        status="needs_settings" if missing else "configured",
    )
    scope.add(row)
    if secrets:
        write_secret_json(row, "credentials", secrets)
    scope.session.flush()
    return row


def _security_summary(spec: SetupSpec) -> dict[str, Any]:
    return {
        "rbac_model": spec.security.rbac_model.value,
        "audit_logging": spec.security.audit_logging,
        "audit_retention_days": spec.security.data_retention,
        "encryption_level": spec.security.encryption_level.value,
        "require_admin_2fa": spec.security.require_admin_2fa,
    }


def _next_steps(
    session: Session, spec: SetupSpec, org_id: str, ctx: ProvisionContext, *, link: str | None
) -> list[str]:
    steps: list[str] = []
    if link:
        steps.append("Set the owner's password with the one-time link (valid 7 days)")
    for provider in spec.storage.providers:
        missing = provider.missing_settings()
        if missing:
            steps.append(
                f"Configure external service credentials: storage {provider.name!r} "
                f"({provider.type}) still needs {', '.join(missing)}"
            )
    if spec.security.require_admin_2fa:
        steps.append("Owners and admins: turn on two-factor sign-in (required by your settings)")
    if not ctx.redis_configured:
        steps.append(
            "Optional: set REDIS_URL (and DATABASE_URL for PostgreSQL) to run several server "
            "processes; the embedded defaults serve one machine"
        )
    catalog = load_catalog()
    present = set(
        session.scalars(
            select(AgentInstallation.agent_id).where(AgentInstallation.organization_id == org_id)
        )
    )
    ready = [n for n in spec.agents.default_agents if (a := catalog.get(n)) and a.id in present]
    missing = [n for n in spec.agents.default_agents if n not in ready]
    if ready:
        steps.append(
            "Default agents installed: "
            + ", ".join(ready)
            + " (see them with `paulyops agents list`)"
        )
    if missing:
        steps.append(
            "Default agents recorded as unavailable (their package does not exist yet, so "
            "nothing runs them): " + ", ".join(missing)
        )
    steps.append(f"Access your PaulyOps dashboard at {ctx.public_url}")
    return steps


def describe(spec: SetupSpec) -> dict[str, Any]:
    """Return what provisioning would create, for ``--dry-run`` and the review page."""
    return {
        "organization": {"name": spec.organization.name, "slug": spec.slug},
        "roles": [t.name for t in role_templates(spec.security.rbac_model.value)],
        "storage": [
            {"name": p.name, "provider": p.type, "missing": p.missing_settings()}
            for p in spec.storage.providers
        ],
        "security": _security_summary(spec),
        "agents": spec.agents.default_agent_ids,
        "unavailableAgents": load_catalog().unavailable_ids(spec.agents.default_agents),
        "specHash": spec.canonical_hash(),
        "spec": json.loads(json.dumps(spec.to_wire())),
    }


__all__ = [
    "ProvisionContext",
    "ProvisionResult",
    "describe",
    "provision",
]
