"""Recent authentication: actions that need the password again.

Enrolling a second factor, turning it off and creating API tokens hand out lasting power
over the account, so a stolen session cookie or an unattended browser must not be enough
for them. They need the account's password entered **in the same request**, or within
:data:`REAUTH_WINDOW` in the same browser session (signing in with the password counts).
Each password entered here counts against the per-account sign-in limit, so this is no
side door for guessing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import User, WebSession, utcnow
from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.core.logging import security_event
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services.auth.accounts import normalize_email

# How long a password entered in a browser session vouches for it (GitHub's "sudo mode"
# uses a similar window): long enough to finish a TOTP enrolment, short enough that a
# borrowed laptop an hour later is not.
REAUTH_WINDOW = timedelta(minutes=10)
_MINUTES = int(REAUTH_WINDOW.total_seconds() // 60)
PASSWORD_NEEDED = (
    f"enter your password again: this needs the password from the last {_MINUTES} minutes"
)


def account_limit_key(user: User) -> str:
    """The per-account key shared with sign-in, so every password guess counts once."""
    return f"acct:{normalize_email(user.email)}"


def mark_password_confirmed(row: WebSession, *, now: datetime | None = None) -> None:
    """Remember that the session's user just entered their password."""
    row.password_confirmed_at = now or utcnow()


def _confirmed_recently(session: Session, row: WebSession, now: datetime) -> bool:
    # Read the column afresh: a principal cached across requests must not vouch for itself.
    confirmed = session.scalars(
        select(WebSession.password_confirmed_at).where(WebSession.id == row.id)
    ).first()
    return confirmed is not None and now - confirmed <= REAUTH_WINDOW


def require_recent_password(
    session: Session,
    *,
    hashing: PasswordHashing,
    limiter: RateLimiter,
    user: User,
    password: str | None,
    web_session: WebSession | None,
    address: str | None = None,
    field: str = "password",
) -> None:
    """Pass when ``password`` is the user's, or the session confirmed it recently.

    A correct password also refreshes the session's window.

    Raises:
        SpecValidationError: no recent password and none given, or a wrong one (``field``).
        RateLimitedError: too many password attempts for this account.
    """
    now = utcnow()
    if not password:
        if web_session is not None and _confirmed_recently(session, web_session, now):
            return
        raise SpecValidationError("password needed", [FieldError(field, PASSWORD_NEEDED)])
    limiter.enforce("signin_account", account_limit_key(user), address=address)
    if user.password_hash is None or not hashing.verify(user.password_hash, password):
        security_event("auth.reauth_failed", user_id=user.id, address=address)
        raise SpecValidationError(
            "wrong password", [FieldError(field, "the password is not correct")]
        )
    if web_session is not None:
        mark_password_confirmed(web_session, now=now)


__all__ = [
    "PASSWORD_NEEDED",
    "REAUTH_WINDOW",
    "account_limit_key",
    "mark_password_confirmed",
    "require_recent_password",
]
