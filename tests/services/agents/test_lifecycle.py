"""The agent lifecycle service, on SQLite and PostgreSQL.

Install (grant all or nothing, plan changes nothing), two organizations that never see
each other's installations, configure with secrets that never leave the service except
into a run that was granted them, update awaiting a grant, rollback, uninstall that leaves
no files behind and keeps history, dependencies among installed agents.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import AgentEvent, AgentInstallation, AuditLog
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.core.security.signatures import generate_key
from paulyops.services.actor import CLI, Actor
from paulyops.services.agents import lifecycle
from paulyops.services.commands import CommandError
from paulyops.services.marketplace.errors import PackageError
from tests.factories import make_org
from tests.services.agents.helpers import (
    SECRET,
    audit_actions,
    audit_text,
    cache_files,
    events,
    setup_instance,
    upload,
)

GRANT = ["alerts:raise", "secrets:apiKey"]
ADMIN = Actor("user", "usr_admin")


@pytest.fixture
def world(db, tmp_path):
    key = generate_key()
    setup_instance(db, key)
    a = make_org(db, "acme")
    b = make_org(db, "other")
    return db, key, a, b, tmp_path / "cache"


def counts(db) -> tuple[int, int, int]:
    with db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(AgentInstallation)),
            session.scalar(select(func.count()).select_from(AgentEvent)),
            session.scalar(select(func.count()).select_from(AuditLog)),
        )


def install(db, org_id, cache, **fields):
    with db.write_session() as session:
        return lifecycle.install(
            OrgScope(session, org_id),
            lifecycle.InstallAgent(**fields),
            actor=ADMIN,
            cache=cache,
        )


def test_install_needs_the_whole_grant_and_plan_changes_nothing(world):
    """A plan shows files and requested capabilities; only the exact grant installs."""
    db, key, a, _b, cache = world
    upload(db, a.id, key)
    before = counts(db)
    outcome = install(db, a.id, cache, agent_id="acme.hello", plan=True)
    assert outcome.applied is False
    assert [c.name for c in outcome.plan.grants.requested] == GRANT
    assert "Receive the secret setting 'apiKey'" in outcome.plan.grants.requested[1].description
    assert any(f.endswith("/agent.py") for f in outcome.plan.files_added)
    assert counts(db) == before
    assert cache_files(cache) == []
    for grant in (None, [], ["alerts:raise"], [*GRANT, "network"]):
        with pytest.raises(CommandError) as err:
            install(db, a.id, cache, agent_id="acme.hello", grant=grant)
        assert err.value.errors[0].field == "grant"
    assert counts(db) == before
    assert cache_files(cache) == []
    done = install(db, a.id, cache, agent_id="acme.hello", grant=list(reversed(GRANT)))
    assert done.applied is True
    inst = done.installation
    assert inst is not None
    assert inst.version == "1.0.0"
    assert inst.status == "enabled"
    assert [c.name for c in inst.granted_capabilities] == GRANT
    assert inst.granted_by == "user:usr_admin"
    assert inst.secrets == {"apiKey": "not set"}
    with db.session() as session:
        sha = session.scalars(select(AgentInstallation.package_sha256)).one()
    assert (cache / sha / "agent.py").read_bytes().startswith(b"def handle")
    assert events(db, a.id) == [("acme.hello", "installed")]
    assert "agent.installed" in audit_actions(db, a.id)
    with pytest.raises(ConflictError):
        install(db, a.id, cache, agent_id="acme.hello", grant=GRANT)


def test_uninstall_leaves_no_files_and_keeps_history(world):
    """Uninstall removes the folder and the secrets; events and audit rows stay."""
    db, key, a, _b, cache = world
    upload(db, a.id, key)
    install(db, a.id, cache, agent_id="acme.hello", grant=GRANT)
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        lifecycle.configure(
            scope, "acme.hello", lifecycle.ConfigureAgent(settings={"apiKey": SECRET}), actor=CLI
        )
        plan = lifecycle.uninstall(
            scope, "acme.hello", lifecycle.PlanOnly(plan=True), actor=CLI, cache=cache
        )
    assert plan.applied is False
    assert len(plan.plan.files_removed) == 1
    assert plan.plan.settings.removed == ["apiKey"]
    assert cache_files(cache) != []
    with db.write_session() as session:
        done = lifecycle.uninstall(
            OrgScope(session, a.id), "acme.hello", lifecycle.PlanOnly(), actor=CLI, cache=cache
        )
    assert done.applied is True
    assert cache_files(cache) == []
    assert counts(db)[0] == 0
    assert [k for _a, k in events(db, a.id)] == ["installed", "configured", "uninstalled"]
    assert audit_actions(db, a.id)[-1] == "agent.uninstalled"
    assert SECRET not in audit_text(db)


def test_another_organization_never_sees_or_changes_it(world):
    """Org B: A's installation is not found by agent id nor by installation id."""
    db, key, a, b, cache = world
    upload(db, a.id, key)
    inst = install(db, a.id, cache, agent_id="acme.hello", grant=GRANT).installation
    assert inst is not None
    with db.write_session() as session:
        scope = OrgScope(session, b.id)
        assert lifecycle.list_installations(scope) == []
        for ref in ("acme.hello", inst.id):
            for call in (
                lambda r: lifecycle.show(scope, r),
                lambda r: lifecycle.uninstall(
                    scope, r, lifecycle.PlanOnly(), actor=CLI, cache=cache
                ),
                lambda r: lifecycle.set_enabled(scope, r, False, lifecycle.PlanOnly(), actor=CLI),
                lambda r: lifecycle.configure(
                    scope, r, lifecycle.ConfigureAgent(settings={"threshold": 1}), actor=CLI
                ),
                lambda r: lifecycle.update(
                    scope, r, lifecycle.UpdateAgent(), actor=CLI, cache=cache
                ),
                lambda r: lifecycle.run_settings(scope, r),
                lambda r: lifecycle.quarantine(scope, r, "no"),
                lambda r: lifecycle.rollback(scope, r, "no"),
            ):
                with pytest.raises(NotFoundError):
                    call(ref)
        # A's own upload is not B's to install either.
        with pytest.raises(NotFoundError):
            lifecycle.install(
                scope,
                lifecycle.InstallAgent(agent_id="acme.hello", grant=GRANT),
                actor=CLI,
                cache=cache,
            )
    with db.session() as session:
        assert lifecycle.show(OrgScope(session, a.id), "acme.hello").status == "enabled"


def test_bundled_agent_in_two_organizations_shares_one_folder(world):
    """Both install the bundled file-processor; B's uninstall keeps A's folder."""
    db, _key, a, b, cache = world
    for org in (a, b):
        done = install(db, org.id, cache, agent_id="paulyops.file-processor", grant=[])
        assert done.installation is not None
        assert done.installation.source == "bundled"
    assert len([p for p in cache_files(cache) if "/" not in p]) == 1
    with db.write_session() as session:
        lifecycle.uninstall(
            OrgScope(session, b.id),
            "paulyops.file-processor",
            lifecycle.PlanOnly(),
            actor=CLI,
            cache=cache,
        )
    assert cache_files(cache) != []
    with db.write_session() as session:
        lifecycle.uninstall(
            OrgScope(session, a.id),
            "paulyops.file-processor",
            lifecycle.PlanOnly(),
            actor=CLI,
            cache=cache,
        )
    assert cache_files(cache) == []


def test_configure_validates_and_secrets_reach_only_granted_runs(world):
    """Schema errors name the field (never a secret value); views show only set/not set."""
    db, key, a, _b, cache = world
    upload(db, a.id, key)
    upload(db, a.id, key, agent_id="acme.quiet", capabilities=[])
    install(db, a.id, cache, agent_id="acme.hello", grant=GRANT)
    install(db, a.id, cache, agent_id="acme.quiet", grant=[])
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        with pytest.raises(CommandError) as err:
            lifecycle.configure(
                scope, "acme.hello", lifecycle.ConfigureAgent(settings={"nope": 1}), actor=CLI
            )
        assert err.value.errors[0].field == "settings.nope"
        with pytest.raises(CommandError) as err:
            lifecycle.configure(
                scope,
                "acme.hello",
                lifecycle.ConfigureAgent(settings={"threshold": -1}),
                actor=CLI,
            )
        assert err.value.errors[0].field == "settings.threshold"
        with pytest.raises(CommandError) as err:
            lifecycle.configure(
                scope,
                "acme.hello",
                lifecycle.ConfigureAgent(settings={"apiKey": "short"}),
                actor=CLI,
            )
        assert err.value.errors[0].field == "settings.apiKey"
        assert "short" not in str(err.value)
        planned = lifecycle.configure(
            scope,
            "acme.hello",
            lifecycle.ConfigureAgent(settings={"apiKey": SECRET, "threshold": 9}, plan=True),
            actor=CLI,
        )
        assert planned.plan.settings.secrets_set == ["apiKey"]
        assert lifecycle.show(scope, "acme.hello").secrets == {"apiKey": "not set"}
        for ref in ("acme.hello", "acme.quiet"):
            lifecycle.configure(
                scope,
                ref,
                lifecycle.ConfigureAgent(settings={"apiKey": SECRET, "threshold": 9}),
                actor=CLI,
            )
        shown = lifecycle.show(scope, "acme.hello")
        assert shown.secrets == {"apiKey": "set"}
        assert shown.settings == {"threshold": 9}
        assert SECRET not in shown.model_dump_json()
        hello = lifecycle.get_installation(scope, "acme.hello")
        quiet = lifecycle.get_installation(scope, "acme.quiet")
        assert lifecycle.run_settings(scope, hello.id) == {"threshold": 9, "apiKey": SECRET}
        # Not granted secrets:apiKey: the run never sees it.
        assert lifecycle.run_settings(scope, quiet.id) == {"threshold": 9}
        lifecycle.configure(
            scope, "acme.quiet", lifecycle.ConfigureAgent(unset=["threshold"]), actor=CLI
        )
        assert lifecycle.run_settings(scope, quiet.id) == {"threshold": 5}
    with db.session() as session:
        raw = session.scalars(select(AgentInstallation.config)).all()
    assert all(SECRET.encode() not in (blob or b"") for blob in raw)
    assert SECRET not in audit_text(db)


def test_enable_disable_and_quarantine_release(world):
    """Disable, enable; a quarantined agent cannot be enabled until released (audited)."""
    db, key, a, _b, cache = world
    upload(db, a.id, key)
    inst = install(db, a.id, cache, agent_id="acme.hello", grant=GRANT).installation
    assert inst is not None
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        planned = lifecycle.set_enabled(
            scope, "acme.hello", False, lifecycle.PlanOnly(plan=True), actor=CLI
        )
        assert planned.applied is False
        assert lifecycle.show(scope, "acme.hello").status == "enabled"
        assert lifecycle.set_enabled(
            scope, "acme.hello", False, lifecycle.PlanOnly(), actor=CLI
        ).applied
        assert lifecycle.set_enabled(
            scope, "acme.hello", True, lifecycle.PlanOnly(), actor=CLI
        ).applied
        lifecycle.quarantine(scope, inst.id, "5 consecutive failed runs")
        with pytest.raises(ConflictError):
            lifecycle.set_enabled(scope, "acme.hello", True, lifecycle.PlanOnly(), actor=CLI)
        assert lifecycle.show(scope, "acme.hello").quarantined_reason == "5 consecutive failed runs"
        released = lifecycle.release(
            scope, "acme.hello", lifecycle.ReleaseAgent(reason="fixed upstream"), actor=ADMIN
        )
        assert released.installation is not None
        assert released.installation.status == "enabled"
        with pytest.raises(ConflictError):
            lifecycle.release(scope, "acme.hello", lifecycle.ReleaseAgent(), actor=ADMIN)
    assert [k for _a, k in events(db, a.id)] == [
        "installed",
        "disabled",
        "enabled",
        "quarantined",
        "released",
    ]


def test_update_waits_for_new_grant_then_rolls_back(world):
    """New capabilities wait for a grant; the switch keeps the previous version for rollback."""
    db, key, a, _b, cache = world
    upload(db, a.id, key)
    install(db, a.id, cache, agent_id="acme.hello", grant=GRANT)
    upload(db, a.id, key, version="1.1.0", capabilities=[*GRANT, "network"])
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        planned = lifecycle.update(
            scope, "acme.hello", lifecycle.UpdateAgent(plan=True), actor=CLI, cache=cache
        )
        assert planned.plan.grants.new == ["network"]
        assert planned.plan.to_version == "1.1.0"
        waiting = lifecycle.update(
            scope, "acme.hello", lifecycle.UpdateAgent(), actor=CLI, cache=cache
        )
        assert waiting.applied is False
        assert "network" in waiting.message
        shown = lifecycle.show(scope, "acme.hello")
        assert shown.version == "1.0.0"
        assert shown.awaiting_grant is not None
        assert [c.name for c in shown.awaiting_grant.new_capabilities] == ["network"]
        with pytest.raises(CommandError):
            lifecycle.update(
                scope,
                "acme.hello",
                lifecycle.UpdateAgent(grant=["network"]),
                actor=CLI,
                cache=cache,
            )
        done = lifecycle.update(
            scope,
            "acme.hello",
            lifecycle.UpdateAgent(grant=[*GRANT, "network"]),
            actor=ADMIN,
            cache=cache,
        )
        assert done.applied is True
        shown = lifecycle.show(scope, "acme.hello")
        assert (shown.version, shown.previous_version) == ("1.1.0", "1.0.0")
        assert shown.awaiting_grant is None
        assert shown.probation_runs_left == lifecycle.PROBATION_RUNS
        assert "network" in [c.name for c in shown.granted_capabilities]
        inst_id = shown.id
    assert len([p for p in cache_files(cache) if "/" not in p]) == 2
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        assert lifecycle.record_run(scope, inst_id, succeeded=True) == "ok"
        outcome = lifecycle.record_run(
            scope, inst_id, succeeded=False, error="ValueError: boom", cache=cache
        )
        assert outcome == "rolled_back"
        shown = lifecycle.show(scope, "acme.hello")
        assert shown.version == "1.0.0"
        assert shown.previous_version is None
        assert "network" not in [c.name for c in shown.granted_capabilities]
        with pytest.raises(ConflictError):
            lifecycle.rollback(scope, inst_id, "again")
    assert [k for _a, k in events(db, a.id)][-3:] == [
        "update_awaiting_grant",
        "updated",
        "rolled_back",
    ]
    with db.session() as session:
        event = session.scalars(select(AgentEvent).where(AgentEvent.kind == "rolled_back")).one()
    assert "ValueError: boom" in event.details["reason"]
    assert (event.details["from"], event.details["to"]) == ("1.1.0", "1.0.0")
    # The failed version's folder is gone: only 1.0.0's is left.
    assert len([p for p in cache_files(cache) if "/" not in p]) == 1


def test_update_without_new_capabilities_and_up_to_date(world):
    """Same capabilities: switch at once; nothing newer: up to date."""
    db, key, a, _b, cache = world
    upload(db, a.id, key)
    install(db, a.id, cache, agent_id="acme.hello", grant=GRANT)
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        same = lifecycle.update(
            scope, "acme.hello", lifecycle.UpdateAgent(), actor=CLI, cache=cache
        )
        assert same.applied is False
        assert "up to date" in same.message
    upload(db, a.id, key, version="1.0.1")
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        done = lifecycle.update(
            scope, "acme.hello", lifecycle.UpdateAgent(), actor=CLI, cache=cache
        )
        assert done.applied is True
        assert lifecycle.show(scope, "acme.hello").version == "1.0.1"
        lifecycle.rollback(scope, "acme.hello", "health probe failed", cache=cache)
        assert lifecycle.show(scope, "acme.hello").version == "1.0.0"


def test_dependencies_among_installed_agents(world):
    """An agent needs its dependency installed; the dependency cannot go while needed."""
    db, key, a, _b, cache = world
    upload(db, a.id, key)
    upload(db, a.id, key, agent_id="acme.report", capabilities=[], agents={"acme.hello": ">=1.0"})
    with pytest.raises(PackageError) as err:
        install(db, a.id, cache, agent_id="acme.report", grant=[])
    assert "acme.hello" in str(err.value)
    install(db, a.id, cache, agent_id="acme.hello", grant=GRANT)
    install(db, a.id, cache, agent_id="acme.report", grant=[])
    with db.write_session() as session:
        scope = OrgScope(session, a.id)
        planned = lifecycle.uninstall(
            scope, "acme.hello", lifecycle.PlanOnly(plan=True), actor=CLI, cache=cache
        )
        assert planned.plan.dependents == ["acme.report"]
        with pytest.raises(ConflictError):
            lifecycle.uninstall(scope, "acme.hello", lifecycle.PlanOnly(), actor=CLI, cache=cache)


def test_cache_root_is_under_the_data_dir(settings):
    """The per-machine cache lives at <data dir>/agents/cache."""
    from paulyops.services.agents.installations import agent_cache

    assert agent_cache(settings.data_dir) == Path(settings.data_dir) / "agents" / "cache"
