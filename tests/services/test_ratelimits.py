"""Rate-limit administration use cases: allowlist changes are validated and audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN, AuditLog
from paulyops.core.kv import MemoryKV
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services import ratelimits
from paulyops.services.actor import Actor
from paulyops.services.commands import CommandError, parse

ADMIN = Actor("user", "usr_admin", "198.51.100.4")


def _rows(db: Database, action: str) -> list[AuditLog]:
    with db.session() as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_adding_an_entry_normalizes_it_and_writes_one_instance_audit_row(db: Database) -> None:
    """The entry is stored normalized, bypasses limits, and is audited with its actor."""
    limiter = RateLimiter(MemoryKV(), {"signin": "1/minute"})
    command = parse(ratelimits.AddAllowlistEntry, {"entry": " 192.0.2.0/24 "})
    with db.write_session() as session:
        entry = ratelimits.add_to_allowlist(session, limiter, command, ADMIN)
    assert entry == "192.0.2.0/24"
    assert all(limiter.hit("signin", "192.0.2.9").allowed for _ in range(3))
    [row] = _rows(db, "ratelimit.allowlist_added")
    assert (row.chain, row.target_type, row.target_id) == (INSTANCE_CHAIN, "allowlist", entry)
    assert (row.actor_type, row.actor_id, row.client_address) == (
        "user",
        "usr_admin",
        "198.51.100.4",
    )


def test_a_bad_entry_names_its_field_and_writes_no_row(db: Database) -> None:
    """Blank or over-long entries are a CommandError on ``entry``; nothing is audited."""
    limiter = RateLimiter(MemoryKV())
    with pytest.raises(CommandError) as caught:
        parse(ratelimits.AddAllowlistEntry, {"entry": "x" * 101})
    assert [error.field for error in caught.value.errors] == ["entry"]
    with pytest.raises(CommandError) as caught, db.write_session() as session:
        ratelimits.add_to_allowlist(
            session, limiter, ratelimits.AddAllowlistEntry(entry="   "), ADMIN
        )
    assert [error.field for error in caught.value.errors] == ["entry"]
    with pytest.raises(CommandError), db.write_session() as session:
        ratelimits.remove_from_allowlist(
            session, limiter, ratelimits.RemoveAllowlistEntry(entry="y" * 201), ADMIN
        )
    assert _rows(db, "ratelimit.allowlist_added") == []
    assert _rows(db, "ratelimit.allowlist_removed") == []


def test_removing_an_entry_is_audited_and_the_overview_shows_the_state(db: Database) -> None:
    """overview() lists limits, blocks and entries; removal takes the entry out and is audited."""
    limiter = RateLimiter(MemoryKV(), {"signin": "1/minute"}, strict={"signin"})
    limiter.hit("signin", "addr:203.0.113.1")
    limiter.hit("signin", "addr:203.0.113.1")
    with db.write_session() as session:
        ratelimits.add_to_allowlist(
            session, limiter, ratelimits.AddAllowlistEntry(entry="203.0.113.50"), ADMIN
        )
    view = ratelimits.overview(limiter)
    assert view.limits == [ratelimits.LimitView("signin", "1/minute", True)]
    assert [(b.limit, b.client) for b in view.blocks] == [("signin", "addr:203.0.113.1")]
    assert view.allowlist == ["203.0.113.50"]
    with db.write_session() as session:
        removed = ratelimits.remove_from_allowlist(
            session, limiter, ratelimits.RemoveAllowlistEntry(entry="203.0.113.50"), ADMIN
        )
    assert removed
    assert ratelimits.overview(limiter).allowlist == []
    [row] = _rows(db, "ratelimit.allowlist_removed")
    assert row.target_id == "203.0.113.50"
