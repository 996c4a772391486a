"""Rate-limit administration: recent blocks and the allowlist (``ratelimits:manage``).

Rate limits are instance-wide, so these routes act on the instance's limiter; the
permission is held by Owners and Admins. Changes are audited on the instance chain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import Field

from paulyops.core.errors import ConfigError, FieldError, SpecValidationError
from paulyops.services.actor import Actor, record
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


class AllowlistIn(CamelModel):
    """An address, network (CIDR) or client key that bypasses rate limits."""

    entry: str = Field(min_length=1, max_length=100)


@router.get("", response_model=RateLimitsOut)
def overview(
    instance: InstanceDep, principal: Annotated[Principal, require("ratelimits:manage")]
) -> RateLimitsOut:
    """Show the configured limits, the most recent blocks and the allowlist."""
    limiter = instance.limiter
    return RateLimitsOut(
        limits=[
            LimitOut(name=p.name, rate=p.rate, strict=p.strict) for p in limiter.policies.values()
        ],
        blocks=[
            BlockOut(
                limit=b.limit,
                client=b.client_key,
                at=datetime.fromtimestamp(b.at, UTC),
                reason=b.reason,
            )
            for b in limiter.recent_blocks(50)
        ],
        allowlist=limiter.allowlist(),
    )


@router.post("/allowlist", response_model=OkOut, status_code=status.HTTP_201_CREATED)
def add_to_allowlist(
    body: AllowlistIn,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("ratelimits:manage")],
) -> OkOut:
    """Let an address or network (e.g. a monitoring host) bypass every limit."""
    try:
        entry = instance.limiter.add_to_allowlist(body.entry)
    except ConfigError as err:
        raise SpecValidationError(
            "bad allowlist entry",
            [
                FieldError(
                    "entry", f"expected an address, CIDR network or client key: {err.message}"
                )
            ],
        ) from err
    record(
        session,
        Actor("user", principal.user_id, address),
        "ratelimit.allowlist_added",
        organization_id=None,
        target_type="allowlist",
        target_id=entry,
    )
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
    instance.limiter.remove_from_allowlist(entry)
    record(
        session,
        Actor("user", principal.user_id, address),
        "ratelimit.allowlist_removed",
        organization_id=None,
        target_type="allowlist",
        target_id=entry[:100],
    )
    return OkOut(message=f"{entry} removed from the allowlist")
