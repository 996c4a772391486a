"""Liveness and health endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from paulyops import __version__
from paulyops.core.errors import AuthenticationError, PermissionDeniedError
from paulyops.core.instance import Instance
from paulyops.core.logging import get_logger
from paulyops.web.auth import authenticate
from paulyops.web.deps import ClientAddress, InstanceDep, Public, PublicUnmetered, is_loopback

router = APIRouter(prefix="/api", tags=["health"])
log = get_logger("paulyops.health")


class Livez(BaseModel):
    """The liveness answer."""

    status: str = Field(examples=["ok"])
    version: str


_LIVEZ_BODY = Livez(status="ok", version=__version__).model_dump_json().encode()


class CheckOut(BaseModel):
    """One dependency's health."""

    status: str = Field(description="healthy, degraded, unhealthy or not_configured")
    responseTime: int = Field(description="milliseconds the check took")  # noqa: N815  # the brief's wire name
    details: dict[str, Any] | None = None


class HealthOut(BaseModel):
    """The brief's healthz document."""

    status: str = Field(description="healthy, degraded or unhealthy")
    timestamp: str
    version: str
    environment: str
    checks: dict[str, CheckOut]


def _may_see_details(request: Request, instance: Instance, address: str) -> bool:
    """Whether the caller may see each check's details (pool numbers, errors, memory)."""
    return is_operator(request, instance, address, "health:read")


def is_operator(request: Request, instance: Instance, address: str, permission: str) -> bool:
    """Whether the caller may see operator numbers guarded by ``permission``.

    Loopback callers may, but only when no proxy is in front (``PAULYOPS_TRUSTED_PROXIES``
    empty): behind a proxy on the same machine every request would come from loopback.
    Everyone else needs ``permission`` (``health:read`` for healthz details,
    ``metrics:read`` for ``/metrics``).
    """
    if is_loopback(address) and not instance.settings.trusted_proxies:
        return True
    has_credentials = "authorization" in request.headers or request.cookies
    if not has_credentials or not instance.ready.is_set():
        return False
    if instance.db.health.status == "unhealthy":
        return False  # checking the credentials would wait on the database that is down
    try:
        with instance.db.session() as session:
            return authenticate(request, session).can(permission)
    except (AuthenticationError, PermissionDeniedError):
        return False  # bad, revoked or refused credentials: the anonymous answer
    except Exception:  # healthz must answer even when the database fails: say why, once
        log.warning("healthz_details_check_failed", permission=permission, exc_info=True)
        return False


@router.get("/livez", dependencies=[PublicUnmetered], response_model=Livez)
async def livez() -> Response:
    """Answer without touching any dependency (for load balancers).

    Async, with an async access marker: no thread-pool hop, nothing that could block;
    the answer never changes, so it is serialized once.
    """
    return Response(_LIVEZ_BODY, media_type="application/json")


@router.get(
    "/healthz",
    dependencies=[Public],
    response_model=HealthOut,
    response_model_exclude_none=True,
    responses={503: {"model": HealthOut, "description": "unhealthy"}},
)
def healthz(request: Request, instance: InstanceDep, address: ClientAddress) -> JSONResponse:
    """Report every dependency's health; details to loopback and ``health:read`` callers.

    The report comes from the background health monitor (at most one interval old): a
    request never runs the checks itself, so healthz stays cheap and bounded.
    """
    report = instance.cached_health_report(
        include_details=_may_see_details(request, instance, address)
    )
    code = 503 if report["status"] == "unhealthy" else 200
    return JSONResponse(report, status_code=code, headers={"Cache-Control": "no-store"})
