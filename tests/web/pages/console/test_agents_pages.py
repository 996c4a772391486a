"""The console pages of an organization's agents: list, agent, settings, changes, integrity.

Each page renders for every role that holds its permission and is refused (403) for the
others; another organization never sees or acts on an installation, by installation id or
agent id (404); a form without the session's CSRF token is refused; a preview changes
nothing; a secret setting is never in any page.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import AgentEvent, AgentInstallation, AgentPackage, AuditLog
from paulyops.core.db.scoped import OrgScope
from paulyops.core.security.signatures import generate_key
from paulyops.services.actor import SYSTEM
from paulyops.services.agents import lifecycle
from paulyops.services.agents.installations import agent_cache
from tests.factories import make_org
from tests.services.agents.helpers import SECRET, upload
from tests.web.api.test_marketplace_api import trust_key
from tests.web.pages.console.test_console_pages import _signed_in, _token

GRANT = ["alerts:raise", "secrets:apiKey"]
ROLES = ("Owner", "Admin", "Manager", "User", "Viewer")
READ = set(ROLES)
CONFIGURE = {"Owner", "Admin", "Manager"}
INSTALL = {"Owner", "Admin"}


@pytest.fixture
def world(client):
    """Two organizations; org A (enterprise roles) has acme.hello 1.0.0 installed."""
    db = client.app.state.instance.db
    key = generate_key()
    trust_key(db, key)
    a = make_org(db, "acme", model="enterprise")
    b = make_org(db, "other")
    upload(db, a.id, key)
    cache = agent_cache(client.app.state.instance.settings.data_dir)
    with db.write_session() as session:
        outcome = lifecycle.install(
            OrgScope(session, a.id),
            lifecycle.InstallAgent(agent_id="acme.hello", grant=GRANT),
            actor=SYSTEM,
            cache=cache,
        )
    assert outcome.installation is not None
    return db, key, a, b, outcome.installation.id, cache


def _counts(db) -> tuple[int, int, int, int]:
    with db.session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model))
            for model in (AgentInstallation, AgentEvent, AuditLog, AgentPackage)
        )


def _installation(db, org_id, agent_id="acme.hello") -> AgentInstallation | None:
    with db.session() as session:
        return session.scalars(
            select(AgentInstallation).where(
                AgentInstallation.organization_id == org_id,
                AgentInstallation.agent_id == agent_id,
            )
        ).first()


def _post(client, path, token, **data):
    return client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)


def test_every_page_renders_for_each_role_or_is_refused(world, client):
    """GET pages: every role with agents:read sees them; buttons follow the role's permissions."""
    db, _key, a, _b, inst_id, _cache = world
    for role in ROLES:
        _signed_in(client, a.emails[role])
        for path in (
            "/console/agents",
            "/console/agents/acme.hello",
            f"/console/agents/{inst_id}",
            "/console/agents/integrity",
        ):
            page = client.get(path)
            assert page.status_code == 200, (role, path, page.text[:300])
            assert 'href="/console/agents" aria-current="page"' in page.text
        agent = client.get("/console/agents/acme.hello")
        assert ("Save settings" in agent.text) == (role in CONFIGURE), role
        assert ("Uninstall…" in agent.text) == (role in INSTALL), role
        listing = client.get("/console/agents")
        assert ("/console/agents/acme.hello/disable" in listing.text) == (role in CONFIGURE)
        market = client.get("/console/marketplace/agents/acme.hello")
        assert "Installed in your organization: version 1.0.0" in market.text
        # POSTs: refused with 403 for a role without the permission, before anything else.
        token = _token(agent)
        for path, allowed in (
            ("/console/agents/acme.hello/disable", CONFIGURE),
            ("/console/agents/acme.hello/settings", CONFIGURE),
            ("/console/agents/acme.hello/update", INSTALL),
            ("/console/agents/acme.hello/uninstall", INSTALL),
            ("/console/agents/acme.hello/uninstall/confirm", INSTALL),
            ("/console/agents/acme.hello/release", INSTALL),
            ("/console/agents/integrity/repair", INSTALL),
            ("/console/agents/integrity/check", INSTALL),
            ("/console/marketplace/agents/acme.hello/install", INSTALL),
        ):
            if role in allowed:
                continue
            refused = _post(client, path, token)
            assert refused.status_code == 403, (role, path, refused.status_code)
    assert _installation(db, a.id) is not None


def test_the_nav_hides_agents_from_a_role_without_agents_read(world, client):
    """A custom role without agents:read sees no Agents entry and gets 403 on the page."""
    db, _key, a, _b, _inst, _cache = world
    from paulyops.core.db.models import Membership, Role

    with db.write_session() as session:
        role = Role(organization_id=a.id, name="Reader", permissions=["org:read"], is_builtin=False)
        session.add(role)
        session.flush()
        member = session.get(Membership, a.memberships["target"])
        member.role_id = role.id
    _signed_in(client, "target@acme.example.com")
    home = client.get("/console")
    assert 'href="/console/agents"' not in home.text
    assert client.get("/console/agents").status_code == 403
    assert client.get("/console/agents/acme.hello").status_code == 403


def test_another_organization_never_sees_or_acts_on_it(world, client):
    """Org B's owner gets 404 for A's installation, by installation id and by agent id."""
    db, _key, a, b, inst_id, _cache = world
    _signed_in(client, b.emails["Owner"])
    listing = client.get("/console/agents")
    assert listing.status_code == 200
    assert "acme.hello" not in listing.text
    assert "acme.hello" not in client.get("/console/agents/integrity").text
    token = _token(listing)
    before = _counts(db)
    for ref in (inst_id, "acme.hello"):
        assert client.get(f"/console/agents/{ref}").status_code == 404
        for action in (
            "disable",
            "enable",
            "settings",
            "update",
            "update/confirm",
            "uninstall",
            "uninstall/confirm",
            "release",
            "release/confirm",
        ):
            answer = _post(client, f"/console/agents/{ref}/{action}", token)
            assert answer.status_code == 404, (ref, action, answer.status_code)
    repaired = _post(client, "/console/agents/integrity/repair", token, installation=inst_id)
    assert repaired.status_code == 404
    # A's uploaded package is not in B's marketplace: B cannot install it either.
    assert _post(client, "/console/marketplace/agents/acme.hello/install", token).status_code == 404
    assert _counts(db) == before
    inst = _installation(db, a.id)
    assert inst is not None
    assert inst.status == "enabled"


def test_a_missing_or_wrong_csrf_token_is_refused(world, client):
    """Every agent form needs the session's CSRF token: none or a wrong one is 403."""
    db, _key, a, _b, _inst, _cache = world
    _signed_in(client, a.emails["Owner"])
    client.get("/console/agents")
    before = _counts(db)
    for path in (
        "/console/agents/acme.hello/disable",
        "/console/agents/acme.hello/settings",
        "/console/agents/acme.hello/uninstall/confirm",
        "/console/agents/integrity/repair",
        "/console/marketplace/agents/acme.hello/install/confirm",
    ):
        assert client.post(path, follow_redirects=False).status_code == 403, path
        wrong = client.post(path, data={"csrf_token": "x" * 43}, follow_redirects=False)
        assert wrong.status_code == 403, path
    assert _counts(db) == before
    assert _installation(db, a.id).status == "enabled"


def test_install_preview_changes_nothing_then_the_grant_installs(world, client):
    """The preview lists capabilities in words and files; only the confirmation installs."""
    db, key, a, _b, _inst, cache = world
    upload(db, a.id, key, agent_id="acme.second", capabilities=["alerts:raise", "network"])
    _signed_in(client, a.emails["Admin"])
    detail = client.get("/console/marketplace/agents/acme.second")
    assert 'action="/console/marketplace/agents/acme.second/install"' in detail.text
    token = _token(detail)
    before = _counts(db)
    files_before = sorted(p.name for p in cache.iterdir())
    preview = _post(
        client, "/console/marketplace/agents/acme.second/install", token, version="1.0.0"
    )
    assert preview.status_code == 200, preview.text[:500]
    assert "Connect to the internet (never to this server or its databases)." in preview.text
    assert "Raise alerts that people in the organization are told about." in preview.text
    assert "Grant these and install" in preview.text
    assert "agent.py" in preview.text  # the files it would write
    assert _counts(db) == before
    assert sorted(p.name for p in cache.iterdir()) == files_before
    # A grant that is not exactly the request installs nothing (all or none).
    partial = _post(
        client,
        "/console/marketplace/agents/acme.second/install/confirm",
        token,
        version="1.0.0",
        grant="alerts:raise",
    )
    assert partial.status_code == 422
    assert "Grant all of these or install nothing" in partial.text
    assert _installation(db, a.id, "acme.second") is None
    grants = re.findall(r'name="grant" value="([^"]+)"', preview.text)
    assert sorted(grants) == ["alerts:raise", "network"]
    done = client.post(
        "/console/marketplace/agents/acme.second/install/confirm",
        data={"csrf_token": token, "version": "1.0.0", "grant": grants},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:500]
    assert done.headers["location"] == "/console/agents/acme.second"
    inst = _installation(db, a.id, "acme.second")
    assert inst is not None
    assert sorted(inst.granted_permissions) == ["alerts:raise", "network"]
    page = client.get("/console/agents/acme.second")
    assert "Installed acme.second 1.0.0" in page.text


def test_settings_form_from_the_schema_and_the_secret_never_shown(world, client):
    """Fields come from the schema; errors sit next to their field; the secret never returns."""
    db, _key, a, _b, _inst, _cache = world
    _signed_in(client, a.emails["Manager"])
    page = client.get("/console/agents/acme.hello")
    assert 'name="setting.apiKey" type="password"' in page.text
    assert 'name="setting.threshold" type="number"' in page.text
    assert "Default: 5." in page.text
    assert "not set" in page.text
    token = _token(page)
    bad = _post(
        client,
        "/console/agents/acme.hello/settings",
        token,
        **{"setting.apiKey": SECRET, "setting.threshold": "-3"},
    )
    assert bad.status_code == 422
    assert SECRET not in bad.text
    assert 'id="f-setting-threshold-error">' in bad.text
    error = re.search(r'id="f-setting-threshold-error">([^<]*)<', bad.text)
    assert error
    assert "minimum" in error.group(1), error.group(0)
    assert 'value="-3"' in bad.text  # the form keeps what was typed
    assert _installation(db, a.id).settings == {}
    not_a_number = _post(
        client, "/console/agents/acme.hello/settings", token, **{"setting.threshold": "many"}
    )
    assert not_a_number.status_code == 422
    assert "expected a whole number" in not_a_number.text
    short = _post(client, "/console/agents/acme.hello/settings", token, **{"setting.apiKey": "abc"})
    assert short.status_code == 422
    assert "abc" not in short.text.split("</header>")[-1]
    saved = _post(
        client,
        "/console/agents/acme.hello/settings",
        token,
        **{"setting.apiKey": SECRET, "setting.threshold": "7"},
    )
    assert saved.status_code == 303, saved.text[:500]
    inst = _installation(db, a.id)
    assert inst.settings == {"threshold": 7}
    assert SECRET.encode() not in (inst.config or b"")
    for role in ROLES:
        _signed_in(client, a.emails[role])
        for path in ("/console/agents", "/console/agents/acme.hello", "/console/agents/integrity"):
            text = client.get(path).text
            assert SECRET not in text, (role, path)
        assert ">set<" in client.get("/console/agents/acme.hello").text
    _signed_in(client, a.emails["Manager"])
    token = _token(client.get("/console/agents/acme.hello"))
    # An empty secret keeps the stored one; an empty plain field goes back to its default.
    kept = _post(
        client,
        "/console/agents/acme.hello/settings",
        token,
        **{"setting.apiKey": "", "setting.threshold": ""},
    )
    assert kept.status_code == 303
    with db.session() as session:
        scope = OrgScope(session, a.id)
        assert lifecycle.run_settings(scope, inst.id) == {"threshold": 5, "apiKey": SECRET}
    cleared = _post(client, "/console/agents/acme.hello/settings", token, clear_secret="apiKey")
    assert cleared.status_code == 303
    with db.session() as session:
        assert lifecycle.show(OrgScope(session, a.id), inst.id).secrets == {"apiKey": "not set"}
    with db.session() as session:
        text = " ".join(str(r.changes) for r in session.scalars(select(AuditLog)))
    assert SECRET not in text


def test_no_preview_or_error_page_carries_the_secret(world, client):
    """With a secret stored, previews, refusals and every page render without it."""
    db, key, a, _b, _inst, _cache = world
    upload(db, a.id, key, version="1.1.0", capabilities=[*GRANT, "network"])
    _signed_in(client, a.emails["Owner"])
    token = _token(client.get("/console/agents/acme.hello"))
    saved = _post(
        client, "/console/agents/acme.hello/settings", token, **{"setting.apiKey": SECRET}
    )
    assert saved.status_code == 303
    pages = [
        _post(client, "/console/agents/acme.hello/update", token, version="1.1.0"),
        _post(client, "/console/agents/acme.hello/update/confirm", token, version="1.1.0"),
        _post(client, "/console/agents/acme.hello/uninstall", token),
        _post(client, "/console/agents/acme.hello/release", token),
        _post(client, "/console/agents/acme.hello/settings", token, **{"setting.threshold": "x"}),
        client.get("/console/agents/acme.hello"),
        client.get("/console/marketplace/agents/acme.hello"),
    ]
    assert [p.status_code for p in pages] == [200, 422, 200, 409, 422, 200, 200]
    for page in pages:
        assert SECRET not in page.text
    # The refused update (no grant) changed nothing.
    assert _installation(db, a.id).version == "1.0.0"


def test_disable_enable_and_uninstall_with_preview(world, client):
    """Disable and enable at once; uninstall previews what goes and what history stays."""
    db, _key, a, _b, _inst, cache = world
    _signed_in(client, a.emails["Owner"])
    token = _token(client.get("/console/agents"))
    assert _post(client, "/console/agents/acme.hello/disable", token).status_code == 303
    assert _installation(db, a.id).status == "disabled"
    assert "Enable" in client.get("/console/agents").text
    assert _post(client, "/console/agents/acme.hello/enable", token).status_code == 303
    assert _installation(db, a.id).status == "enabled"
    before = _counts(db)
    preview = _post(client, "/console/agents/acme.hello/uninstall", token)
    assert preview.status_code == 200
    assert "audit log rows, agent events and job records" in preview.text
    assert "Grants withdrawn" in preview.text
    assert "secrets:apiKey" in preview.text
    assert _counts(db) == before
    done = _post(client, "/console/agents/acme.hello/uninstall/confirm", token)
    assert done.status_code == 303
    assert done.headers["location"] == "/console/agents"
    assert _installation(db, a.id) is None
    assert list(cache.iterdir()) == []
    assert "No agents are installed yet." in client.get("/console/agents").text
    assert client.get("/console/agents/acme.hello").status_code == 404


def test_update_highlights_new_capabilities_and_waits_for_the_grant(world, client):
    """A version asking for more shows the new capability marked; confirming grants it."""
    db, key, a, _b, _inst, _cache = world
    upload(db, a.id, key, version="1.1.0", capabilities=[*GRANT, "network"])
    _signed_in(client, a.emails["Admin"])
    page = client.get("/console/agents/acme.hello")
    assert "1.1.0 available" in page.text
    token = _token(page)
    before = _counts(db)
    preview = _post(client, "/console/agents/acme.hello/update", token, version="1.1.0")
    assert preview.status_code == 200, preview.text[:400]
    assert re.search(
        r"<code class=\"small\">network</code> <span class=\"badge badge-warn\">new", preview.text
    )
    assert "Grant these and update" in preview.text
    assert _counts(db) == before
    grants = re.findall(r'name="grant" value="([^"]+)"', preview.text)
    done = client.post(
        "/console/agents/acme.hello/update/confirm",
        data={"csrf_token": token, "version": "1.1.0", "grant": grants},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:400]
    inst = _installation(db, a.id)
    assert inst.version == "1.1.0"
    assert "network" in inst.granted_permissions
    up_to_date = _post(client, "/console/agents/acme.hello/update", token)
    assert up_to_date.status_code == 303  # nothing newer: said so, no preview


def test_quarantine_release_and_integrity_repair(world, client):
    """A quarantined agent shows its reason; release previews, then lifts it; repair restores."""
    db, _key, a, _b, inst_id, cache = world
    with db.write_session() as session:
        lifecycle.quarantine(OrgScope(session, a.id), inst_id, "5 consecutive failed runs")
    _signed_in(client, a.emails["Owner"])
    listing = client.get("/console/agents")
    assert "quarantined" in listing.text
    assert "5 consecutive failed runs" in listing.text
    page = client.get("/console/agents/acme.hello")
    assert "Review the release" in page.text
    token = _token(page)
    refused = _post(client, "/console/agents/acme.hello/enable", token)
    assert refused.status_code == 303
    assert _installation(db, a.id).status == "quarantined"
    preview = _post(client, "/console/agents/acme.hello/release", token)
    assert preview.status_code == 200
    assert "Release Hello from quarantine" in preview.text
    assert _installation(db, a.id).status == "quarantined"
    done = _post(client, "/console/agents/acme.hello/release/confirm", token, reason="fixed")
    assert done.status_code == 303
    assert _installation(db, a.id).status == "enabled"
    # Integrity: a changed file is reported (the page only reads), then repaired.
    folder = next(cache.iterdir())
    (folder / "agent.py").write_text("print('changed')\n")
    report = client.get("/console/agents/integrity")
    assert "modified: agent.py" in report.text
    assert _installation(db, a.id).status == "enabled"
    repaired = _post(client, "/console/agents/integrity/repair", token, installation=inst_id)
    assert repaired.status_code == 303
    assert (folder / "agent.py").read_bytes().startswith(b"def handle")
    assert "all present and unchanged" in client.get("/console/agents/integrity").text


def test_defaults_chosen_at_setup_show_as_unavailable_or_not_installed(world, client):
    """Default agents not installed are listed; one without a package says unavailable."""
    db, _key, a, _b, _inst, _cache = world
    from paulyops.core.db.models import AgentConfig

    with db.write_session() as session:
        OrgScope(session, a.id).add(
            AgentConfig(default_agents=["paulyops.file-processor", "paulyops.invoice-extractor"])
        )
    _signed_in(client, a.emails["Viewer"])
    page = client.get("/console/agents")
    assert "Chosen at setup, not installed" in page.text
    assert re.search(r"Invoice extractor <span class=\"badge\">unavailable", page.text)
    assert re.search(r"File processor <span class=\"badge badge-warn\">not installed", page.text)
    # A Viewer is not offered the install.
    assert "Review and install it" not in page.text
    _signed_in(client, a.emails["Admin"])
    page = client.get("/console/agents")
    assert 'href="/console/marketplace/agents/paulyops.file-processor"' in page.text
