"""Rate limits applied to requests: the client key, the headers, and where they run.

Signed-in callers are counted per user (``user:<id>``), everyone else per address
(``addr:<ip>``). The general ``api`` limit runs in every access guard; sign-in and
onboarding call their own strict limits in the service.

Counting may wait on Redis, so ``async`` code (the access guards) calls
:func:`limit_request_async`, which counts in the thread pool and never blocks the event
loop: a hung Redis must not stall ``/api/livez`` and every other request with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from paulyops.core.security.ratelimit import Decision, headers
from paulyops.web.deps import client_address, get_instance

P = ParamSpec("P")
T = TypeVar("T")

# Load balancers poll liveness many times a minute; it touches nothing worth protecting.
UNLIMITED_PATHS = frozenset({"/api/livez"})


def client_key(request: Request, user_id: str | None) -> str:
    """Return who a request is counted as: the user when signed in, else the address."""
    return f"user:{user_id}" if user_id else f"addr:{client_address(request)}"


def limit_request(
    request: Request, response: Response | None, *, user_id: str | None, name: str = "api"
) -> Decision | None:
    """Count the request against limit ``name`` and add the RateLimit headers.

    Raises:
        LimitExceededError: over the limit (HTTP 429 with Retry-After).
    """
    if request.url.path in UNLIMITED_PATHS:
        return None
    instance = get_instance(request)
    decision = instance.limiter.enforce(
        name, client_key(request, user_id), address=client_address(request)
    )
    if response is not None:
        for key, value in headers(decision).items():
            response.headers[key] = value
    return decision


async def off_loop(request: Request, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func`` (which may wait on Redis) without blocking the event loop.

    With the in-process store nothing waits, so the thread-pool hop is skipped.
    """
    if get_instance(request).kv.backend == "memory":
        return func(*args, **kwargs)
    return await run_in_threadpool(func, *args, **kwargs)


async def limit_request_async(
    request: Request, response: Response | None, *, user_id: str | None, name: str = "api"
) -> Decision | None:
    """:func:`limit_request` for ``async`` code: counts off the event loop."""
    if request.url.path in UNLIMITED_PATHS:
        return None
    return await off_loop(request, limit_request, request, response, user_id=user_id, name=name)


__all__ = ["client_key", "limit_request", "limit_request_async", "off_loop"]
