"""API tokens (bearer credentials for scripts) and the first-run setup token.

Both are random strings shown once and stored only as sha256. API tokens start with
``pot_`` and setup tokens with ``pos_``, so a leaked token is recognisable (log redaction
and secret scanners match these prefixes).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from paulyops.core.atomic import write_atomic
from paulyops.core.db.models import ApiToken, SetupToken, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    FieldError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.files import make_private_dir
from paulyops.services.auth.permissions import unknown_permissions
from paulyops.services.auth.sessions import hash_token

if TYPE_CHECKING:
    from paulyops.core.db.activity import ActivityRecorder

API_TOKEN_PREFIX = "pot_"  # noqa: S105  # a public prefix, not a secret
SETUP_TOKEN_PREFIX = "pos_"  # noqa: S105  # a public prefix, not a secret
SETUP_TOKEN_TTL = timedelta(hours=24)
SETUP_TOKEN_FILE = "setup-token"  # noqa: S105  # a file name, not a secret


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as created: the secret (shown once) and its row."""

    secret: str = field(repr=False)
    row: ApiToken


def create_api_token(
    scope: OrgScope,
    *,
    user_id: str,
    name: str,
    permissions: Iterable[str],
    holder_permissions: frozenset[str],
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Create an API token acting for ``user_id`` with at most the holder's permissions.

    Raises:
        SpecValidationError: a bad name or an unknown permission.
        PermissionDeniedError: a permission the creating user does not hold.
    """
    clean = name.strip()
    if not 1 <= len(clean) <= 120:
        raise SpecValidationError(
            "bad token name", [FieldError("name", "expected 1 to 120 characters")]
        )
    perms = sorted(set(permissions))
    if not perms:
        raise SpecValidationError(
            "no permissions", [FieldError("permissions", "choose at least one")]
        )
    unknown = unknown_permissions(perms)
    if unknown:
        raise SpecValidationError(
            "unknown permission", [FieldError("permissions", f"unknown: {', '.join(unknown)}")]
        )
    lacking = sorted(set(perms) - holder_permissions)
    if lacking:
        raise PermissionDeniedError(
            f"a token cannot hold permissions you lack ({', '.join(lacking)})"
        )
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = scope.add(
        ApiToken(
            name=clean,
            user_id=user_id,
            token_hash=hash_token(secret),
            prefix=secret[:10],
            permissions=perms,
            expires_at=expires_at,
        )
    )
    scope.session.flush()
    return IssuedToken(secret, row)


def resolve_api_token(
    session: Session,
    secret: str,
    *,
    now: datetime | None = None,
    activity: ActivityRecorder | None = None,
) -> ApiToken | None:
    """Return the live token for a bearer secret, or ``None``.

    Never writes: with ``activity``, the use is noted for ``last_used_at`` and written
    outside this transaction (at most once a minute per token).
    """
    if not secret.startswith(API_TOKEN_PREFIX) or len(secret) > 200:
        return None
    now = now or utcnow()
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if activity is not None:
        activity.note_token(row.id, row.last_used_at, now)
    return row


def list_api_tokens(scope: OrgScope) -> list[ApiToken]:
    """Return the organization's tokens that are not revoked, newest first."""
    return list(
        scope.list(ApiToken, ApiToken.revoked_at.is_(None), order_by=ApiToken.created_at.desc())
    )


def revoke_api_token(scope: OrgScope, token_id: str) -> ApiToken:
    """Revoke a token of this organization."""
    row = scope.get(ApiToken, token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def revoke_user_api_tokens(session: Session, user_id: str) -> int:
    """Revoke every live API token of a user, in every organization; return how many.

    Instance-level on purpose: a password change or reset ends what the account's old
    credentials made, wherever they were made.
    """
    now = utcnow()
    rows = session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = now
    return len(rows)


# --- setup token ------------------------------------------------------------------------


def issue_setup_token(session: Session, data_dir: Path) -> str:
    """Create a new setup token (revoking older unused ones) and write it to the data dir.

    The file is mode 0600: whoever can read it can claim the instance.
    """
    now = utcnow()
    session.execute(
        update(SetupToken)
        .where(SetupToken.consumed_at.is_(None), SetupToken.expires_at > now)
        .values(expires_at=now)
    )
    secret = SETUP_TOKEN_PREFIX + secrets.token_urlsafe(24)
    session.add(SetupToken(token_hash=hash_token(secret), expires_at=now + SETUP_TOKEN_TTL))
    session.flush()
    make_private_dir(data_dir)
    write_atomic(data_dir / SETUP_TOKEN_FILE, secret + "\n", mode=0o600)
    return secret


def find_setup_token(session: Session, secret: str, *, now: datetime | None = None) -> SetupToken:
    """Return the valid, unconsumed setup token matching ``secret``.

    Raises:
        PermissionDeniedError: unknown, expired or already used.
    """
    now = now or utcnow()
    if not secret.startswith(SETUP_TOKEN_PREFIX):
        raise PermissionDeniedError("that is not a valid setup token")
    row = session.scalars(
        select(SetupToken).where(SetupToken.token_hash == hash_token(secret.strip()))
    ).first()
    if row is None or row.consumed_at is not None or row.expires_at <= now:
        raise PermissionDeniedError(
            "that setup token is unknown, used or expired; run `paulyops setup token` for a new one"
        )
    return row


def consume_setup_token(
    session: Session, token_id: str, organization_id: str, data_dir: Path
) -> None:
    """Mark a setup token used by a successful provision and delete its file.

    The update only matches an unused, unexpired token, so of two racing provisions with
    the same token exactly one succeeds; the other's transaction is rolled back.

    Raises:
        PermissionDeniedError: the token was used meanwhile or has expired.
    """
    now = utcnow()
    result = session.execute(
        update(SetupToken)
        .where(
            SetupToken.id == token_id,
            SetupToken.consumed_at.is_(None),
            SetupToken.expires_at > now,
        )
        .values(consumed_at=now, consumed_by_org_id=organization_id)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise PermissionDeniedError("that setup token was used or has expired meanwhile")
    (data_dir / SETUP_TOKEN_FILE).unlink(missing_ok=True)


__all__ = [
    "API_TOKEN_PREFIX",
    "SETUP_TOKEN_FILE",
    "SETUP_TOKEN_PREFIX",
    "IssuedToken",
    "consume_setup_token",
    "create_api_token",
    "find_setup_token",
    "issue_setup_token",
    "list_api_tokens",
    "resolve_api_token",
    "revoke_api_token",
    "revoke_user_api_tokens",
]
