"""API tokens (bearer credentials for scripts) and the first-run setup token.

Both are random strings shown once and stored only as sha256. API tokens start with
``pot_`` and setup tokens with ``pos_``, so a leaked token is recognisable (log redaction
and secret scanners match these prefixes).

The use cases every front door calls are :func:`create_token` (with its command
:class:`CreateToken`, which holds every rule of a token's input), :func:`revoke_token` and
:func:`list_tokens`; each change writes its own audit row.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AwareDatetime, Field, StringConstraints, field_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from paulyops.core.atomic import write_atomic
from paulyops.core.db.models import ApiToken, SetupToken, User, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import PermissionDeniedError
from paulyops.core.files import make_private_dir
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import rbac
from paulyops.services.auth.expiry import read_expiry
from paulyops.services.auth.permissions import (
    PLATFORM_PERMISSIONS,
    TOKEN_PLATFORM_PERMISSIONS,
    PermissionNames,
)
from paulyops.services.auth.sessions import hash_token
from paulyops.services.commands import Command
from paulyops.services.onboarding.errors import custom_error

if TYPE_CHECKING:
    from paulyops.core.db.activity import ActivityRecorder

API_TOKEN_PREFIX = "pot_"  # noqa: S105  # a public prefix, not a secret
SETUP_TOKEN_PREFIX = "pos_"  # noqa: S105  # a public prefix, not a secret
SETUP_TOKEN_TTL = timedelta(hours=24)
SETUP_TOKEN_FILE = "setup-token"  # noqa: S105  # a file name, not a secret
TOKEN_NAME_MAX = 120


class CreateToken(Command):
    """A new API token: what it is for, what it may do, and until when."""

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=TOKEN_NAME_MAX),
        Field(title="Token name", description="What uses it, e.g. 'backup script'."),
    ]
    permissions: Annotated[PermissionNames, Field(min_length=1)]
    expires_at: AwareDatetime | None = Field(
        None,
        title="Expires after",
        description="When the token stops working (a day alone: the end of that day, UTC); "
        "never when left out.",
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _day_is_its_end(cls, value: object) -> object:
        return read_expiry(value)

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= utcnow():
            raise custom_error("expired", f"expected a time in the future, got {value.isoformat()}")
        return value


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

    The input's rules are :class:`CreateToken`'s; front doors call :func:`create_token`.

    Raises:
        PermissionDeniedError: a permission the creating user does not hold.
    """
    clean = name.strip()
    perms = sorted(set(permissions))
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


def create_token(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    command: CreateToken,
    actor: Actor,
    platform_permissions: frozenset[str] = frozenset(),
) -> IssuedToken:
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
    wanted = list(command.permissions)
    extra = frozenset(wanted) & platform_permissions & TOKEN_PLATFORM_PERMISSIONS
    rbac.refuse_ungrantable(grant, [p for p in wanted if p not in extra], "a token")
    issued = create_api_token(
        scope,
        user_id=grant.user_id,
        name=command.name,
        permissions=wanted,
        holder_permissions=grant.grantable | extra,
        expires_at=command.expires_at,
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


def platform_permissions_of(session: Session, user_id: str) -> frozenset[str]:
    """The instance-wide permissions of ``user_id`` (a platform administrator's, or none)."""
    user = session.get(User, user_id)
    return PLATFORM_PERMISSIONS if user is not None and user.is_platform_admin else frozenset()


def revoke_token(scope: OrgScope, *, grant: rbac.Grant | None, token_id: str, actor: Actor) -> None:
    """Revoke an API token of the organization.

    Args:
        grant: who revokes: they may revoke their own tokens and those of members ranked
            below them. ``None`` is the local operator (the CLI), who may revoke any.

    Raises:
        NotFoundError: no such token in this organization.
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
    revoke_api_token(scope, token_id)
    actors.record(
        scope.session,
        actor,
        "token.revoked",
        organization_id=scope.organization_id,
        target_type="api_token",
        target_id=token_id,
    )


@dataclass(frozen=True, slots=True)
class TokenView:
    """A live API token for display (never its secret or hash)."""

    id: str
    name: str
    prefix: str
    user_id: str
    holder_email: str
    permissions: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


def token_view(row: ApiToken, holder_email: str = "") -> TokenView:
    """Return the display view of a token row."""
    return TokenView(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        user_id=row.user_id,
        holder_email=holder_email or row.user_id,
        permissions=list(row.permissions),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


def list_tokens(scope: OrgScope) -> list[TokenView]:
    """Return the organization's live tokens, newest first, with their holders' e-mails."""
    rows = list_api_tokens(scope)
    ids = {row.user_id for row in rows}
    emails = (
        {
            user_id: email
            for user_id, email in scope.session.execute(
                select(User.id, User.email).where(User.id.in_(ids))
            ).all()
        }
        if ids
        else {}
    )
    return [token_view(row, emails.get(row.user_id, "")) for row in rows]


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
    "TOKEN_NAME_MAX",
    "CreateToken",
    "IssuedToken",
    "TokenView",
    "consume_setup_token",
    "create_api_token",
    "create_token",
    "find_setup_token",
    "issue_setup_token",
    "list_api_tokens",
    "list_tokens",
    "resolve_api_token",
    "revoke_api_token",
    "revoke_token",
    "revoke_user_api_tokens",
    "token_view",
]
