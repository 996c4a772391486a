"""Who is calling, and may they: the request's principal and the ``require`` guard.

A request is authenticated by exactly one of:

* ``Authorization: Bearer pot_...`` — an API token; CSRF-exempt (a browser never adds it);
* the session cookie — a browser session; unsafe methods must carry the CSRF token
  (``X-CSRF-Token`` header or ``csrf_token`` form field).

Each route declares one access rule: :data:`Public`, ``require("permission")``,
:data:`Authenticated` (any signed-in user, for their own account) or ``SetupToken``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from paulyops.core.db.models import User, WebSession
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from paulyops.core.logging import security_event
from paulyops.core.security import csrf
from paulyops.services.actor import Actor
from paulyops.services.auth import rbac, second_factor
from paulyops.services.auth.permissions import PLATFORM_PERMISSIONS
from paulyops.services.auth.sessions import resolve_session
from paulyops.services.auth.tokens import resolve_api_token
from paulyops.web.deps import ACCESS_ATTR, client_address, get_instance
from paulyops.web.ratelimit import limit_request_async, off_loop

SESSION_COOKIE = "paulyops_session"
SECURE_SESSION_COOKIE = "__Host-paulyops_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


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


def db_session(request: Request) -> Iterator[Session]:
    """Yield the request's database transaction (committed when the route succeeds)."""
    cached: Session | None = getattr(request.state, "db", None)
    if cached is not None:
        yield cached
        return
    instance = get_instance(request)
    instance.require_ready()
    # State-changing requests take SQLite's write lock at BEGIN (see Database.write_session),
    # so their read-then-write transactions (audit appends) serialize instead of failing.
    opener = (
        instance.db.write_session if csrf.is_unsafe_method(request.method) else instance.db.session
    )
    refused: AuthenticationError | None = None
    with opener() as session:
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


def authenticate(request: Request, session: Session) -> Principal:
    """Resolve the caller from a bearer token or the session cookie (no caching).

    The organization's second-factor rule is applied to whatever was resolved.
    """
    return apply_second_factor_rule(session, _resolve(request, session))


def _resolve(request: Request, session: Session) -> Principal:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise AuthenticationError("expected 'Authorization: Bearer <token>'")
        token = resolve_api_token(session, secret.strip())
        if token is None:
            security_event("auth.bad_token", address=client_address(request))
            raise AuthenticationError("the API token is unknown, revoked or expired")
        user = session.get(User, token.user_id)
        grant = rbac.grant_for(session, token.organization_id, token.user_id)
        if user is None or not user.is_active or grant is None:
            raise AuthenticationError("the API token's user no longer has access")
        return Principal(
            "token",
            user=user,
            organization_id=token.organization_id,
            # Never a delegated permission: a token outlives any delegation.
            permissions=frozenset(token.permissions) & grant.grantable,
            grant=grant,
            token_id=token.id,
        )
    cookie = request.cookies.get(session_cookie_name(request))
    if not cookie:
        return Principal("anonymous")
    row = resolve_session(session, cookie)
    if row is None or row.kind != "user" or row.user_id is None:
        return Principal("anonymous", web_session=row)
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return Principal("anonymous")
    grant = rbac.grant_for(session, row.organization_id, user.id) if row.organization_id else None
    perms: set[str] = set(grant.permissions) if grant else set()
    if user.is_platform_admin:
        perms.update(PLATFORM_PERMISSIONS)
    return Principal(
        "session",
        user=user,
        organization_id=row.organization_id,
        permissions=frozenset(perms),
        web_session=row,
        grant=grant,
    )


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
    "DbSession",
    "Principal",
    "PrincipalDep",
    "SignedIn",
    "apply_second_factor_rule",
    "authenticate",
    "check_csrf",
    "db_session",
    "get_principal",
    "require",
    "session_cookie_name",
    "set_session_cookie",
]
