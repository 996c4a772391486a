"""Dependencies shared by every route: the instance, the database session, the client
address, access markers.

Every route declares exactly one access rule through a dependency from this module:
:func:`public` now, and ``require("permission")`` / ``setup_token`` from the security
layer. ``tests/web/test_routes.py`` fails on a route that declares none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute, iter_route_contexts

from paulyops.core.db import Session
from paulyops.core.db.opened import opened
from paulyops.core.errors import AuthenticationError
from paulyops.core.instance import Instance
from paulyops.core.security.csrf import is_unsafe_method

ACCESS_ATTR = "__paulyops_access__"


def get_instance(request: Request) -> Instance:
    """Return the running :class:`Instance` (set by the app's lifespan)."""
    instance: Instance = request.app.state.instance
    return instance


async def _instance_dependency(request: Request) -> Instance:
    return get_instance(request)


# The dependencies below are ``async`` on purpose: they do no I/O, and a sync dependency
# costs a thread-pool hop on every request.
InstanceDep = Annotated[Instance, Depends(_instance_dependency)]


# --- the request's database session ---------------------------------------------------------

_KEEPS_REFUSALS = "db_keeps_refusals"


@contextmanager
def _deferred(instance: Instance) -> Iterator[Session]:
    """A session committed on success, rolled back on error, that may commit midway.

    ``Database.session()`` runs its transaction as a context manager, which refuses
    statements after a commit inside it; the setup wizard commits midway (see
    :data:`DeferredSession`).
    """
    session = instance.db.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@asynccontextmanager
async def _request_session(
    request: Request, *, write: bool, deferred: bool = False
) -> AsyncIterator[Session]:
    """Open the request's one transaction (or join it), committed when the route succeeds.

    Every session dependency of a request shares one transaction: the first to run opens
    it, the others join it.

    Args:
        write: take the database's write lock at BEGIN whatever the method, and commit
            what the use case recorded when it refuses the caller with an
            :class:`~paulyops.core.errors.AuthenticationError` (a refused sign-in keeps
            its audit row) before answering 401.
        deferred: never take the write lock at BEGIN, whatever the method, and allow the
            route to commit midway (:data:`DeferredSession`).
    """
    if write:
        setattr(request.state, _KEEPS_REFUSALS, True)
    cached: Session | None = getattr(request.state, "db", None)
    if cached is not None:
        yield cached
        return
    instance = get_instance(request)
    instance.require_ready()
    # State-changing requests take SQLite's write lock at BEGIN (see Database.write_session),
    # so their read-then-write transactions (audit appends) serialize instead of failing.
    # That may wait, so they are entered off the loop; a read session begins lazily.
    locks = not deferred and (write or is_unsafe_method(request.method))
    manager: AbstractContextManager[Session]
    if deferred:
        manager = _deferred(instance)
    else:
        manager = instance.db.write_session() if locks else instance.db.session()
    refused: AuthenticationError | None = None
    async with opened(manager, enter_on_loop=not locks) as session:
        request.state.db = session
        try:
            yield session
        except AuthenticationError as err:
            if not getattr(request.state, _KEEPS_REFUSALS, False):
                raise
            refused = err
        finally:
            request.state.db = None
    if refused is not None:
        raise refused


async def db_session(request: Request) -> AsyncIterator[Session]:
    """Yield the request's transaction: begun lazily by reads; unsafe methods lock at BEGIN."""
    async with _request_session(request, write=False) as session:
        yield session


async def write_session(request: Request) -> AsyncIterator[Session]:
    """Yield the request's transaction for a use case that writes even when it refuses."""
    async with _request_session(request, write=True) as session:
        yield session


# scope="function": commit before the response leaves, so the client's next request (a
# redirect after a form post) always sees what this one wrote.
DbSession = Annotated[Session, Depends(db_session, scope="function")]
"""The request's transaction, for reads (and, until each writing route declares
:data:`WriteSession`, the writes of unsafe methods)."""

WriteSession = Annotated[Session, Depends(write_session, scope="function")]
"""The write variant, declared per route: the write lock at BEGIN, and a refusal's audit
row kept (sign-in, the second-factor step)."""


async def deferred_session(request: Request) -> AsyncIterator[Session]:
    """Yield the request's transaction, begun lazily even for unsafe methods."""
    async with _request_session(request, write=False, deferred=True) as session:
        yield session


DeferredSession = Annotated[Session, Depends(deferred_session, scope="function")]
"""The setup wizard's variant: no write lock at BEGIN, and commits allowed midway.

It cannot be :data:`WriteSession` (nor :data:`DbSession`, which locks for a POST): the
final submit calls ``provision()``, which takes SQLite's write lock for its own
transaction — a request holding that lock would wait on itself. The wizard reads, commits
to end its read snapshot (on SQLite a transaction that read before provision() committed
could not write afterwards), lets provision() write, and writes its own rows only then
(WAL mode lets it read meanwhile). Committed when the route succeeds, like the others.
"""


def _mark(func: Callable[..., Any], access: str) -> Callable[..., Any]:
    setattr(func, ACCESS_ATTR, access)
    return func


async def _public(request: Request, response: Response) -> None:
    """Anyone may call this route (counted per address against the ``api`` limit)."""
    from paulyops.web.ratelimit import limit_request_async  # ratelimit builds on this module

    # Counting may wait on Redis: off the loop then; in-process counting is not I/O.
    await limit_request_async(request, response, user_id=None)


public = _mark(_public, "public")
Public = Depends(public)


async def _public_unmetered() -> None:
    """Anyone may call this route, and it is not rate limited (liveness probes)."""


# An async no-op: a sync dependency costs a thread-pool hop on every request, which is
# most of what a liveness answer costs.
public_unmetered = _mark(_public_unmetered, "public")
PublicUnmetered = Depends(public_unmetered)


def client_address(request: Request) -> str:
    """Return the caller's address.

    Behind a trusted proxy (``PAULYOPS_TRUSTED_PROXIES``) it is the client the proxy
    forwarded for: :class:`~paulyops.web.forwarded.ForwardedHeadersMiddleware` has set
    it on the request already, and it is the one place that reads ``X-Forwarded-For``.
    """
    return request.client.host if request.client else "unknown"


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback address (the machine itself)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address in {"testclient", "localhost"}


async def _client_address_dependency(request: Request) -> str:
    return client_address(request)


ClientAddress = Annotated[str, Depends(_client_address_dependency)]


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Return every API route with its full path, including routes of included routers.

    FastAPI 0.16x includes routers lazily, so ``app.routes`` alone does not list them.
    """
    out = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            out.append((context.path or route.path, route))
    return out


def access_rules(route: APIRoute) -> list[str]:
    """Return the access rules a route declares (normally exactly one)."""
    rules = []
    for dependency in route.dependant.dependencies:
        rule = getattr(dependency.call, ACCESS_ATTR, None)
        if isinstance(rule, str):
            rules.append(rule)
    return rules


__all__ = [
    "ACCESS_ATTR",
    "ClientAddress",
    "DbSession",
    "DeferredSession",
    "InstanceDep",
    "Public",
    "PublicUnmetered",
    "WriteSession",
    "access_rules",
    "api_routes",
    "client_address",
    "db_session",
    "deferred_session",
    "get_instance",
    "is_loopback",
    "public",
    "public_unmetered",
    "write_session",
]
