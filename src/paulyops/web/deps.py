"""Dependencies shared by every route: the instance, the client address, access markers.

Every route declares exactly one access rule through a dependency from this module:
:func:`public` now, and ``require("permission")`` / ``setup_token`` from the security
layer. ``tests/web/test_routes.py`` fails on a route that declares none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute, iter_route_contexts

from paulyops.core.instance import Instance

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
    "InstanceDep",
    "Public",
    "PublicUnmetered",
    "access_rules",
    "api_routes",
    "client_address",
    "get_instance",
    "is_loopback",
    "public",
    "public_unmetered",
]
