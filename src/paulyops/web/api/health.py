"""Liveness and health endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from paulyops import __version__
from paulyops.web.deps import ClientAddress, InstanceDep, Public, is_loopback

router = APIRouter(prefix="/api", tags=["health"])


class Livez(BaseModel):
    """The liveness answer."""

    status: str = Field(examples=["ok"])
    version: str


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


@router.get("/livez", dependencies=[Public], response_model=Livez)
def livez() -> Livez:
    """Answer without touching any dependency (for load balancers)."""
    return Livez(status="ok", version=__version__)


@router.get(
    "/healthz",
    dependencies=[Public],
    response_model=HealthOut,
    response_model_exclude_none=True,
    responses={503: {"model": HealthOut, "description": "unhealthy"}},
)
def healthz(instance: InstanceDep, address: ClientAddress) -> JSONResponse:
    """Report every dependency's health; details only to loopback callers."""
    report = instance.health_report(include_details=is_loopback(address))
    code = 503 if report["status"] == "unhealthy" else 200
    return JSONResponse(report, status_code=code, headers={"Cache-Control": "no-store"})
