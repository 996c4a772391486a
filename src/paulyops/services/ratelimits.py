"""Rate-limit administration: the configured limits, recent blocks and the allowlist.

Rate limits are instance-wide, so these use cases act on the instance's
:class:`~paulyops.core.security.ratelimit.RateLimiter`, and their audit rows go to the
instance chain. Who may call them (``ratelimits:manage``) is the front door's check.

.. versionadded:: 0.2
   (the use cases lived in ``web/api/ratelimits.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import Field

from paulyops.core.db import Session
from paulyops.core.errors import ConfigError, FieldError
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services.actor import Actor, record
from paulyops.services.commands import Command, invalid

# Recent blocks shown to admins (the limiter keeps more).
RECENT_BLOCKS = 50
# Audit rows keep at most this much of an entry (the column's width).
_AUDIT_TARGET_CHARS = 100


class AddAllowlistEntry(Command):
    """An address, network (CIDR) or client key that bypasses rate limits."""

    entry: str = Field(
        min_length=1,
        max_length=100,
        description="an address (192.0.2.7), a CIDR network (192.0.2.0/24) or a client key",
    )


class RemoveAllowlistEntry(Command):
    """A runtime allowlist entry to remove (configured entries stay)."""

    entry: str = Field(min_length=1, description="the entry as listed")


@dataclass(frozen=True, slots=True)
class LimitView:
    """A configured limit."""

    name: str
    rate: str
    strict: bool


@dataclass(frozen=True, slots=True)
class BlockView:
    """One refused request."""

    limit: str
    client: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class RateLimitsView:
    """Limits, recent blocks (newest first) and the allowlist."""

    limits: list[LimitView]
    blocks: list[BlockView]
    allowlist: list[str]


def overview(limiter: RateLimiter) -> RateLimitsView:
    """Return the configured limits, the most recent blocks and the allowlist.

    Raises:
        KVUnavailableError: the shared store (Redis) is unreachable.
    """
    return RateLimitsView(
        limits=[LimitView(p.name, p.rate, p.strict) for p in limiter.policies.values()],
        blocks=[
            BlockView(b.limit, b.client_key, datetime.fromtimestamp(b.at, UTC), b.reason)
            for b in limiter.recent_blocks(RECENT_BLOCKS)
        ],
        allowlist=limiter.allowlist(),
    )


def add_to_allowlist(
    session: Session, limiter: RateLimiter, command: AddAllowlistEntry, actor: Actor
) -> str:
    """Let an address, network or client key bypass every limit; return it normalized.

    Writes ``ratelimit.allowlist_added`` on the instance chain.

    Raises:
        CommandError: the entry is not an address, network or client key (field ``entry``).
        KVUnavailableError: the shared store (Redis) is unreachable.
    """
    try:
        entry = limiter.add_to_allowlist(command.entry)
    except ConfigError as err:
        raise _bad_entry(err) from err
    _audit(session, actor, "ratelimit.allowlist_added", entry)
    return entry


def remove_from_allowlist(
    session: Session, limiter: RateLimiter, command: RemoveAllowlistEntry, actor: Actor
) -> bool:
    """Remove a runtime allowlist entry; return whether it was there.

    Writes ``ratelimit.allowlist_removed`` on the instance chain (also when the entry was
    not there: the attempt is an admin action).

    Raises:
        CommandError: the entry is empty or too long (field ``entry``).
        KVUnavailableError: the shared store (Redis) is unreachable.
    """
    try:
        removed = limiter.remove_from_allowlist(command.entry)
    except ConfigError as err:
        raise _bad_entry(err) from err
    _audit(session, actor, "ratelimit.allowlist_removed", command.entry)
    return removed


def _bad_entry(err: ConfigError) -> Exception:
    return invalid(
        [FieldError("entry", f"expected an address, CIDR network or client key: {err.message}")]
    )


def _audit(session: Session, actor: Actor, action: str, entry: str) -> None:
    record(
        session,
        actor,
        action,
        organization_id=None,
        target_type="allowlist",
        target_id=entry[:_AUDIT_TARGET_CHARS],
    )


__all__ = [
    "RECENT_BLOCKS",
    "AddAllowlistEntry",
    "BlockView",
    "LimitView",
    "RateLimitsView",
    "RemoveAllowlistEntry",
    "add_to_allowlist",
    "overview",
    "remove_from_allowlist",
]
