"""The second factor: the organization's "second factor for admins" rule, and the use
cases that turn TOTP on and off.

The rule binds by **permission**, not by rank: a member whose effective permissions in an
organization (their role, the roles below it, and live delegations) include any of
:data:`~paulyops.services.auth.permissions.SECOND_FACTOR_PERMISSIONS` must have TOTP on
while that organization's ``require_admin_2fa`` is set. Ranks are derived from
permissions and can be gamed by custom roles; a delegated ``security:update`` is just as
dangerous in a Viewer's hands as in an Admin's. Every credential is held to it: a
session of such a member acts with no permissions until they enrol, and their API tokens
are refused (see :mod:`paulyops.services.auth.principals`).

Enrolling and turning TOTP off need the password again (:mod:`.reauth`); each use case
writes its own audit row.
"""

from __future__ import annotations

from pydantic import Field
from sqlalchemy.orm import Session

from paulyops.core.db.models import Organization, User, WebSession
from paulyops.core.errors import (
    ConflictError,
    FieldError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.logging import security_event
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, rbac, reauth, sessions
from paulyops.services.auth.accounts import OneTimeCode, TotpEnrollment
from paulyops.services.auth.permissions import SECOND_FACTOR_PERMISSIONS
from paulyops.services.commands import Command

MAX_PASSWORD = 1024

ENROL_MESSAGE = (
    "your organization requires a second factor for members with admin permissions, and "
    "this account has none yet: sign in to the console and set up two-factor sign-in under "
    "Security; until then its API tokens are refused"
)


def holds_admin_permissions(grant: rbac.Grant) -> bool:
    """Whether the grant includes a permission the second-factor rule counts as admin."""
    return bool(grant.permissions & SECOND_FACTOR_PERMISSIONS)


def _rule_is_on(session: Session, organization_id: str) -> bool:
    # The same per-transaction read the session limits use: one query, not two.
    config = sessions.security_config(session, organization_id)
    return bool(config is not None and config.require_admin_2fa)


def is_second_factor_required(session: Session, grant: rbac.Grant) -> bool:
    """Whether the grant's organization requires this member to have a second factor."""
    return holds_admin_permissions(grant) and _rule_is_on(session, grant.organization_id)


def must_enrol_second_factor(session: Session, grant: rbac.Grant, user: User) -> bool:
    """Whether ``user`` must set up a second factor before acting with ``grant``."""
    return not user.totp_enabled and is_second_factor_required(session, grant)


def enrolment_pending(session: Session, user: User, organization_id: str | None) -> bool:
    """Whether ``organization_id`` requires a second factor ``user`` has not set up yet.

    The one place the web's sign-in, organization switch and principal share the rule.
    """
    if user.totp_enabled or organization_id is None:
        return False
    grant = rbac.grant_for(session, organization_id, user.id)
    return grant is not None and must_enrol_second_factor(session, grant, user)


def organizations_requiring_second_factor(session: Session, user_id: str) -> list[Organization]:
    """Return the organizations whose rule binds this user now (their TOTP must stay on)."""
    out = []
    for org, _role in rbac.memberships_of(session, user_id):
        grant = rbac.grant_for(session, org.id, user_id)
        if grant is not None and is_second_factor_required(session, grant):
            out.append(org)
    return out


# --- use cases ----------------------------------------------------------------------------


class RecentPasswordCommand(Command):
    """The password again, for actions that need recent authentication."""

    password: str | None = Field(
        None,
        max_length=MAX_PASSWORD,
        repr=False,
        description="your password; needed unless this session entered it in the last 10 minutes",
    )


class ConfirmTotpCommand(RecentPasswordCommand):
    """The first code from the app, and the password when it is not recent."""

    code: OneTimeCode = Field(max_length=40, repr=False)


class DisableTotpCommand(Command):
    """The password, re-checked before the second factor goes."""

    password: str = Field(max_length=MAX_PASSWORD, repr=False)


def start_totp(
    session: Session,
    command: RecentPasswordCommand,
    *,
    user: User,
    web_session: WebSession | None,
    keyring: KeyRing,
    hashing: PasswordHashing,
    limiter: RateLimiter,
) -> TotpEnrollment:
    """Create a TOTP secret to add to an app; it is enabled once a code is confirmed.

    Raises:
        ConflictError: TOTP is already on.
        SpecValidationError: no recent password and none given, or a wrong one.
    """
    if user.totp_enabled:
        raise ConflictError("two-factor sign-in is already on; turn it off before enrolling again")
    reauth.require_recent_password(
        session,
        hashing=hashing,
        limiter=limiter,
        user=user,
        password=command.password,
        web_session=web_session,
    )
    return accounts.start_totp(user, keyring)


def enable_totp(
    session: Session, *, keyring: KeyRing, user: User, code: str, actor: Actor
) -> list[str]:
    """Turn on TOTP after a first valid code; return the recovery codes (shown once).

    The caller has checked recent authentication (:func:`confirm_second_factor` does).

    Raises:
        SpecValidationError: the code is wrong (field ``code``).
    """
    codes = accounts.confirm_totp(user, keyring, code)
    actors.record(
        session,
        actor,
        "auth.totp_enabled",
        organization_id=None,
        target_type="user",
        target_id=user.id,
    )
    return codes


def confirm_second_factor(
    session: Session,
    command: ConfirmTotpCommand,
    *,
    user: User,
    web_session: WebSession | None,
    keyring: KeyRing,
    hashing: PasswordHashing,
    limiter: RateLimiter,
    actor: Actor,
) -> list[str]:
    """Check recent authentication, then turn on TOTP with its first code.

    Raises:
        SpecValidationError: no recent password (field ``password``) or a wrong code
            (field ``code``).
    """
    reauth.require_recent_password(
        session,
        hashing=hashing,
        limiter=limiter,
        user=user,
        password=command.password,
        web_session=web_session,
    )
    return enable_totp(session, keyring=keyring, user=user, code=command.code, actor=actor)


def disable_second_factor(
    session: Session,
    command: DisableTotpCommand,
    *,
    hashing: PasswordHashing,
    user: User,
    actor: Actor,
) -> None:
    """Turn the user's second factor off after re-checking their password.

    The TOTP secret and the recovery codes are forgotten; setting it up again starts over.

    Raises:
        SpecValidationError: the password is wrong (field ``password``).
        PermissionDeniedError: an organization where the user holds admin permissions
            requires a second factor for them (the message names it).
    """
    if user.password_hash is None or not hashing.verify(user.password_hash, command.password):
        security_event("auth.totp_disable_failed", user_id=user.id)
        raise SpecValidationError(
            "wrong password", [FieldError("password", "the password is not correct")]
        )
    required = organizations_requiring_second_factor(session, user.id)
    if required:
        names = " and ".join(org.name for org in required)
        verb = "requires" if len(required) == 1 else "require"
        raise PermissionDeniedError(
            f"{names} {verb} a second factor for members with admin permissions, so yours "
            "stays on while you hold such permissions there"
        )
    accounts.disable_totp(user)
    actors.record(
        session,
        actor,
        "auth.totp_disabled",
        organization_id=None,
        target_type="user",
        target_id=user.id,
    )


__all__ = [
    "ENROL_MESSAGE",
    "ConfirmTotpCommand",
    "DisableTotpCommand",
    "RecentPasswordCommand",
    "confirm_second_factor",
    "disable_second_factor",
    "enable_totp",
    "enrolment_pending",
    "holds_admin_permissions",
    "is_second_factor_required",
    "must_enrol_second_factor",
    "organizations_requiring_second_factor",
    "start_totp",
]
