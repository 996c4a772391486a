"""Audited account, session, token and role operations: what routes and the CLI call.

Each function here performs one state change through :mod:`accounts`, :mod:`sessions`,
:mod:`tokens` or :mod:`rbac` and writes exactly one audit row for it, in the same
transaction, so the change and its record commit or vanish together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    ApiToken,
    Delegation,
    Membership,
    Organization,
    Role,
    SecurityConfig,
    User,
    WebSession,
    utcnow,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from paulyops.core.logging import security_event
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.csrf import CsrfTokens
from paulyops.core.security.csrf import hash_token as csrf_hash
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, rbac, reauth, sessions, tokens
from paulyops.services.auth.permissions import RbacModel


@dataclass(frozen=True, slots=True)
class SignIn:
    """A successful first step of sign-in: the new session and its CSRF token."""

    user: User
    session: WebSession
    cookie: str = field(repr=False)
    csrf_token: str = field(repr=False)
    needs_second_factor: bool


def _bind_csrf(csrf: CsrfTokens, row: WebSession) -> str:
    token = csrf.issue(row.id)
    row.csrf_token_hash = csrf_hash(token)
    return token


def _default_org(session: Session, user: User, wanted: str | None) -> str | None:
    """Return the organization a new session starts in.

    The default is the organization the user joined first (oldest membership): joining
    another one later, through an invitation say, never moves it.
    """
    rows = session.execute(
        select(Membership.organization_id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at, Membership.id)
    ).all()
    orgs = [org_id for (org_id,) in rows]
    if wanted is not None:
        return wanted if wanted in orgs else None
    return orgs[0] if orgs else None


def sign_in(
    session: Session,
    *,
    hashing: PasswordHashing,
    limiter: RateLimiter,
    csrf: CsrfTokens,
    email: str,
    password: str,
    actor: Actor,
    organization_id: str | None = None,
    previous: WebSession | None = None,
    user_agent: str | None = None,
) -> SignIn:
    """Check credentials (throttled per address and per account) and open a session.

    The session id is always new (any previous session of this browser is revoked). With
    TOTP enabled the session is only ``pending_2fa`` until :func:`complete_second_factor`.

    Raises:
        RateLimitedError: too many attempts from this address or for this account.
        ServiceUnavailableError: Redis is configured but down (sign-in fails closed).
        AuthenticationError: one generic message for every wrong combination.
    """
    address = actor.address or "unknown"
    limiter.enforce("signin", f"addr:{address}", address=address)
    limiter.enforce("signin_account", f"acct:{accounts.normalize_email(email)}", address=address)
    try:
        checked = accounts.check_credentials(session, hashing, email=email, password=password)
    except AuthenticationError:
        security_event("auth.sign_in_failed", address=address)
        actors.record(session, actor, "auth.sign_in", organization_id=None, outcome="failure")
        raise
    user = checked.user
    org_id = _default_org(session, user, organization_id)
    if previous is not None:
        previous.revoked_at = previous.revoked_at or utcnow()
        csrf.revoke(previous.id)
    kind: sessions.SessionKind = "pending_2fa" if checked.needs_second_factor else "user"
    new = sessions.create_session(
        session,
        user_id=user.id,
        organization_id=org_id,
        kind=kind,
        client_address=actor.address,
        user_agent=user_agent,
    )
    token = _bind_csrf(csrf, new.row)
    # The password was just entered: recent authentication for the next minutes.
    reauth.mark_password_confirmed(new.row)
    if kind == "user":
        accounts.record_sign_in(user)
    actors.record(
        session,
        Actor("user", user.id, actor.address),
        "auth.sign_in",
        organization_id=None,
        target_type="session",
        target_id=new.row.id,
        changes={"second_factor_pending": checked.needs_second_factor},
    )
    return SignIn(user, new.row, new.token, token, checked.needs_second_factor)


def complete_second_factor(
    session: Session,
    *,
    keyring: KeyRing,
    limiter: RateLimiter,
    csrf: CsrfTokens,
    pending: WebSession,
    code: str,
    actor: Actor,
) -> SignIn:
    """Finish a sign-in with a TOTP or recovery code, rotating to a full session.

    Raises:
        AuthenticationError: no pending sign-in, or a wrong code.
    """
    if pending.kind != "pending_2fa" or pending.user_id is None:
        raise AuthenticationError("there is no sign-in waiting for a code; sign in again")
    limiter.enforce("signin_account", f"2fa:{pending.user_id}", address=actor.address)
    user = accounts.get_user(session, pending.user_id)
    if not accounts.verify_totp(user, keyring, code):
        security_event("auth.second_factor_failed", user_id=user.id, address=actor.address)
        actors.record(session, actor, "auth.second_factor", organization_id=None, outcome="failure")
        raise AuthenticationError("that code is not correct")
    csrf.revoke(pending.id)
    new = sessions.rotate_session(session, pending, kind="user")
    token = _bind_csrf(csrf, new.row)
    accounts.record_sign_in(user)
    actors.record(
        session,
        Actor("user", user.id, actor.address),
        "auth.second_factor",
        organization_id=None,
        target_type="session",
        target_id=new.row.id,
    )
    return SignIn(user, new.row, new.token, token, False)


def sign_out(session: Session, *, csrf: CsrfTokens, row: WebSession, actor: Actor) -> None:
    """End a session on the server."""
    sessions.revoke_session(session, row.id)
    csrf.revoke(row.id)
    actors.record(
        session,
        actor,
        "auth.sign_out",
        organization_id=None,
        target_type="session",
        target_id=row.id,
    )


def revoke_own_session(session: Session, *, user: User, session_id: str, actor: Actor) -> None:
    """Revoke one of the user's own sessions (e.g. a lost laptop)."""
    sessions.revoke_session(session, session_id, user_id=user.id)
    actors.record(
        session,
        actor,
        "auth.session_revoked",
        organization_id=None,
        target_type="session",
        target_id=session_id,
    )


@dataclass(frozen=True, slots=True)
class PasswordChange:
    """A changed password: the caller's rotated session, and how many API tokens ended."""

    replacement: sessions.NewSession | None
    tokens_revoked: int


def change_password(
    session: Session,
    *,
    hashing: PasswordHashing,
    limiter: RateLimiter,
    csrf: CsrfTokens,
    user: User,
    current_password: str,
    new_password: str,
    current: WebSession | None,
    actor: Actor,
) -> PasswordChange:
    """Change a password after re-checking the current one.

    Every session is revoked (the caller's own is rotated) and so is every API token of
    the account, in every organization: whoever knew the old password may have made
    them. Each attempt counts against the per-account sign-in limit, so this route
    cannot be used to guess the current password faster than sign-in can.

    Raises:
        RateLimitedError: too many attempts for this account.
        AuthenticationError: the current password is wrong.
        SpecValidationError: the new password breaks the policy.
    """
    limiter.enforce("signin_account", reauth.account_limit_key(user), address=actor.address)
    if user.password_hash is None or not hashing.verify(user.password_hash, current_password):
        security_event("auth.password_change_failed", user_id=user.id)
        raise AuthenticationError("the current password is not correct")
    accounts.set_password(session, hashing, user, new_password)
    sessions.revoke_user_sessions(session, user.id)
    revoked = tokens.revoke_user_api_tokens(session, user.id)
    replacement = None
    if current is not None:
        csrf.revoke(current.id)
        replacement = sessions.rotate_session(session, current)
        reauth.mark_password_confirmed(replacement.row)
    actors.record(
        session,
        actor,
        "auth.password_changed",
        organization_id=None,
        target_type="user",
        target_id=user.id,
        changes={"api_tokens_revoked": revoked},
    )
    return PasswordChange(replacement, revoked)


def switch_organization(
    session: Session, *, csrf: CsrfTokens, current: WebSession, organization_id: str, actor: Actor
) -> tuple[sessions.NewSession, str]:
    """Bind the browser to another organization the user belongs to (rotates the session)."""
    if current.user_id is None or rbac.grant_for(session, organization_id, current.user_id) is None:
        raise NotFoundError("organization not found")
    csrf.revoke(current.id)
    new = sessions.rotate_session(session, current, organization_id=organization_id)
    token = _bind_csrf(csrf, new.row)
    actors.record(
        session,
        actor,
        "auth.organization_switched",
        organization_id=organization_id,
        target_type="session",
        target_id=new.row.id,
    )
    return new, token


# --- users (CLI) ----------------------------------------------------------------------


def create_user(
    session: Session,
    *,
    hashing: PasswordHashing,
    email: str,
    name: str,
    password: str | None,
    is_platform_admin: bool,
    actor: Actor,
) -> User:
    """Create a user account (instance-level audit row without personal data)."""
    user = accounts.create_user(
        session,
        hashing,
        email=email,
        name=name,
        password=password,
        is_platform_admin=is_platform_admin,
    )
    actors.record(
        session,
        actor,
        "user.created",
        organization_id=None,
        target_type="user",
        target_id=user.id,
        changes={"is_platform_admin": is_platform_admin},
    )
    return user


@dataclass(frozen=True, slots=True)
class PasswordReset:
    """What an operator's password reset ended."""

    sessions_revoked: int
    tokens_revoked: int


def reset_password(
    session: Session, *, hashing: PasswordHashing, user: User, password: str, actor: Actor
) -> PasswordReset:
    """Set a user's password (operator reset); revoke all their sessions and API tokens."""
    accounts.set_password(session, hashing, user, password)
    revoked = sessions.revoke_user_sessions(session, user.id)
    tokens_revoked = tokens.revoke_user_api_tokens(session, user.id)
    actors.record(
        session,
        actor,
        "user.password_reset",
        organization_id=None,
        target_type="user",
        target_id=user.id,
        changes={"sessions_revoked": revoked, "api_tokens_revoked": tokens_revoked},
    )
    return PasswordReset(revoked, tokens_revoked)


# --- API tokens -----------------------------------------------------------------------


def create_token(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    name: str,
    permissions: Iterable[str],
    expires_at: datetime | None,
    actor: Actor,
) -> tokens.IssuedToken:
    """Create an API token for the grant's user in its organization.

    The token may hold only permissions the user holds through their own role: a
    delegated permission would outlive its delegation inside the token.

    Raises:
        PermissionDeniedError: a permission the user lacks or holds only by delegation.
    """
    wanted = list(permissions)
    rbac.refuse_ungrantable(grant, wanted, "a token")
    issued = tokens.create_api_token(
        scope,
        user_id=grant.user_id,
        name=name,
        permissions=wanted,
        holder_permissions=grant.grantable,
        expires_at=expires_at,
    )
    actors.record(
        scope.session,
        actor,
        "token.created",
        organization_id=scope.organization_id,
        target_type="api_token",
        target_id=issued.row.id,
        changes={"permissions": issued.row.permissions, "name": issued.row.name},
    )
    return issued


def revoke_token(scope: OrgScope, *, grant: rbac.Grant | None, token_id: str, actor: Actor) -> None:
    """Revoke an API token of the organization.

    Args:
        grant: who revokes: they may revoke their own tokens and those of members ranked
            below them. ``None`` is the local operator (the CLI), who may revoke any.

    Raises:
        PermissionDeniedError: the token's owner ranks at or above the revoker.
    """
    row = scope.get(ApiToken, token_id)
    if grant is not None and row.user_id != grant.user_id:
        owner_rank = rbac.member_rank(scope, row.user_id)
        if owner_rank is not None and owner_rank >= grant.role_rank:
            raise PermissionDeniedError(
                "you can revoke your own API tokens and those of members ranked below you; "
                "this one belongs to someone ranked at or above you"
            )
    tokens.revoke_api_token(scope, token_id)
    actors.record(
        scope.session,
        actor,
        "token.revoked",
        organization_id=scope.organization_id,
        target_type="api_token",
        target_id=token_id,
    )


# --- members and roles ----------------------------------------------------------------


def _model(scope: OrgScope) -> RbacModel:
    config = scope.first(SecurityConfig)
    org = scope.session.get(Organization, scope.organization_id)
    if config is None or org is None:
        raise NotFoundError("organization has no security settings")
    # Stored once, on the organization (migration 0006onb).
    return RbacModel(org.rbac_model)


def change_member_role(
    scope: OrgScope, *, grant: rbac.Grant, membership_id: str, role_id: str, actor: Actor
) -> Membership:
    """Give a member another role; their sessions are rotated by revocation."""
    before = scope.get(Membership, membership_id).role_id
    membership = rbac.change_member_role(scope, grant, membership_id, role_id)
    # A privilege change invalidates the member's sessions: they sign in again.
    sessions.revoke_user_sessions(scope.session, membership.user_id)
    actors.record(
        scope.session,
        actor,
        "member.role_changed",
        organization_id=scope.organization_id,
        target_type="membership",
        target_id=membership.id,
        changes={"role_id": {"from": before, "to": role_id}},
    )
    return membership


def remove_member(scope: OrgScope, *, grant: rbac.Grant, membership_id: str, actor: Actor) -> None:
    """Remove a member (their sessions end)."""
    if grant.user_id == scope.get(Membership, membership_id).user_id:
        raise PermissionDeniedError("you cannot remove yourself; ask another admin")
    user_id = rbac.remove_member(scope, grant, membership_id)
    sessions.revoke_user_sessions(scope.session, user_id)
    actors.record(
        scope.session,
        actor,
        "member.removed",
        organization_id=scope.organization_id,
        target_type="membership",
        target_id=membership_id,
        changes={"user_id": user_id},
    )


def create_role(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    name: str,
    permissions: Iterable[str],
    description: str,
    parent_id: str | None,
    actor: Actor,
) -> Role:
    """Create a custom role (granular and enterprise models)."""
    role = rbac.create_custom_role(
        scope,
        _model(scope),
        actor=grant,
        name=name,
        permissions=permissions,
        description=description,
        parent_id=parent_id,
    )
    actors.record(
        scope.session,
        actor,
        "role.created",
        organization_id=scope.organization_id,
        target_type="role",
        target_id=role.id,
        changes={"name": role.name, "permissions": role.permissions, "parent_id": parent_id},
    )
    return role


def update_role(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    role_id: str,
    permissions: Iterable[str],
    actor: Actor,
) -> Role:
    """Replace a custom role's permissions."""
    before = list(scope.get(Role, role_id).permissions)
    role = rbac.update_role_permissions(scope, _model(scope), role_id, permissions, actor=grant)
    actors.record(
        scope.session,
        actor,
        "role.updated",
        organization_id=scope.organization_id,
        target_type="role",
        target_id=role.id,
        changes={"permissions": {"from": before, "to": role.permissions}},
    )
    return role


def delete_role(scope: OrgScope, *, grant: rbac.Grant | None, role_id: str, actor: Actor) -> None:
    """Delete a custom role nobody holds and that does not rank above ``grant``'s."""
    rbac.delete_role(scope, role_id, actor=grant)
    actors.record(
        scope.session,
        actor,
        "role.deleted",
        organization_id=scope.organization_id,
        target_type="role",
        target_id=role_id,
    )


def delegate(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    to_user_id: str,
    permissions: Iterable[str],
    expires_at: datetime,
    actor: Actor,
) -> Delegation:
    """Delegate some of one's own permissions to another member until ``expires_at``."""
    delegation = rbac.delegate(
        scope,
        _model(scope),
        grant,
        to_user_id=to_user_id,
        permissions=permissions,
        expires_at=expires_at,
    )
    actors.record(
        scope.session,
        actor,
        "delegation.created",
        organization_id=scope.organization_id,
        target_type="delegation",
        target_id=delegation.id,
        changes={
            "to_user_id": to_user_id,
            "permissions": delegation.permissions,
            "expires_at": expires_at.isoformat(),
        },
    )
    return delegation


def revoke_delegation(
    scope: OrgScope, *, grant: rbac.Grant, delegation_id: str, actor: Actor
) -> None:
    """End a delegation now (its giver, its recipient, or someone ranked above the giver)."""
    rbac.revoke_delegation(scope, delegation_id, actor=grant)
    actors.record(
        scope.session,
        actor,
        "delegation.revoked",
        organization_id=scope.organization_id,
        target_type="delegation",
        target_id=delegation_id,
    )


__all__ = [
    "PasswordChange",
    "PasswordReset",
    "SignIn",
    "change_member_role",
    "change_password",
    "complete_second_factor",
    "create_role",
    "create_token",
    "create_user",
    "delegate",
    "delete_role",
    "remove_member",
    "reset_password",
    "revoke_delegation",
    "revoke_own_session",
    "revoke_token",
    "sign_in",
    "sign_out",
    "switch_organization",
    "update_role",
]
