"""Audited changes the web console makes where no other service owns them.

Each function performs one state change and writes exactly one audit row for it, in the
caller's transaction. Storage connections moved to
:mod:`paulyops.services.storage.connections`, security settings to
:mod:`paulyops.services.security_settings`; setting a password from a one-time link and
turning the second factor on and off to :mod:`paulyops.services.auth.passwords` and
:mod:`paulyops.services.auth.second_factor`. The old names left here delegate to them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    Organization,
    User,
)
from paulyops.core.security.crypto import (
    KeyRing,
)
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services.actor import Actor
from paulyops.services.auth import passwords, second_factor
from paulyops.services.commands import parse

# Bounds for the organization's session timeouts.
IDLE_MINUTES = (5, 24 * 60)
ABSOLUTE_HOURS = (1, 30 * 24)
BACKUP_STRATEGIES = ("local", "cloud", "hybrid")
RETENTION_DAYS = (1, 36500)


# --- accounts -------------------------------------------------------------------------------


# The account use cases live in ``services/auth/passwords.py`` and
# ``services/auth/second_factor.py``; these names stay for the pages not switched yet.


def set_password_from_link(
    session: Session, *, hashing: PasswordHashing, token: str, password: str, address: str | None
) -> User:
    """Set a first password through a one-time link: see :mod:`.auth.passwords`."""
    command = parse(passwords.SetPasswordCommand, {"token": token, "password": password})
    return passwords.set_password_from_link(session, command, hashing=hashing, address=address)


def confirm_second_factor(
    session: Session, *, keyring: KeyRing, user: User, code: str, actor: Actor
) -> list[str]:
    """Turn on TOTP after a first valid code: see :func:`.second_factor.enable_totp`."""
    return second_factor.enable_totp(session, keyring=keyring, user=user, code=code, actor=actor)


def second_factor_required_by(session: Session, user_id: str) -> list[Organization]:
    """Return the organizations that require this user's second factor."""
    return second_factor.organizations_requiring_second_factor(session, user_id)


def disable_second_factor(
    session: Session, *, hashing: PasswordHashing, user: User, password: str, actor: Actor
) -> None:
    """Turn the second factor off: see :func:`.second_factor.disable_second_factor`."""
    command = parse(second_factor.DisableTotpCommand, {"password": password})
    second_factor.disable_second_factor(session, command, hashing=hashing, user=user, actor=actor)
