"""One-time links: opaque random tokens whose sha256 alone is stored.

A link names nothing readable: no user id, no password-hash fragment, no organization.
Whoever presents it is looked up by the token's hash, and the row says what the link
is for, until when, and whether it was already used. This module issues and resolves the
password links of new owners; :mod:`paulyops.services.auth.invitations` uses the same
token helpers for invitation links.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from paulyops.core.db.models import PasswordLink, User, utcnow
from paulyops.core.errors import PermissionDeniedError

PASSWORD_LINK_TTL = timedelta(days=7)
# 32 random bytes: as strong as the session ids; longer tokens only make links unwieldy.
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 200


def new_token() -> tuple[str, str]:
    """Return a new random token and its hash (store the hash, hand out the token)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """Return the hex sha256 a one-time token is stored and looked up by."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def link(public_url: str, path: str, token: str) -> str:
    """Return the absolute link ``<public_url><path>?token=<token>``."""
    return f"{public_url.rstrip('/')}{path}?token={token}"


def issue_password_link(session: Session, user: User, public_url: str) -> str:
    """Return a one-time link that lets ``user`` set a first password (valid 7 days)."""
    token, token_hash = new_token()
    session.add(
        PasswordLink(
            user_id=user.id, token_hash=token_hash, expires_at=utcnow() + PASSWORD_LINK_TTL
        )
    )
    session.flush()
    return link(public_url, "/set-password", token)


def _password_link_row(session: Session, token: str) -> PasswordLink:
    row = (
        session.scalars(
            select(PasswordLink).where(PasswordLink.token_hash == hash_token(token))
        ).first()
        if token and len(token) <= MAX_TOKEN_LENGTH
        else None
    )
    if row is None:
        raise PermissionDeniedError("this link is not valid")
    if row.used_at is not None:
        raise PermissionDeniedError("this link was already used; ask an admin for a new one")
    if row.expires_at <= utcnow():
        raise PermissionDeniedError("this link has expired; ask an admin for a new one")
    return row


def user_for_password_token(session: Session, token: str) -> User:
    """Return the user a password link was issued for, if it is unused and fresh.

    The link also dies once the account has a password by any other way (an operator's
    reset, say): it was issued to choose the first one.

    Raises:
        PermissionDeniedError: the link is unknown, expired or already used.
    """
    row = _password_link_row(session, token)
    user = session.get(User, row.user_id)
    if user is None or user.password_hash is not None:
        raise PermissionDeniedError("this link was already used; ask an admin for a new one")
    return user


def consume_password_token(
    session: Session, token: str, *, set_password: Callable[[User], None]
) -> User:
    """Set the first password through a link, then mark the link used; return the user.

    ``set_password`` runs first: when it refuses the password (policy), the link stays
    usable, so a typo does not burn it.

    Raises:
        PermissionDeniedError: the link is unknown, expired or already used.
    """
    user = user_for_password_token(session, token)
    row = _password_link_row(session, token)
    set_password(user)
    # Claim the link in one guarded UPDATE: of two uses racing each other, the second
    # waits for the first's row lock, matches nothing and is refused (its password is
    # rolled back with the request), so a link sets a password once.
    now = utcnow()
    result = session.execute(
        update(PasswordLink)
        .where(
            PasswordLink.id == row.id,
            PasswordLink.used_at.is_(None),
            PasswordLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise PermissionDeniedError("this link was already used; ask an admin for a new one")
    set_committed_value(row, "used_at", now)
    return user


__all__ = [
    "PASSWORD_LINK_TTL",
    "consume_password_token",
    "hash_token",
    "issue_password_link",
    "link",
    "new_token",
    "user_for_password_token",
]
