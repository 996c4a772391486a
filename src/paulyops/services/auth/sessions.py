"""Server-side browser sessions: created at sign-in, rotated, timed out, listed, revoked.

The cookie carries a random token; the database keeps only its sha256 (a leaked table
yields no usable cookie). Rows are the source of truth, so sessions survive restarts and
keep working while Redis is down; a revocation moves the auth generation
(:mod:`paulyops.core.db.generation`), so a principal cached anywhere is dropped on the
next request and the session stops working in every process at once.

Resolving a session never writes: activity stamps and the revocation of idle sessions
are noted in an :class:`~paulyops.core.db.activity.ActivityRecorder` and written
outside the request's transaction.

Timeouts come from the organization's :class:`~paulyops.core.db.models.SecurityConfig`
(idle minutes, absolute hours). Sessions not bound to an organization yet (the first-run
setup session, a sign-in waiting for its second factor) use short fixed limits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.attributes import set_committed_value

from paulyops.core.db.models import SecurityConfig, User, WebSession, utcnow
from paulyops.core.errors import NotFoundError

if TYPE_CHECKING:
    from paulyops.core.db.activity import ActivityRecorder

SessionKind = Literal["user", "setup", "pending_2fa"]

# Without an organization's settings: a setup session lasts as long as its setup token
# could (24 h), but dies after an hour of inactivity; a half-finished sign-in gets 5 minutes.
DEFAULT_LIMITS: dict[str, tuple[int, int]] = {
    "user": (60, 12 * 60),
    "setup": (60, 24 * 60),
    "pending_2fa": (5, 5),
}
_CONFIGS = "paulyops_security_configs"


def hash_token(token: str) -> str:
    """Return the sha256 hex digest stored for a session or API token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    """A created session and the cookie value (shown once, never stored)."""

    token: str = field(repr=False)
    row: WebSession


def security_config(session: Session, organization_id: str) -> SecurityConfig | None:
    """Return the organization's security settings, read at most once per transaction."""
    configs: dict[str, SecurityConfig | None] = session.info.setdefault(_CONFIGS, {})
    if organization_id not in configs:
        configs[organization_id] = session.scalars(
            select(SecurityConfig).where(SecurityConfig.organization_id == organization_id)
        ).first()
    return configs[organization_id]


def idle_limit(session: Session, row: WebSession) -> timedelta:
    """Return how long ``row`` may stay unused before it ends."""
    idle, _absolute = _limits(session, row.kind, row.organization_id)
    return timedelta(minutes=idle)


def _limits(session: Session, kind: str, organization_id: str | None) -> tuple[int, int]:
    if kind == "user" and organization_id is not None:
        config = security_config(session, organization_id)
        if config is not None:
            return config.session_idle_minutes, config.session_absolute_hours * 60
    return DEFAULT_LIMITS[kind]


def create_session(
    session: Session,
    *,
    user_id: str | None,
    organization_id: str | None,
    kind: SessionKind = "user",
    client_address: str | None = None,
    user_agent: str | None = None,
) -> NewSession:
    """Create a session row and return it with its cookie token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    _idle, absolute = _limits(session, kind, organization_id)
    row = WebSession(
        token_hash=hash_token(token),
        user_id=user_id,
        organization_id=organization_id,
        kind=kind,
        client_address=client_address,
        user_agent=(user_agent or "")[:300] or None,
        last_seen_at=now,
        expires_at=now + timedelta(minutes=absolute),
    )
    session.add(row)
    session.flush()
    return NewSession(token, row)


def resolve_session(
    session: Session,
    token: str,
    *,
    now: datetime | None = None,
    activity: ActivityRecorder | None = None,
) -> WebSession | None:
    """Return the live session for a cookie token, or ``None`` if unknown, revoked or expired.

    Enforces the absolute and idle timeouts without writing: with ``activity``, the use is
    noted (and an idle session queued for revocation) for a write outside this
    transaction.
    """
    found = resolve_session_and_user(session, token, now=now, activity=activity)
    return found[0] if found is not None else None


def resolve_session_and_user(
    session: Session,
    token: str,
    *,
    now: datetime | None = None,
    activity: ActivityRecorder | None = None,
) -> tuple[WebSession, User | None] | None:
    """Like :func:`resolve_session`, and return the session's user, read by the same query."""
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    found = session.execute(
        select(WebSession, User)
        .outerjoin(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == hash_token(token))
    ).first()
    if found is None:
        return None
    row, user = found
    if row.revoked_at is not None or row.expires_at <= now:
        return None
    if not is_active_at(session, row, now, activity=activity):
        return None
    if activity is not None:
        activity.note_session(row.id, row.last_seen_at, now)
    return row, user


def is_active_at(
    session: Session, row: WebSession, now: datetime, *, activity: ActivityRecorder | None
) -> bool:
    """Whether ``row`` was used recently enough; queue its revocation when it was not."""
    last = activity.last_seen(row.id, row.last_seen_at) if activity else row.last_seen_at
    if last + idle_limit(session, row) > now:
        return True
    if activity is not None:
        activity.revoke_idle(row.id, now)
    return False


def rotate_session(session: Session, old: WebSession, **changes: str | None) -> NewSession:
    """Replace ``old`` with a new session id (sign-in, privilege change, org switch).

    Args:
        changes: new ``user_id``, ``organization_id`` or ``kind`` for the new session.
    """
    old.revoked_at = utcnow()
    kind = changes.get("kind", old.kind)
    new = create_session(
        session,
        user_id=changes.get("user_id", old.user_id),
        organization_id=changes.get("organization_id", old.organization_id),
        kind=kind if kind in DEFAULT_LIMITS else "user",  # type: ignore[arg-type]  # checked
        client_address=old.client_address,
        user_agent=old.user_agent,
    )
    # Same browser, same person: a password entered moments ago still counts (reauth.py).
    if new.row.user_id == old.user_id:
        new.row.password_confirmed_at = old.password_confirmed_at
    return new


def revoke_session(session: Session, session_id: str, *, user_id: str | None = None) -> WebSession:
    """Revoke one session; with ``user_id``, only one of that user's own sessions.

    Raises:
        NotFoundError: no such session (or not the user's).
    """
    row = session.get(WebSession, session_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise NotFoundError("session not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def revoke_user_sessions(session: Session, user_id: str, *, keep: str | None = None) -> int:
    """Revoke every live session of a user except ``keep``; return how many."""
    now = utcnow()
    rows = session.scalars(
        select(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
    ).all()
    count = 0
    for row in rows:
        if row.id != keep:
            row.revoked_at = now
            count += 1
    return count


def holds_csrf_hash(row: WebSession, token_hash: str) -> bool:
    """Whether the session row's stored CSRF hash is ``token_hash``.

    A row from the principal cache is a snapshot: another request may have stored a new
    hash since (the CSRF hash does not move the auth generation). Before concluding the
    token must be replaced, which writes, read the stored hash once.
    """
    if row.csrf_token_hash == token_hash:
        return True
    session = object_session(row)
    if session is None:
        return False
    stored = session.scalar(select(WebSession.csrf_token_hash).where(WebSession.id == row.id))
    if stored != token_hash:
        return False
    set_committed_value(row, "csrf_token_hash", stored)  # not a change: nothing to write
    return True


def store_csrf_hash(row: WebSession, token_hash: str, *, writer: Session | None = None) -> None:
    """Store the hash of the session's form token on its row.

    Args:
        writer: a short write transaction of its own to store it in (a safe request on
            SQLite, whose own transaction must stay read-only); ``None`` stores it in the
            row's own transaction.
    """
    if writer is None:
        row.csrf_token_hash = token_hash
        return
    writer.execute(
        update(WebSession).where(WebSession.id == row.id).values(csrf_token_hash=token_hash)
    )
    set_committed_value(row, "csrf_token_hash", token_hash)


def list_sessions(session: Session, user_id: str) -> list[WebSession]:
    """Return the user's live sessions, newest first."""
    now = utcnow()
    return list(
        session.scalars(
            select(WebSession)
            .where(
                WebSession.user_id == user_id,
                WebSession.revoked_at.is_(None),
                WebSession.expires_at > now,
                WebSession.kind == "user",
            )
            .order_by(WebSession.created_at.desc())
        ).all()
    )


__all__ = [
    "NewSession",
    "create_session",
    "hash_token",
    "holds_csrf_hash",
    "idle_limit",
    "is_active_at",
    "list_sessions",
    "resolve_session",
    "resolve_session_and_user",
    "revoke_session",
    "revoke_user_sessions",
    "rotate_session",
    "security_config",
    "store_csrf_hash",
]
