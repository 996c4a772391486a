"""Integrity of installed agents: the unpack cache, a tampered stored archive, revocations."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select, update

from paulyops.core.db.models import AgentInstallation, AgentPackage
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError
from paulyops.core.security.signatures import generate_key, public_key_id
from paulyops.services.actor import CLI, SYSTEM
from paulyops.services.agents import integrity, lifecycle
from paulyops.services.marketplace import trust
from tests.factories import make_org
from tests.services.agents.helpers import events, setup_instance, upload

GRANT = ["alerts:raise", "secrets:apiKey"]


@pytest.fixture
def world(db, tmp_path):
    key = generate_key()
    setup_instance(db, key)
    a = make_org(db, "acme")
    b = make_org(db, "other")
    cache = tmp_path / "cache"
    upload(db, a.id, key)
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        lifecycle.install(
            scope,
            lifecycle.InstallAgent(agent_id="acme.hello", grant=GRANT),
            actor=CLI,
            cache=cache,
        )
        lifecycle.install(
            scope,
            lifecycle.InstallAgent(agent_id="paulyops.file-processor", grant=[]),
            actor=CLI,
            cache=cache,
        )
        lifecycle.install(
            OrgScope(session, b.id),
            lifecycle.InstallAgent(agent_id="paulyops.file-processor", grant=[]),
            actor=CLI,
            cache=cache,
        )
    return db, key, a, b, cache


def folder_of(db, org_id, agent_id, cache):
    with db.session() as session:
        sha = session.scalars(
            select(AgentInstallation.package_sha256).where(
                AgentInstallation.organization_id == org_id, AgentInstallation.agent_id == agent_id
            )
        ).one()
    return cache / sha


def statuses(db, org_id):
    with db.session() as session:
        return {
            v.agent_id: v.status for v in lifecycle.list_installations(OrgScope(session, org_id))
        }


def test_a_clean_cache_verifies(world):
    db, _key, a, _b, cache = world
    with db.write_session() as session:
        found = integrity.verify_installed(OrgScope(session, a.id), cache)
    assert [(f.agent_id, f.archive_ok, f.problems) for f in found] == [
        ("acme.hello", True, []),
        ("paulyops.file-processor", True, []),
    ]


def test_modified_missing_and_extra_files_are_reported_and_repaired(world):
    """A changed cache is reported per file and re-extracted from the stored archive."""
    db, _key, a, _b, cache = world
    folder = folder_of(db, a.id, "acme.hello", cache)
    os.chmod(folder, 0o755)
    os.chmod(folder / "agent.py", 0o644)
    (folder / "agent.py").write_bytes(b"import os; os.system('evil')\n")
    os.chmod(folder / "lib", 0o755)
    os.chmod(folder / "lib" / "words.py", 0o644)
    (folder / "lib" / "words.py").unlink()
    (folder / "planted.py").write_bytes(b"x = 1\n")
    with db.write_session() as session:
        found = integrity.verify_installed(OrgScope(session, a.id), cache)
    hello = next(f for f in found if f.agent_id == "acme.hello")
    assert hello.archive_ok is True
    assert sorted(hello.problems) == [
        "extra: planted.py",
        "missing: lib/words.py",
        "modified: agent.py",
    ]
    assert hello.quarantined is False
    assert statuses(db, a.id)["acme.hello"] == "enabled"
    with db.write_session() as session:
        fixed = integrity.repair(OrgScope(session, a.id), "acme.hello", cache, actor=CLI)
    assert fixed[0].repaired is True
    assert (folder / "agent.py").read_bytes().startswith(b"def handle")
    assert not (folder / "planted.py").exists()
    with db.write_session() as session:
        again = integrity.verify_installed(OrgScope(session, a.id), cache)
        assert all(f.problems == [] for f in again)
        nothing = integrity.repair(OrgScope(session, a.id), None, cache, actor=CLI)
    assert [r.repaired for r in nothing] == [False, False]
    assert ("acme.hello", "repaired") in events(db, a.id)


def test_a_tampered_stored_archive_quarantines_only_that_installation(world):
    """The archive of acme.hello changes in the database: it alone is quarantined."""
    db, _key, a, b, cache = world
    with db.write_session() as session:
        row = session.scalars(
            select(AgentPackage).where(AgentPackage.agent_id == "acme.hello")
        ).one()
        data = bytearray(row.archive)
        data[len(data) // 2] ^= 0xFF
        session.execute(
            update(AgentPackage).where(AgentPackage.id == row.id).values(archive=bytes(data))
        )
    with db.write_session() as session:
        found = integrity.verify_installed(OrgScope(session, a.id), cache)
    hello = next(f for f in found if f.agent_id == "acme.hello")
    assert hello.archive_ok is False
    assert hello.quarantined is True
    assert "install it again" in (hello.advice or "")
    assert statuses(db, a.id) == {"acme.hello": "quarantined", "paulyops.file-processor": "enabled"}
    assert statuses(db, b.id) == {"paulyops.file-processor": "enabled"}
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        repaired = integrity.repair(scope, "acme.hello", cache, actor=CLI)
        assert repaired[0].repaired is False
        assert "catalog" in repaired[0].message
        with pytest.raises(ConflictError, match="damaged"):
            lifecycle.release(scope, "acme.hello", lifecycle.ReleaseAgent(), actor=CLI)
        assert "stored archive" in (lifecycle.show(scope, "acme.hello").quarantined_reason or "")


def test_revoking_the_key_quarantines_what_it_signed(world):
    """A key revocation quarantines the installations made from it, in its transaction."""
    db, key, a, _b, _cache = world
    with db.write_session() as session:
        trust.revoke(
            session, trust.RevokeTrust(key=public_key_id(key), reason="leaked"), actor=SYSTEM
        )
    assert statuses(db, a.id) == {"acme.hello": "quarantined", "paulyops.file-processor": "enabled"}
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        assert "leaked" in (lifecycle.show(scope, "acme.hello").quarantined_reason or "")
        with pytest.raises(ConflictError, match="revoked"):
            lifecycle.release(scope, "acme.hello", lifecycle.ReleaseAgent(), actor=CLI)


def test_revoking_a_version_quarantines_it_and_drops_a_pending_update(world):
    db, key, a, _b, cache = world
    upload(db, a.id, key, version="1.1.0", capabilities=[*GRANT, "network"])
    with db.write_session() as session:
        lifecycle.update(
            OrgScope(session, a.id), "acme.hello", lifecycle.UpdateAgent(), actor=CLI, cache=cache
        )
    with db.write_session() as session:
        trust.revoke(
            session,
            trust.RevokeTrust(agent_id="acme.hello", version="1.1.0", reason="bad"),
            actor=SYSTEM,
        )
    with db.session() as session:
        shown = lifecycle.show(OrgScope(session, a.id), "acme.hello")
    assert shown.status == "enabled"
    assert shown.awaiting_grant is None
    with db.write_session() as session:
        trust.revoke(
            session,
            trust.RevokeTrust(agent_id="acme.hello", version="1.0.0", reason="worse"),
            actor=SYSTEM,
        )
    assert statuses(db, a.id)["acme.hello"] == "quarantined"
    assert ("acme.hello", "quarantined") in events(db, a.id)
