"""Audited changes the web console makes where no other service owns them.

Each function performs one state change and writes exactly one audit row for it, in the
caller's transaction: setting a password from a one-time link, turning the second factor
on and off. Storage connections moved to :mod:`paulyops.services.storage.connections`,
security settings to :mod:`paulyops.services.security_settings`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    Organization,
    User,
)
from paulyops.core.errors import (
    FieldError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.logging import security_event
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, links, second_factor, sessions
from paulyops.services.storage.backends import local_folder

# --- accounts -------------------------------------------------------------------------------


def set_password_from_link(
    session: Session, *, hashing: PasswordHashing, token: str, password: str, address: str | None
) -> User:
    """Set a first password through a one-time link (which stops working with it).

    Raises:
        PermissionDeniedError: the link is unknown, expired or already used.
        SpecValidationError: the password breaks the policy (field ``password``).
    """
    user = links.consume_password_token(
        session,
        token,
        set_password=lambda user: accounts.set_password(session, hashing, user, password),
    )
    actor = Actor("user", user.id, address)
    sessions.revoke_user_sessions(session, user.id)
    actors.record(
        session,
        actor,
        "user.password_set",
        organization_id=None,
        target_type="user",
        target_id=user.id,
    )
    return user


def confirm_second_factor(
    session: Session, *, keyring: KeyRing, user: User, code: str, actor: Actor
) -> list[str]:
    """Turn on TOTP after a first valid code; return the recovery codes (shown once).

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


def second_factor_required_by(session: Session, user_id: str) -> list[Organization]:
    """Return the organizations that require this user's second factor.

    An organization requires it when its security settings say so and the user holds an
    admin permission there (by role or delegation; see ``services/auth/second_factor.py``).
    """
    return second_factor.organizations_requiring_second_factor(session, user_id)


def disable_second_factor(
    session: Session, *, hashing: PasswordHashing, user: User, password: str, actor: Actor
) -> None:
    """Turn the user's second factor off after re-checking their password.

    The TOTP secret and the recovery codes are forgotten; setting it up again starts over.

    Raises:
        SpecValidationError: the password is wrong (field ``password``).
        PermissionDeniedError: an organization where the user holds admin permissions
            requires a second factor for them (the message names it).
    """
    if user.password_hash is None or not hashing.verify(user.password_hash, password):
        security_event("auth.totp_disable_failed", user_id=user.id)
        raise SpecValidationError(
            "wrong password", [FieldError("password", "the password is not correct")]
        )
    required = second_factor_required_by(session, user.id)
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
    "confirm_second_factor",
    "disable_second_factor",
    "local_folder",
    "second_factor_required_by",
    "set_password_from_link",
]
