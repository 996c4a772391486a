"""Audited account, session, token and role operations: what routes and the CLI call.

Each function here performs one state change through :mod:`accounts`, :mod:`sessions`,
:mod:`tokens` or :mod:`rbac` and writes exactly one audit row for it, in the same
transaction, so the change and its record commit or vanish together.

Sign-in, sessions, passwords and user creation live in :mod:`.signin`, :mod:`.passwords`
and :mod:`.users`; the names kept here delegate to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    ApiToken,
    Delegation,
    Membership,
    Role,
    SecurityConfig,
    User,
    WebSession,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError, PermissionDeniedError
from paulyops.core.security.csrf import CsrfTokens
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import passwords, rbac, sessions, tokens
from paulyops.services.auth.passwords import PasswordChange, PasswordReset, reset_password
from paulyops.services.auth.permissions import TOKEN_PLATFORM_PERMISSIONS, RbacModel
from paulyops.services.auth.signin import revoke_own_session, sign_out, switch_organization
from paulyops.services.auth.users import create_user

# --- sign-in, sessions and passwords: moved to their domain modules -----------------------
# ``signin``, ``passwords`` and ``users`` hold these use cases now; the names stay here for
# the callers not switched yet (console security and org pages, ``cli/users.py``).


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
    """Change a password: :func:`paulyops.services.auth.passwords.change_password`."""
    command = passwords.ChangePasswordCommand(
        current_password=current_password, new_password=new_password
    )
    return passwords.change_password(
        session,
        command,
        hashing=hashing,
        limiter=limiter,
        csrf=csrf,
        user=user,
        current=current,
        actor=actor,
    )


# --- API tokens -----------------------------------------------------------------------


def create_token(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    name: str,
    permissions: Iterable[str],
    expires_at: datetime | None,
    actor: Actor,
    platform_permissions: frozenset[str] = frozenset(),
) -> tokens.IssuedToken:
    """Create an API token for the grant's user in its organization.

    The token may hold only permissions the user holds through their own role: a
    delegated permission would outlive its delegation inside the token.

    Args:
        platform_permissions: the caller's instance-wide permissions; of these, the
            read-only monitoring ones (``metrics:read``, ``health:read``) may go on the
            token too, so a platform administrator can make a scraper's token.

    Raises:
        PermissionDeniedError: a permission the user lacks or holds only by delegation.
    """
    wanted = list(permissions)
    extra = frozenset(wanted) & platform_permissions & TOKEN_PLATFORM_PERMISSIONS
    rbac.refuse_ungrantable(grant, [p for p in wanted if p not in extra], "a token")
    issued = tokens.create_api_token(
        scope,
        user_id=grant.user_id,
        name=name,
        permissions=wanted,
        holder_permissions=grant.grantable | extra,
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
    if config is None:
        raise NotFoundError("organization has no security settings")
    return RbacModel(config.rbac_model)


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
    "change_member_role",
    "change_password",
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
    "sign_out",
    "switch_organization",
    "update_role",
]
