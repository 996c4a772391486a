"""Rate-limit administration: recent blocks and the allowlist (``ratelimits:manage``).

The use cases are :mod:`paulyops.services.ratelimits` (which audits them on the instance
chain); these routes check ``ratelimits:manage`` (Owners and Admins), call one and render.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, status

from paulyops.services import ratelimits
from paulyops.services.actor import Actor
from paulyops.web.api.auth import CamelModel, OkOut
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress, InstanceDep

router = APIRouter(prefix="/api/security/ratelimits", tags=["security"])


class BlockOut(CamelModel):
    """One refused request."""

    limit: str
    client: str
    at: datetime
    reason: str


class LimitOut(CamelModel):
    """A configured limit."""

    name: str
    rate: str
    strict: bool


class RateLimitsOut(CamelModel):
    """Limits, recent blocks and the allowlist."""

    limits: list[LimitOut]
    blocks: list[BlockOut]
    allowlist: list[str]


@router.get("", response_model=RateLimitsOut)
def overview(
    instance: InstanceDep, principal: Annotated[Principal, require("ratelimits:manage")]
) -> RateLimitsOut:
    """Show the configured limits, the most recent blocks and the allowlist."""
    view = ratelimits.overview(instance.limiter)
    return RateLimitsOut.model_validate(view, from_attributes=True)


@router.post("/allowlist", response_model=OkOut, status_code=status.HTTP_201_CREATED)
def add_to_allowlist(
    body: ratelimits.AddAllowlistEntry,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("ratelimits:manage")],
) -> OkOut:
    """Let an address or network (e.g. a monitoring host) bypass every limit."""
    actor = Actor("user", principal.user_id, address)
    entry = ratelimits.add_to_allowlist(session, instance.limiter, body, actor)
    return OkOut(message=f"{entry} now bypasses rate limits")


@router.delete("/allowlist/{entry:path}", response_model=OkOut)
def remove_from_allowlist(
    entry: str,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("ratelimits:manage")],
) -> OkOut:
    """Remove an entry added at runtime (configured entries stay)."""
    command = ratelimits.RemoveAllowlistEntry(entry=entry)
    actor = Actor("user", principal.user_id, address)
    ratelimits.remove_from_allowlist(session, instance.limiter, command, actor)
    return OkOut(message=f"{entry} removed from the allowlist")
