"""Rate limits applied to requests: the client key, the headers, and where they run.

Signed-in callers are counted per user (``user:<id>``), everyone else per address
(``addr:<ip>``). The general ``api`` limit runs in every access guard; sign-in and
onboarding call their own strict limits in the service.
"""

from __future__ import annotations

from fastapi import Request, Response

from paulyops.core.security.ratelimit import Decision, headers
from paulyops.web.deps import client_address, get_instance

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


__all__ = ["client_key", "limit_request"]
