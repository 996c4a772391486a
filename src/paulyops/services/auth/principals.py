"""Who is calling: resolve a presented credential to a :class:`Principal`, with a cache.

A credential is an API token (``pot_...``) or a browser session's cookie token. Resolving
it reads the token or session row, its user and their grant in the active organization,
and holds the result to the organization's second-factor rule
(:mod:`paulyops.services.auth.second_factor`).

Safe requests take the principal from a short-lived per-process :class:`PrincipalCache`
while the auth generation (:mod:`paulyops.core.db.generation`) is unchanged: one
primary-key read instead of six to eight queries. Every revocation, role, membership,
password or security-setting change moves the generation in its own transaction, so the
next request anywhere resolves from the database again. Unsafe requests always resolve
from the database.

The web layer only finds the credential in the request and passes it here
(``web/auth.py``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from paulyops.core.db import generation
from paulyops.core.db.models import User, WebSession, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from paulyops.core.logging import security_event
from paulyops.services.actor import Actor
from paulyops.services.auth import rbac, second_factor
from paulyops.services.auth.permissions import PLATFORM_PERMISSIONS, TOKEN_PLATFORM_PERMISSIONS
from paulyops.services.auth.sessions import hash_token, idle_limit, resolve_session_and_user
from paulyops.services.auth.tokens import resolve_api_token

if TYPE_CHECKING:
    from paulyops.core.db.activity import ActivityRecorder
    from paulyops.core.db.engine import Database

# How long a cached principal may be served at most, even with the generation unchanged:
# it bounds what a change made behind the ORM's back (raw SQL) could leave in place.
PRINCIPAL_CACHE_SECONDS = 30.0
PRINCIPAL_CACHE_SIZE = 4096

CredentialKind = Literal["token", "cookie"]

# The rows a principal carries. Interfaces pass them back to use cases as they are
# (``user=principal.user``) and name their type through these aliases, never the models.
UserRow: TypeAlias = User
SessionRow: TypeAlias = WebSession


@dataclass
class Principal:
    """The authenticated caller of one request."""

    kind: str  # "session", "token" or "anonymous"
    user: User | None = None
    organization_id: str | None = None
    permissions: frozenset[str] = frozenset()
    web_session: WebSession | None = None
    grant: rbac.Grant | None = None
    token_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str | None:
        """The acting user's id."""
        return self.user.id if self.user else None

    @property
    def is_authenticated(self) -> bool:
        """Whether a user is signed in (session) or a token was presented."""
        return self.user is not None

    @property
    def must_enrol_second_factor(self) -> bool:
        """Whether the caller's organization holds them to enrol a second factor first."""
        return bool(self.extra.get("must_enroll_second_factor"))

    def can(self, permission: str) -> bool:
        """Whether the caller holds ``permission`` in their active organization."""
        return permission in self.permissions

    def actor(self, address: str | None) -> Actor:
        """Return the caller as the audit trail names it."""
        if self.kind == "token":
            return Actor("token", self.token_id, address)
        return Actor("user", self.user_id, address)

    def scope(self, session: Session) -> OrgScope:
        """Return the caller's active organization as a query scope.

        Raises:
            NotFoundError: the caller has no active organization.
        """
        if self.organization_id is None:
            raise NotFoundError("no active organization; sign in to one first")
        return OrgScope(session, self.organization_id)

    def acting_grant(self) -> rbac.Grant:
        """Return the grant the caller acts with (a token: its permissions only)."""
        assert self.grant is not None  # a permission check passed, so there is a grant
        if self.kind == "token":
            g = self.grant
            return replace(
                g, permissions=self.permissions, grantable=self.permissions & g.grantable
            )
        return self.grant


_Model = TypeVar("_Model", User, WebSession)


def _snapshot(obj: _Model) -> _Model:
    """Return a detached copy of a loaded row that no session will ever own."""
    state = inspect(obj)
    copy: _Model = state.mapper.class_manager.new_instance()
    for attr in state.mapper.column_attrs:
        if attr.key in state.dict:
            set_committed_value(copy, attr.key, state.dict[attr.key])
    make_transient_to_detached(copy)
    return copy


@dataclass(frozen=True, slots=True)
class CachedPrincipal:
    """A resolved principal as cached: detached row copies plus what the rules derived."""

    generation: int
    stored_at: float
    kind: str
    user: User
    organization_id: str | None
    permissions: frozenset[str]
    grant: rbac.Grant | None
    token_id: str | None
    web_session: WebSession | None
    extra: tuple[tuple[str, Any], ...]
    expires_at: datetime | None
    idle: timedelta | None

    def principal(self, session: Session) -> Principal:
        """Return a fresh :class:`Principal` whose rows belong to ``session`` (no SQL)."""
        return Principal(
            self.kind,
            user=session.merge(self.user, load=False),
            organization_id=self.organization_id,
            permissions=self.permissions,
            web_session=(session.merge(self.web_session, load=False) if self.web_session else None),
            grant=self.grant,
            token_id=self.token_id,
            extra=dict(self.extra),
        )


class PrincipalCache:
    """Principals of recent safe requests, by credential hash, valid for one generation.

    Args:
        ttl: seconds an entry is served at most.
        max_entries: entries kept; when full, the oldest half is dropped.
    """

    def __init__(
        self, *, ttl: float = PRINCIPAL_CACHE_SECONDS, max_entries: int = PRINCIPAL_CACHE_SIZE
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, CachedPrincipal] = {}
        self._lock = threading.Lock()

    def get(self, key: str, current_generation: int) -> CachedPrincipal | None:
        """Return the entry for ``key`` if it is fresh and of ``current_generation``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generation != current_generation or time.monotonic() - entry.stored_at > self.ttl:
            with self._lock:
                self._entries.pop(key, None)
            return None
        return entry

    def put(self, key: str, entry: CachedPrincipal) -> None:
        """Store ``entry`` under ``key``."""
        with self._lock:
            if len(self._entries) >= self.max_entries:
                oldest = sorted(self._entries.items(), key=lambda item: item[1].stored_at)
                for old_key, _entry in oldest[: self.max_entries // 2]:
                    del self._entries[old_key]
            self._entries[key] = entry

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where and how a credential is resolved: the database, the cache, the caller."""

    db: Database
    cache: PrincipalCache
    activity: ActivityRecorder
    address: str | None


def authenticate(
    session: Session,
    lookup: Lookup,
    kind: CredentialKind,
    secret: str,
    *,
    unsafe: bool,
) -> Principal:
    """Resolve the caller from a bearer token or a session cookie's token.

    Safe requests (``unsafe=False``) are served from the cache while the auth generation
    is unchanged; the generation is read before anything else, so an entry never carries
    rows older than the generation it is stored under.

    Raises:
        AuthenticationError: an unknown, revoked or expired API token, or one whose user
            lost access.
        PermissionDeniedError: an API token of an account that must enrol a second
            factor first.
    """
    now = utcnow()
    if unsafe:
        return _resolve(session, lookup, kind, secret, now)[0]
    key = f"{kind}:{hash_token(secret)}"
    # SQLite: the latest committed generation in one statement outside the transaction,
    # so a hit never checks out the session's connection (no BEGIN, no COMMIT).
    latest = generation.read_committed(lookup.db.engine)
    if latest is not None:
        hit = lookup.cache.get(key, latest)
        if hit is not None and _still_valid(hit, now, lookup.activity):
            return hit.principal(session)
    current = generation.read(session)
    hit = lookup.cache.get(key, current) if latest is None else None
    if hit is not None and _still_valid(hit, now, lookup.activity):
        return hit.principal(session)
    principal, expires_at = _resolve(session, lookup, kind, secret, now)
    if principal.user is not None and principal.kind in {"session", "token"}:
        lookup.cache.put(key, _cache_entry(session, principal, current, expires_at))
    return principal


def _still_valid(hit: CachedPrincipal, now: datetime, activity: ActivityRecorder) -> bool:
    if hit.expires_at is not None and hit.expires_at <= now:
        return False
    if hit.web_session is not None:
        row = hit.web_session
        if hit.idle is not None and activity.last_seen(row.id, row.last_seen_at) + hit.idle <= now:
            return False  # resolving again revokes it
        activity.note_session(row.id, row.last_seen_at, now)
    elif hit.token_id is not None:
        activity.note_token(hit.token_id, None, now)
    return True


def _cache_entry(
    session: Session, principal: Principal, current: int, expires_at: datetime | None
) -> CachedPrincipal:
    assert principal.user is not None  # only signed-in principals are cached
    row = principal.web_session
    return CachedPrincipal(
        generation=current,
        stored_at=time.monotonic(),
        kind=principal.kind,
        user=_snapshot(principal.user),
        organization_id=principal.organization_id,
        permissions=principal.permissions,
        grant=principal.grant,
        token_id=principal.token_id,
        web_session=_snapshot(row) if row is not None else None,
        extra=tuple(principal.extra.items()),
        expires_at=expires_at,
        idle=idle_limit(session, row) if row is not None else None,
    )


def _resolve(
    session: Session, lookup: Lookup, kind: CredentialKind, secret: str, now: datetime
) -> tuple[Principal, datetime | None]:
    """Resolve the caller from the database (no cache); also return when it expires.

    The organization's second-factor rule is applied here, before anything is cached:
    whatever changes its outcome (enrolment, the rule, a role) moves the auth generation.
    """
    if kind == "token":
        principal, expires_at = _token_principal(session, lookup, secret, now)
    else:
        principal, expires_at = _session_principal(session, lookup, secret, now)
    return apply_second_factor_rule(session, principal), expires_at


def _token_principal(
    session: Session, lookup: Lookup, secret: str, now: datetime
) -> tuple[Principal, datetime | None]:
    token = resolve_api_token(session, secret, now=now, activity=lookup.activity)
    if token is None:
        security_event("auth.bad_token", address=lookup.address)
        raise AuthenticationError("the API token is unknown, revoked or expired")
    user = session.get(User, token.user_id)
    grant = rbac.grant_for(session, token.organization_id, token.user_id)
    if user is None or not user.is_active or grant is None:
        raise AuthenticationError("the API token's user no longer has access")
    principal = Principal(
        "token",
        user=user,
        organization_id=token.organization_id,
        # Never a delegated permission: a token outlives any delegation. A platform
        # administrator's token may also hold the read-only monitoring permissions, for as
        # long as its user stays a platform administrator.
        permissions=frozenset(token.permissions)
        & (grant.grantable | (TOKEN_PLATFORM_PERMISSIONS if user.is_platform_admin else set())),
        grant=grant,
        token_id=token.id,
    )
    return principal, token.expires_at


def _session_principal(
    session: Session, lookup: Lookup, secret: str, now: datetime
) -> tuple[Principal, datetime | None]:
    found = resolve_session_and_user(session, secret, now=now, activity=lookup.activity)
    row, user = found if found is not None else (None, None)
    if row is None or row.kind != "user" or row.user_id is None:
        return Principal("anonymous", web_session=row), None
    if user is None or not user.is_active:
        return Principal("anonymous"), None
    grant = rbac.grant_for(session, row.organization_id, user.id) if row.organization_id else None
    perms: set[str] = set(grant.permissions) if grant else set()
    if user.is_platform_admin:
        perms.update(PLATFORM_PERMISSIONS)
    principal = Principal(
        "session",
        user=user,
        organization_id=row.organization_id,
        permissions=frozenset(perms),
        web_session=row,
        grant=grant,
    )
    return principal, row.expires_at


def apply_second_factor_rule(session: Session, principal: Principal) -> Principal:
    """Hold a resolved caller to their organization's "second factor for admins" rule.

    The rule binds by permission (see :mod:`paulyops.services.auth.second_factor`). A
    bound member without TOTP keeps a session that may only manage its own account
    (enrol TOTP, sign out): no permissions, ``extra["must_enroll_second_factor"]``. Their
    API tokens are refused outright, whenever they were made.

    Raises:
        PermissionDeniedError: an API token of an account that must enrol first (403).
    """
    user, grant = principal.user, principal.grant
    if user is None or grant is None:
        return principal
    if not second_factor.must_enrol_second_factor(session, grant, user):
        return principal
    if principal.kind == "token":
        security_event("auth.token_refused_second_factor", user_id=user.id)
        raise PermissionDeniedError(second_factor.ENROL_MESSAGE)
    extra = {**principal.extra, "must_enroll_second_factor": True}
    return replace(principal, permissions=frozenset(), extra=extra)


__all__ = [
    "PRINCIPAL_CACHE_SECONDS",
    "PRINCIPAL_CACHE_SIZE",
    "CachedPrincipal",
    "CredentialKind",
    "Lookup",
    "Principal",
    "PrincipalCache",
    "SessionRow",
    "UserRow",
    "apply_second_factor_rule",
    "authenticate",
]
