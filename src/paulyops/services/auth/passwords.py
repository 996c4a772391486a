"""Passwords: changing one's own, setting the first through a one-time link, an
operator's reset.

Each use case re-checks what it must, sets the password through
:func:`paulyops.services.auth.accounts.set_password` (the policy), ends the sessions and
API tokens whoever knew the old password may hold, and writes its own audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from pydantic import Field, model_validator
from sqlalchemy.orm import Session

from paulyops.core.db.models import User, WebSession
from paulyops.core.errors import AuthenticationError, FieldError
from paulyops.core.logging import security_event
from paulyops.core.security.csrf import CsrfTokens
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, links, reauth, sessions, tokens
from paulyops.services.commands import Command
from paulyops.services.onboarding.errors import custom_error

MAX_PASSWORD = 1024


class ChangePasswordCommand(Command):
    """A password change: the current password and the new one."""

    current_password: str = Field(max_length=MAX_PASSWORD, repr=False)
    new_password: str = Field(max_length=MAX_PASSWORD, repr=False)


class SetPasswordCommand(Command):
    """A one-time link's token and the first password."""

    token: str = Field(max_length=500, repr=False)
    password: str = Field(max_length=MAX_PASSWORD, repr=False)


class SetPasswordForm(SetPasswordCommand):
    """The console's form: the password typed twice."""

    confirm: str = Field("", max_length=MAX_PASSWORD, repr=False)

    @model_validator(mode="after")
    def _same_twice(self) -> Self:
        if self.confirm != self.password:
            message = "the two passwords are not the same"
            raise custom_error(
                "passwords_differ", message, field_errors=[FieldError("confirm", message)]
            )
        return self


@dataclass(frozen=True, slots=True)
class PasswordChange:
    """A changed password: the caller's rotated session, and how many API tokens ended."""

    replacement: sessions.NewSession | None
    tokens_revoked: int


def change_password(
    session: Session,
    command: ChangePasswordCommand,
    *,
    hashing: PasswordHashing,
    limiter: RateLimiter,
    csrf: CsrfTokens,
    user: User,
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
    if user.password_hash is None or not hashing.verify(
        user.password_hash, command.current_password
    ):
        security_event("auth.password_change_failed", user_id=user.id)
        raise AuthenticationError("the current password is not correct")
    accounts.set_password(session, hashing, user, command.new_password)
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


def password_link_email(session: Session, token: str) -> str:
    """Return the e-mail address a one-time password link was issued for.

    Raises:
        PermissionDeniedError: the link is unknown, expired or already used.
    """
    return links.user_for_password_token(session, token).email


def set_password_from_link(
    session: Session,
    command: SetPasswordCommand,
    *,
    hashing: PasswordHashing,
    address: str | None,
) -> User:
    """Set a first password through a one-time link (which stops working with it).

    Whoever held the account before the link (a compromised session) is signed out.

    Raises:
        PermissionDeniedError: the link is unknown, expired or already used.
        SpecValidationError: the password breaks the policy (field ``password``).
    """
    user = links.consume_password_token(
        session,
        command.token,
        set_password=lambda user: accounts.set_password(session, hashing, user, command.password),
    )
    sessions.revoke_user_sessions(session, user.id)
    actors.record(
        session,
        Actor("user", user.id, address),
        "user.password_set",
        organization_id=None,
        target_type="user",
        target_id=user.id,
    )
    return user


class ResetPasswordCommand(Command):
    """An operator's reset: the new password (the policy of :mod:`.accounts` checks it)."""

    password: str = Field(repr=False)


@dataclass(frozen=True, slots=True)
class PasswordReset:
    """What an operator's password reset ended."""

    sessions_revoked: int
    tokens_revoked: int


def reset_password(
    session: Session,
    command: ResetPasswordCommand,
    *,
    hashing: PasswordHashing,
    user: User,
    actor: Actor,
) -> PasswordReset:
    """Set a user's password (operator reset); revoke all their sessions and API tokens.

    Raises:
        SpecValidationError: the password breaks the policy.
    """
    accounts.set_password(session, hashing, user, command.password)
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


__all__ = [
    "MAX_PASSWORD",
    "ChangePasswordCommand",
    "PasswordChange",
    "PasswordReset",
    "ResetPasswordCommand",
    "SetPasswordCommand",
    "SetPasswordForm",
    "change_password",
    "password_link_email",
    "reset_password",
    "set_password_from_link",
]
