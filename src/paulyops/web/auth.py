"""Who is calling, and may they: the request's principal and the ``require`` guard.

A request is authenticated by exactly one of:

* ``Authorization: Bearer pot_...`` — an API token; CSRF-exempt (a browser never adds it);
* the session cookie — a browser session; unsafe methods must carry the CSRF token
  (``X-CSRF-Token`` header or ``csrf_token`` form field).

Each route declares one access rule: :data:`Public`, ``require("permission")``,
:data:`Authenticated` (any signed-in user, for their own account) or ``SetupToken``.

This module keeps the HTTP side only: finding the credential in the headers or the
cookie, the cookie itself, CSRF and the FastAPI dependencies. Resolving a credential, the
principal cache and the second-factor rule live in
:mod:`paulyops.services.auth.principals` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from paulyops.core.db import Session
from paulyops.core.errors import AuthenticationError, PermissionDeniedError
from paulyops.core.logging import security_event
from paulyops.core.security import csrf
from paulyops.services.auth import principals
from paulyops.services.auth.principals import (
    CachedPrincipal,
    CredentialKind,
    Principal,
    PrincipalCache,
    apply_second_factor_rule,
)
from paulyops.web.deps import (
    ACCESS_ATTR,
    DbSession,
    WriteSession,
    client_address,
    db_session,
    get_instance,
)
from paulyops.web.ratelimit import limit_request_async, off_loop

SESSION_COOKIE = "paulyops_session"
SECURE_SESSION_COOKIE = "__Host-paulyops_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# FastAPI's exit stack for the whole request (its AsyncExitStackMiddleware), left after
# the response is sent.
REQUEST_EXIT_STACK = "fastapi_middleware_astack"


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


def principal_cache(request: Request) -> PrincipalCache:
    """Return the app's principal cache (one per process and app)."""
    cache: PrincipalCache | None = getattr(request.app.state, "principal_cache", None)
    if cache is None:
        cache = PrincipalCache()
        request.app.state.principal_cache = cache
    return cache


def _credential(request: Request) -> tuple[CredentialKind, str] | None:
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
    """Resolve the caller from a bearer token or the session cookie (see ``principals``)."""
    credential = _credential(request)
    if credential is None:
        return Principal("anonymous")
    kind, secret = credential
    instance = get_instance(request)
    lookup = principals.Lookup(
        db=instance.db,
        cache=principal_cache(request),
        activity=instance.activity,
        address=client_address(request),
    )
    return principals.authenticate(
        session, lookup, kind, secret, unsafe=csrf.is_unsafe_method(request.method)
    )


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
    "WriteSession",
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
