"""Members: list them, add one (the operator), change a member's role, remove a member.

Each change is one use case taking the scope, a command (where there is input) and the
actor; it checks the rules (through :mod:`.rbac`: rank, grantable permissions, the
organization keeps an Owner), makes the change, ends the member's sessions where their
power changed, and writes its audit row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field
from sqlalchemy.orm import Session

from paulyops.core.db.models import Membership, Role, User
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, rbac, roles, sessions, users
from paulyops.services.auth.organizations import find_organization
from paulyops.services.commands import Command
from paulyops.services.onboarding.errors import custom_error

DEFAULT_ROLE = "User"


def _account_rule(check: Callable[[str], str]) -> Callable[[str], str]:
    """Run one of :mod:`.accounts`' checks as a pydantic validator (same message)."""

    def run(value: str) -> str:
        try:
            return check(value)
        except SpecValidationError as err:
            message = err.errors[0].message if err.errors else err.message
            raise custom_error("invalid_value", message) from None

    return run


# A person's address and name in a command: the account rules of :mod:`.accounts`.
EmailAddress = Annotated[
    str,
    Field(max_length=320, title="E-mail address"),
    AfterValidator(_account_rule(accounts.check_email)),
]
PersonName = Annotated[
    str,
    Field(min_length=1, max_length=200, title="Name", description="How they appear to others"),
    AfterValidator(_account_rule(accounts.clean_name)),
]


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member of the organization and their role."""

    id: str
    user_id: str
    email: str
    name: str
    role_id: str
    role_name: str
    role_rank: int
    has_password: bool
    created_at: datetime


def list_members(scope: OrgScope) -> list[MemberView]:
    """Return the organization's members, in the order they joined."""
    rows = scope.session.execute(
        scope.select(Membership)
        .join(User, User.id == Membership.user_id)
        .join(Role, Role.id == Membership.role_id)
        .add_columns(User, Role)
        .order_by(Membership.created_at, Membership.id)
    ).all()
    return [
        MemberView(
            id=membership.id,
            user_id=user.id,
            email=user.email,
            name=user.name,
            role_id=role.id,
            role_name=role.name,
            role_rank=role.rank,
            has_password=user.password_hash is not None,
            created_at=membership.created_at,
        )
        for membership, user, role in rows
    ]


def get_member(scope: OrgScope, membership_id: str) -> MemberView:
    """Return one member of the organization.

    Raises:
        NotFoundError: no such member here (another organization's ids are not found).
    """
    scope.get(Membership, membership_id)
    return next(view for view in list_members(scope) if view.id == membership_id)


def member_grant(session: Session, organization_id: str, email: str) -> rbac.Grant:
    """Return what the member with ``email`` may do in the organization (operator's view).

    Raises:
        NotFoundError: no such account, or it is not a member there.
    """
    user = accounts.find_user(session, email)
    if user is None:
        raise NotFoundError(f"--user: no account has the e-mail address {email.strip()!r}")
    grant = rbac.grant_for(session, organization_id, user.id)
    if grant is None:
        org = find_organization(session, organization_id)
        raise NotFoundError(f"--user: {user.email} is not a member of {org.slug} ({org.id})")
    return grant


class ChangeMemberRole(Command):
    """A member's new role."""

    role_id: str = Field(min_length=1, max_length=40, title="Role")


def change_member_role(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    membership_id: str,
    command: ChangeMemberRole,
    actor: Actor,
) -> None:
    """Give a member another role; their sessions end (a privilege change).

    Raises:
        NotFoundError: no such member or role here.
        PermissionDeniedError: a role above the actor's own, permissions they do not hold
            through their role, or the organization would lose its last Owner.
    """
    before = scope.get(Membership, membership_id).role_id
    membership = rbac.change_member_role(scope, grant, membership_id, command.role_id)
    sessions.revoke_user_sessions(scope.session, membership.user_id)
    actors.record(
        scope.session,
        actor,
        "member.role_changed",
        organization_id=scope.organization_id,
        target_type="membership",
        target_id=membership.id,
        changes={"role_id": {"from": before, "to": command.role_id}},
    )


def remove_member(scope: OrgScope, *, grant: rbac.Grant, membership_id: str, actor: Actor) -> None:
    """Remove a member (their sessions end).

    Raises:
        PermissionDeniedError: oneself, someone ranked above the actor, or the last Owner.
    """
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


class NewUser(Command):
    """A new account, optionally a member of one organization (the operator's command)."""

    email: EmailAddress
    name: PersonName
    is_platform_admin: bool = False
    organization: str | None = Field(None, max_length=100, description="its id or slug")
    role: str | None = Field(None, max_length=80, description=f"default: {DEFAULT_ROLE}")


@dataclass(frozen=True, slots=True)
class NewUserView:
    """A created account and, when it joined one, its organization and role."""

    user_id: str
    email: str
    organization_id: str | None = None
    organization_name: str | None = None
    role_name: str | None = None


def _placement(session: Session, command: NewUser) -> tuple[str, roles.RoleView] | None:
    if command.organization is None:
        return None
    org = find_organization(session, command.organization)
    return org.id, roles.find_role(OrgScope(session, org.id), command.role or DEFAULT_ROLE)


def check_new_user(session: Session, command: NewUser) -> None:
    """Check what :func:`create_user` would refuse, before anyone types a password.

    Raises:
        ConflictError: the address has an account.
        NotFoundError: no such organization.
        SpecValidationError: no such role there.
    """
    if accounts.find_user(session, command.email) is not None:
        raise ConflictError(
            f"an account for {accounts.normalize_email(command.email)} already exists"
        )
    _placement(session, command)


def create_user(
    session: Session, *, hashing: PasswordHashing, command: NewUser, password: str, actor: Actor
) -> NewUserView:
    """Create an account and, when the command names an organization, make it a member.

    Writes the account's instance-level audit row and, for the membership, one in the
    organization's chain.

    Raises:
        ConflictError: the address has an account.
        NotFoundError: no such organization.
        SpecValidationError: a bad address, name, password or role.
    """
    placement = _placement(session, command)
    account = users.CreateUser(
        email=command.email,
        name=command.name,
        password=password,
        is_platform_admin=command.is_platform_admin,
    )
    user = users.create_user(session, account, hashing=hashing, actor=actor)
    if placement is None:
        return NewUserView(user.id, user.email)
    org_id, role = placement
    scope = OrgScope(session, org_id)
    membership = rbac.add_member(scope, user.id, role.id)
    actors.record(
        session,
        actor,
        "member.added",
        organization_id=org_id,
        target_type="membership",
        target_id=membership.id,
        changes={"user_id": user.id, "role_id": role.id},
    )
    org = find_organization(session, org_id)
    return NewUserView(user.id, user.email, org.id, org.name, role.name)


@dataclass(frozen=True, slots=True)
class UserView:
    """An account of the instance with the organizations it belongs to (no secrets)."""

    id: str
    email: str
    name: str
    is_active: bool
    is_platform_admin: bool
    totp_enabled: bool
    last_sign_in_at: datetime | None
    memberships: list[tuple[str, str]]


def list_users(session: Session) -> list[UserView]:
    """Return every account of the instance with its (organization slug, role) pairs."""
    return [
        UserView(
            id=user.id,
            email=user.email,
            name=user.name,
            is_active=user.is_active,
            is_platform_admin=user.is_platform_admin,
            totp_enabled=user.totp_enabled,
            last_sign_in_at=user.last_sign_in_at,
            memberships=[
                (org.slug, role.name) for org, role in rbac.memberships_of(session, user.id)
            ],
        )
        for user in accounts.list_users(session)
    ]


def require_account(session: Session, email: str) -> User:
    """Return the account with ``email``, for a use case that acts on it.

    Raises:
        NotFoundError: no account has that address.
    """
    user = accounts.find_user(session, email)
    if user is None:
        raise NotFoundError(f"no account has the e-mail address {email.strip()!r}")
    return user


def user_identity(session: Session, email: str) -> tuple[str, str]:
    """Return the normalized e-mail and name of the account with ``email``.

    Raises:
        NotFoundError: no account has that address.
    """
    user = require_account(session, email)
    return user.email, user.name


__all__ = [
    "DEFAULT_ROLE",
    "ChangeMemberRole",
    "EmailAddress",
    "MemberView",
    "NewUser",
    "NewUserView",
    "PersonName",
    "UserView",
    "change_member_role",
    "check_new_user",
    "create_user",
    "get_member",
    "list_members",
    "list_users",
    "member_grant",
    "remove_member",
    "require_account",
    "user_identity",
]
