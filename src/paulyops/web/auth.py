"""Who is calling, and may they: the request's principal and the ``require`` guard.

A request is authenticated by exactly one of:

* ``Authorization: Bearer pot_...`` — an API token; CSRF-exempt (a browser never adds it);
* the session cookie — a browser session; unsafe methods must carry the CSRF token
  (``X-CSRF-Token`` header or ``csrf_token`` form field).

Each route declares one access rule: :data:`Public`, ``require("permission")``,
:data:`Authenticated` (any signed-in user, for their own account) or ``SetupToken``.

Safe requests (GET, HEAD) take the principal from a short-lived per-process cache
(:class:`PrincipalCache`) while the auth generation (:mod:`paulyops.core.db.generation`)
is unchanged: one primary-key read instead of six to eight queries. Every revocation,
role, membership, password or security-setting change moves the generation in its own
transaction, so the next request anywhere resolves from the database again. Unsafe
requests always resolve from the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from anyio import CancelScope, CapacityLimiter, to_thread
from fastapi import Depends, Request, Response
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from starlette.concurrency import run_in_threadpool

from paulyops.core.db import generation
from paulyops.core.db.models import User, WebSession, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from paulyops.core.logging import security_event
from paulyops.core.security import csrf
from paulyops.services.actor import Actor
from paulyops.services.auth import rbac, second_factor
from paulyops.services.auth.permissions import PLATFORM_PERMISSIONS
from paulyops.services.auth.sessions import (
    hash_token,
    idle_limit,
    resolve_session_and_user,
)
from paulyops.services.auth.tokens import resolve_api_token
from paulyops.web.deps import ACCESS_ATTR, client_address, get_instance
from paulyops.web.ratelimit import limit_request_async, off_loop

SESSION_COOKIE = "paulyops_session"
SECURE_SESSION_COOKIE = "__Host-paulyops_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# FastAPI's exit stack for the whole request (its AsyncExitStackMiddleware), left after
# the response is sent.
REQUEST_EXIT_STACK = "fastapi_middleware_astack"
# How long a cached principal may be served at most, even with the generation unchanged:
# it bounds what a change made behind the ORM's back (raw SQL) could leave in place.
PRINCIPAL_CACHE_SECONDS = 30.0
PRINCIPAL_CACHE_SIZE = 4096


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


@asynccontextmanager
async def _opened(
    manager: AbstractContextManager[Session], *, enter_on_loop: bool
) -> AsyncIterator[Session]:
    """Enter ``manager`` (on the loop or in a worker thread) and leave it in a worker thread.

    Like FastAPI's ``contextmanager_in_threadpool``, but a read session is entered on the
    event loop: it connects lazily at its first statement (in whichever worker thread runs
    it), so entering does no I/O and one thread-pool hop is saved. Leaving commits or
    rolls back, which may wait on the database: in a worker thread, shielded from
    cancellation so the connection goes back to the pool; a read session that never took
    a connection (a cached principal on SQLite) has nothing to send and leaves on the loop.
    """
    exit_limiter = CapacityLimiter(1)  # leaving never waits for a free worker
    session = manager.__enter__() if enter_on_loop else await run_in_threadpool(manager.__enter__)
    try:
        yield session
    except BaseException as err:
        if enter_on_loop and not _touched(session):
            if not manager.__exit__(type(err), err, err.__traceback__):
                raise
            return
        with CancelScope(shield=True):
            suppressed = bool(
                await to_thread.run_sync(
                    manager.__exit__, type(err), err, err.__traceback__, limiter=exit_limiter
                )
            )
        if not suppressed:
            raise
    else:
        if enter_on_loop and not _touched(session):
            manager.__exit__(None, None, None)  # nothing to commit: no I/O
            return
        with CancelScope(shield=True):
            await to_thread.run_sync(manager.__exit__, None, None, None, limiter=exit_limiter)


_CONNECTED = "paulyops_connected"


@event.listens_for(Session, "after_begin")
def _note_connected(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[_CONNECTED] = True


def _touched(session: Session) -> bool:
    """Whether leaving ``session`` may do I/O: it took a connection or has pending rows."""
    return bool(session.info.get(_CONNECTED) or session.new or session.dirty or session.deleted)


async def db_session(request: Request) -> AsyncIterator[Session]:
    """Yield the request's database transaction (committed when the route succeeds)."""
    cached: Session | None = getattr(request.state, "db", None)
    if cached is not None:
        yield cached
        return
    instance = get_instance(request)
    instance.require_ready()
    # State-changing requests take SQLite's write lock at BEGIN (see Database.write_session),
    # so their read-then-write transactions (audit appends) serialize instead of failing.
    # That may wait, so they are entered off the loop; a read session begins lazily.
    unsafe = csrf.is_unsafe_method(request.method)
    opener = instance.db.write_session if unsafe else instance.db.session
    refused: AuthenticationError | None = None
    async with _opened(opener(), enter_on_loop=not unsafe) as session:
        request.state.db = session
        try:
            yield session
        except AuthenticationError as err:
            # A refused sign-in still leaves its audit row: commit, then answer 401.
            if not getattr(request.state, "keep_writes_on_auth_failure", False):
                raise
            refused = err
        finally:
            request.state.db = None
    if refused is not None:
        raise refused


# scope="function": commit before the response leaves, so the client's next request (a
# redirect after a form post) always sees what this one wrote.
DbSession = Annotated[Session, Depends(db_session, scope="function")]


def session_cookie_name(request: Request) -> str:
    """The cookie name: ``__Host-`` prefixed (and Secure) over https."""
    return SECURE_SESSION_COOKIE if request.url.scheme == "https" else SESSION_COOKIE


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, and Secure + ``__Host-`` over https."""
    response.set_cookie(
        session_cookie_name(request),
        token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def get_principal(request: Request, session: DbSession) -> Principal:
    """Authenticate the request (bearer token first, then the session cookie)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = authenticate(request, session)
    request.state.principal = principal
    return principal


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


def principal_cache(request: Request) -> PrincipalCache:
    """Return the app's principal cache (one per process and app)."""
    cache: PrincipalCache | None = getattr(request.app.state, "principal_cache", None)
    if cache is None:
        cache = PrincipalCache()
        request.app.state.principal_cache = cache
    return cache


def _credential(request: Request) -> tuple[str, str] | None:
    """Return ("token" or "cookie", the presented secret), or ``None`` for neither."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise AuthenticationError("expected 'Authorization: Bearer <token>'")
        return "token", secret.strip()
    cookie = request.cookies.get(session_cookie_name(request))
    return ("cookie", cookie) if cookie else None


def authenticate(request: Request, session: Session) -> Principal:
    """Resolve the caller from a bearer token or the session cookie.

    Safe requests are served from the :class:`PrincipalCache` while the auth generation
    is unchanged; the generation is read before anything else, so an entry never carries
    rows older than the generation it is stored under.
    """
    credential = _credential(request)
    if credential is None:
        return Principal("anonymous")
    kind, secret = credential
    instance = get_instance(request)
    now = utcnow()
    if csrf.is_unsafe_method(request.method):
        return _resolve(request, session, kind, secret, now)[0]
    cache = principal_cache(request)
    key = f"{kind}:{hash_token(secret)}"
    # SQLite: the latest committed generation in one statement outside the transaction,
    # so a hit never checks out the session's connection (no BEGIN, no COMMIT).
    latest = generation.read_committed(instance.db.engine)
    if latest is not None:
        hit = cache.get(key, latest)
        if hit is not None and _still_valid(session, hit, now, instance.activity):
            return hit.principal(session)
    current = generation.read(session)
    hit = cache.get(key, current) if latest is None else None
    if hit is not None and _still_valid(session, hit, now, instance.activity):
        return hit.principal(session)
    principal, expires_at = _resolve(request, session, kind, secret, now)
    if principal.user is not None and principal.kind in {"session", "token"}:
        cache.put(key, _cache_entry(session, principal, current, expires_at))
    return principal


def _still_valid(session: Session, hit: CachedPrincipal, now: datetime, activity: Any) -> bool:
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
    request: Request, session: Session, kind: str, secret: str, now: datetime
) -> tuple[Principal, datetime | None]:
    """Resolve the caller from the database (no cache); also return when it expires.

    The organization's second-factor rule is applied here, before anything is cached:
    whatever changes its outcome (enrolment, the rule, a role) moves the auth generation.
    """
    principal, expires_at = _lookup(request, session, kind, secret, now)
    return apply_second_factor_rule(session, principal), expires_at


def _lookup(
    request: Request, session: Session, kind: str, secret: str, now: datetime
) -> tuple[Principal, datetime | None]:
    activity = get_instance(request).activity
    if kind == "token":
        token = resolve_api_token(session, secret, now=now, activity=activity)
        if token is None:
            security_event("auth.bad_token", address=client_address(request))
            raise AuthenticationError("the API token is unknown, revoked or expired")
        user = session.get(User, token.user_id)
        grant = rbac.grant_for(session, token.organization_id, token.user_id)
        if user is None or not user.is_active or grant is None:
            raise AuthenticationError("the API token's user no longer has access")
        principal = Principal(
            "token",
            user=user,
            organization_id=token.organization_id,
            # Never a delegated permission: a token outlives any delegation.
            permissions=frozenset(token.permissions) & grant.grantable,
            grant=grant,
            token_id=token.id,
        )
        return principal, token.expires_at
    found = resolve_session_and_user(session, secret, now=now, activity=activity)
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


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def _submitted_csrf_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        # The route may read this same (cached) form later, so it is not closed here but
        # when the request ends: on FastAPI's per-request exit stack, where FastAPI closes
        # the forms it parses itself. Otherwise a refused request, or a route that never
        # reads the form, would leave its spooled uploads open.
        stack = request.scope.get(REQUEST_EXIT_STACK)
        if isinstance(stack, AsyncExitStack):
            stack.push_async_callback(form.close)
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def check_csrf(request: Request, principal: Principal) -> None:
    """Require a valid CSRF token on unsafe requests authenticated by a cookie session.

    Raises:
        PermissionDeniedError: the token is missing or wrong (a security event is logged).
    """
    if principal.kind != "session" or not csrf.is_unsafe_method(request.method):
        return
    row = principal.web_session
    assert row is not None  # a "session" principal always has its row
    submitted = await _submitted_csrf_token(request)
    # The store may be Redis: validate off the event loop (it falls back to the row).
    await off_loop(
        request,
        get_instance(request).csrf.ensure_valid,
        row.id,
        submitted,
        fallback_hash=row.csrf_token_hash,
    )


def _mark(func: Callable[..., Any], rule: str) -> Callable[..., Any]:
    setattr(func, ACCESS_ATTR, rule)
    return func


def require(permission: str) -> Any:
    """Return a dependency that admits callers holding ``permission`` (and checks CSRF).

    Raises (as HTTP errors): 401 when nobody is signed in, 403 when the permission is missing.
    """
    from paulyops.services.auth.permissions import ALL

    if permission not in ALL:
        raise ValueError(f"require({permission!r}): not in the permission vocabulary")

    async def guard(request: Request, response: Response, principal: PrincipalDep) -> Principal:
        if not principal.is_authenticated:
            raise AuthenticationError("sign in first")
        if not principal.can(permission):
            security_event(
                "rbac.denied",
                severity="info",
                permission=permission,
                user_id=principal.user_id,
                organization_id=principal.organization_id,
                path=request.url.path,
            )
            raise PermissionDeniedError(f"you need the {permission!r} permission for this")
        await check_csrf(request, principal)
        await limit_request_async(request, response, user_id=principal.user_id)
        return principal

    _mark(guard, f"perm:{permission}")
    guard.__name__ = f"require_{permission.replace(':', '_')}"
    return Depends(guard)


async def _authenticated(
    request: Request, response: Response, principal: PrincipalDep
) -> Principal:
    if not principal.is_authenticated:
        raise AuthenticationError("sign in first")
    if principal.kind == "token":
        # Account actions (second factor, sessions, password) need the person, not a
        # script's token: a token scoped to org:read must not turn off someone's 2FA.
        raise PermissionDeniedError("account settings need a signed-in browser session")
    await check_csrf(request, principal)
    await limit_request_async(request, response, user_id=principal.user_id)
    return principal


Authenticated = Depends(_mark(_authenticated, "authenticated"))
SignedIn = Annotated[Principal, Authenticated]


async def _any_credential(
    request: Request, response: Response, principal: PrincipalDep
) -> Principal:
    if not principal.is_authenticated:
        raise AuthenticationError("sign in first")
    await limit_request_async(request, response, user_id=principal.user_id)
    return principal


# Read-only "who am I" for both browser sessions and API tokens.
AnyCredential = Annotated[Principal, Depends(_mark(_any_credential, "authenticated"))]

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "AnyCredential",
    "Authenticated",
    "CachedPrincipal",
    "DbSession",
    "Principal",
    "PrincipalCache",
    "PrincipalDep",
    "SignedIn",
    "apply_second_factor_rule",
    "authenticate",
    "check_csrf",
    "db_session",
    "get_principal",
    "principal_cache",
    "require",
    "session_cookie_name",
    "set_session_cookie",
]
