"""Attacks on ``/api/agents`` and the job layer: two organizations, every role, hostile bodies.

Each test is an attempt that must hold (or held once a fix went in; see the commit log).
"""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import AgentEvent, AgentInstallation, AuditLog, Job
from paulyops.core.db.scoped import OrgScope
from paulyops.core.security.signatures import generate_key
from paulyops.services.actor import CLI
from paulyops.services.marketplace import store
from paulyops.services.marketplace.build import assemble
from tests.factories import make_org
from tests.services.agents.helpers import SECRET, audit_text, files, setup_instance, upload
from tests.web.api.test_marketplace_api import sign_in

BASE = "/api/agents"
GRANT = ["alerts:raise", "secrets:apiKey"]


@pytest.fixture
def orgs(client):
    db = client.app.state.instance.db
    key = generate_key()
    setup_instance(db, key, bind=False)
    acme = make_org(db, "acme", model="enterprise")
    other = make_org(db, "other", model="enterprise")
    acme_pkg = upload(db, acme.id, key)
    return db, acme, other, key, acme_pkg


def rows(db) -> tuple[int, int, int, int]:
    with db.session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model))
            for model in (AgentInstallation, AgentEvent, AuditLog, Job)
        )


def install(client, headers, agent="acme.hello", grant=GRANT):
    answer = client.post(BASE, json={"agentId": agent, "grant": grant}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["installation"]


def upload_files(db, org_id, key, package_files) -> str:
    data = assemble(package_files, key)
    with db.write_session() as session:
        stored, _report = store.upload_package(
            OrgScope(session, org_id), store.UploadPackage(), io.BytesIO(data), actor=CLI
        )
    return stored.id


# --- grants -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "grant",
    [
        ["alerts:raise"],  # subset
        [*GRANT, "network"],  # superset
        ["ALERTS:RAISE", "secrets:apiKey"],  # case variant
        ["alerts:raise", "secrets:APIKEY"],
        ["alerts:raise", "secrets:../x"],
        ["alerts:raise", "secrets:apiKey/../x"],
        ["NETWORK"],
        [],
        None,
        ["alerts:raise ", "secrets:apiKey"],
    ],
)
def test_a_grant_that_differs_from_the_request_installs_nothing(client, orgs, grant):
    db, acme, _other, _key, _pkg = orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    before = rows(db)
    body: dict = {"agentId": "acme.hello"}
    if grant is not None:
        body["grant"] = grant
    answer = client.post(BASE, json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "grant"
    assert rows(db) == before


def test_duplicates_in_a_grant_store_each_capability_once(client, orgs):
    _db, acme, _other, _key, _pkg = orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    inst = install(client, headers, grant=[*GRANT, *GRANT, "alerts:raise"])
    assert (
        inst["grantedCapabilities"] == GRANT
        or [c["name"] if isinstance(c, dict) else c for c in inst["grantedCapabilities"]] == GRANT
    )


def test_an_update_that_widens_capabilities_waits_for_a_grant(client, orgs):
    db, acme, _other, key, _pkg = orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    install(client, headers)
    upload(db, acme.id, key, version="2.0.0", capabilities=[*GRANT, "network"])
    answer = client.post(f"{BASE}/acme.hello/update", json={}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is False
    with db.session() as session:
        row = session.scalars(select(AgentInstallation)).one()
        assert (row.version, sorted(row.granted_permissions)) == ("1.0.0", GRANT)
    # The old grant does not count for the new version, nor a partial one.
    for grant in (GRANT, ["network"], [*GRANT, "NETWORK"]):
        refused = client.post(f"{BASE}/acme.hello/update", json={"grant": grant}, headers=headers)
        assert refused.status_code == 422, refused.text
    # A Manager (agents:configure, not agents:install) cannot grant it.
    manager = sign_in(client, acme.id, acme.members["Manager"])
    denied = client.post(
        f"{BASE}/acme.hello/update", json={"grant": [*GRANT, "network"]}, headers=manager
    )
    assert denied.status_code == 403
    with db.session() as session:
        row = session.scalars(select(AgentInstallation)).one()
        assert row.version == "1.0.0"
        assert "network" not in row.granted_permissions


# --- two organizations ----------------------------------------------------------------------


def test_another_organizations_package_id_is_never_installable(client, orgs):
    db, _acme, other, _key, acme_pkg = orgs
    headers = sign_in(client, other.id, other.members["Owner"])
    before = rows(db)
    for body in (
        {"packageId": acme_pkg, "grant": GRANT},
        {"packageId": acme_pkg, "grant": GRANT, "plan": True},
        {"packageId": acme_pkg, "agentId": "paulyops.file-processor", "grant": GRANT},
    ):
        answer = client.post(BASE, json=body, headers=headers)
        assert answer.status_code == 404, (body, answer.text)
        assert acme_pkg not in answer.text or "not found" in answer.text
    assert rows(db) == before


def test_another_organizations_update_package_id_is_refused(client, orgs):
    db, acme, other, key, _pkg = orgs
    upload(db, other.id, key)  # acme.hello in other too
    other_v2 = upload(db, other.id, key, version="2.0.0")
    headers = sign_in(client, acme.id, acme.members["Owner"])
    install(client, headers)
    answer = client.post(
        f"{BASE}/acme.hello/update", json={"packageId": other_v2, "grant": GRANT}, headers=headers
    )
    assert answer.status_code == 404, answer.text
    with db.session() as session:
        row = session.scalars(
            select(AgentInstallation).where(AgentInstallation.organization_id == acme.id)
        ).one()
        assert row.version == "1.0.0"


def test_other_organization_ids_everywhere(client, orgs):
    """Org B's session with org A's installation id: repair, release, settings, integrity."""
    db, acme, other, _key, _pkg = orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    inst_id = install(client, headers)["id"]
    before = rows(db)
    headers = sign_in(client, other.id, other.members["Owner"])
    for ref in (inst_id, "acme.hello", f" {inst_id} ", inst_id.upper(), "%"):
        assert client.get(f"{BASE}/{ref}").status_code == 404, ref
        assert client.post(f"{BASE}/{ref}/repair", headers=headers).status_code == 404, ref
        assert client.post(f"{BASE}/{ref}/enable", headers=headers).status_code == 404, ref
        assert (
            client.post(f"{BASE}/{ref}/release", json={"reason": "x"}, headers=headers).status_code
            == 404
        ), ref
        put = client.put(f"{BASE}/{ref}/settings", json={"unset": ["threshold"]}, headers=headers)
        assert put.status_code == 404, ref
    assert client.get(f"{BASE}/integrity").json() == []
    assert client.post(f"{BASE}/integrity", headers=headers).json() == []
    assert rows(db) == before


def test_job_history_and_events_of_another_organization_are_not_found(client, orgs, tmp_path):
    from paulyops.core.errors import NotFoundError
    from paulyops.services.agents import runs
    from paulyops.services.agents.jobs import JobPolicy

    db, acme, other, _key, _pkg = orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    inst_id = install(client, headers)["id"]
    source = tmp_path / "in.txt"
    source.write_text("hello")
    job = runs.run_file(db, acme.id, inst_id, source, actor=CLI, policy=JobPolicy())
    for ref in (job.id, inst_id, "acme.hello"):
        with pytest.raises(NotFoundError):
            runs.job_history(db, other.id, ref)
    for ref in (inst_id, "acme.hello"):
        with pytest.raises(NotFoundError):
            runs.agent_events(db, other.id, ref)
        with pytest.raises(NotFoundError):
            runs.run_file(db, other.id, ref, source, actor=CLI, policy=JobPolicy())
    assert runs.job_history(db, acme.id, job.id)[0].id == job.id


# --- roles, tokens, CSRF ------------------------------------------------------------------


def _token(client, org, user_name, perms) -> dict[str, str]:
    from paulyops.services.auth import rbac, tokens

    db = client.app.state.instance.db
    with db.write_session() as session:
        holder = rbac.grant_for(session, org.id, org.members[user_name])
        secret = tokens.create_api_token(
            OrgScope(session, org.id),
            user_id=org.members[user_name],
            name="t-" + "-".join(perms).replace(":", "_"),
            permissions=perms,
            holder_permissions=holder.permissions,
        ).secret
    client.cookies.clear()
    return {"Authorization": f"Bearer {secret}"}


def test_a_token_limited_to_other_permissions_changes_nothing(client, orgs):
    db, acme, _other, _key, _pkg = orgs
    install(client, sign_in(client, acme.id, acme.members["Owner"]))
    before = rows(db)
    reader = _token(client, acme, "Owner", ["agents:read"])
    market = _token(client, acme, "Owner", ["marketplace:manage", "marketplace:read"])
    configure = _token(client, acme, "Owner", ["agents:configure"])
    for headers in (reader, market, configure):
        for method, path, body in (
            ("POST", BASE, {"agentId": "paulyops.file-processor", "grant": []}),
            ("POST", f"{BASE}/acme.hello/update", {}),
            ("DELETE", f"{BASE}/acme.hello", None),
            ("POST", f"{BASE}/acme.hello/release", {}),
            ("POST", f"{BASE}/acme.hello/repair", None),
            ("POST", f"{BASE}/integrity", None),
        ):
            answer = client.request(method, path, json=body, headers=headers)
            assert answer.status_code == 403, (headers is configure, path, answer.text)
    for headers in (reader, market):
        for method, path, body in (
            ("POST", f"{BASE}/acme.hello/disable", None),
            ("PUT", f"{BASE}/acme.hello/settings", {"settings": {"threshold": 1}}),
        ):
            assert client.request(method, path, json=body, headers=headers).status_code == 403
    assert client.get(BASE, headers=market).status_code == 403
    assert rows(db) == before


def test_a_wrong_or_foreign_csrf_token_is_refused_on_every_write(client, orgs):
    db, acme, other, _key, _pkg = orgs
    install(client, sign_in(client, acme.id, acme.members["Owner"]))
    foreign = sign_in(client, other.id, other.members["Owner"])
    sign_in(client, acme.id, acme.members["Owner"])
    before = rows(db)
    for headers in ({"X-CSRF-Token": "x"}, {"X-CSRF-Token": ""}, foreign):
        for method, path, body in (
            ("POST", BASE, {"agentId": "paulyops.file-processor", "grant": []}),
            ("POST", f"{BASE}/acme.hello/update", {}),
            ("DELETE", f"{BASE}/acme.hello", None),
            ("POST", f"{BASE}/acme.hello/disable", None),
            ("POST", f"{BASE}/acme.hello/release", {}),
            ("POST", f"{BASE}/acme.hello/repair", None),
            ("POST", f"{BASE}/integrity", None),
            ("PUT", f"{BASE}/acme.hello/settings", {"settings": {"threshold": 1}}),
        ):
            answer = client.request(method, path, json=body, headers=headers)
            assert answer.status_code == 403, (method, path, answer.text)
    assert rows(db) == before


# --- hostile bodies -----------------------------------------------------------------------


def test_malformed_bodies_are_refused_in_the_one_error_shape(client, orgs):
    db, acme, _other, _key, _pkg = orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    install(client, headers)
    before = rows(db)
    deep: object = 1
    for _ in range(900):
        deep = [deep]
    deep_text = "[" * 100_000 + "]" * 100_000
    cases = [
        ("POST", BASE, {"agentId": "acme.hello", "grant": GRANT, "admin": True}),
        ("POST", BASE, {"agentId": ["acme.hello"], "grant": GRANT}),
        ("POST", BASE, {"agentId": "acme.hello", "grant": "alerts:raise,secrets:apiKey"}),
        ("POST", BASE, {"agentId": "acme.hello", "grant": [1, 2]}),
        ("POST", BASE, {"agentId": "x" * 10_000}),
        ("POST", BASE, {"agentId": "acme.hello", "grant": ["a"] * 1000}),
        ("POST", BASE, [1, 2, 3]),
        ("POST", BASE, "acme.hello"),
        ("PUT", f"{BASE}/acme.hello/settings", {"settings": "threshold=1"}),
        ("PUT", f"{BASE}/acme.hello/settings", {"settings": {"threshold": deep}}),
        ("PUT", f"{BASE}/acme.hello/settings", {"settings": {f"k{i}": 1 for i in range(1000)}}),
        ("PUT", f"{BASE}/acme.hello/settings", {"settings": {"threshold": 1}, "extra": 1}),
        ("PUT", f"{BASE}/acme.hello/settings", {"settings": {"__proto__": 1}}),
        ("PUT", f"{BASE}/acme.hello/settings", {"unset": "apiKey"}),
        ("POST", f"{BASE}/acme.hello/release", {"reason": "x" * 10_000}),
        ("POST", f"{BASE}/acme.hello/update", {"version": {"$gt": ""}}),
    ]
    for method, path, body in cases:
        answer = client.request(method, path, json=body, headers=headers)
        assert 400 <= answer.status_code < 500, (path, str(body)[:80], answer.status_code)
        assert answer.json()["success"] is False, answer.text
    raw = [
        ("PUT", f"{BASE}/acme.hello/settings", deep_text),
        ("PUT", f"{BASE}/acme.hello/settings", '{"settings": {"threshold": 1}'),
        ("PUT", f"{BASE}/acme.hello/settings", "\x00\xff"),
    ]
    for method, path, text in raw:
        answer = client.request(
            method,
            path,
            content=text.encode("utf-8", "surrogatepass"),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert 400 <= answer.status_code < 500, (path, text[:40], answer.status_code)
    big = json.dumps({"settings": {"threshold": 1, "pad": "x" * (10 * 1024 * 1024)}})
    answer = client.put(
        f"{BASE}/acme.hello/settings",
        content=big,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 413, answer.status_code
    with db.session() as session:
        row = session.scalars(select(AgentInstallation)).one()
        assert row.settings == {}
    assert rows(db)[:3] == before[:3]


# --- secrets --------------------------------------------------------------------------------


def test_a_secret_never_comes_back_in_a_schema_error(client, orgs):
    """A settings schema with a rule on the whole object (``maxProperties``, ``not``) quotes
    the whole instance in jsonschema's message; the secret must not be in the answer."""
    db, acme, _other, key, _pkg = orgs
    package = files(agent_id="acme.strict")
    package["manifest.toml"] = package["manifest.toml"].replace(
        b'[settings]\ntype = "object"\n',
        b'[settings]\ntype = "object"\nmaxProperties = 1\n',
    )
    upload_files(db, acme.id, key, package)
    headers = sign_in(client, acme.id, acme.members["Owner"])
    install(client, headers, agent="acme.strict")
    answer = client.put(
        f"{BASE}/acme.strict/settings",
        json={"settings": {"apiKey": SECRET, "threshold": 3}},
        headers=headers,
    )
    assert answer.status_code == 422, answer.text
    assert SECRET not in answer.text
    assert SECRET[:12] not in answer.text
    assert SECRET not in audit_text(db)


def test_a_secret_put_as_a_plain_setting_is_stored_encrypted_and_hidden(client, orgs):
    db, acme, _other, _key, _pkg = orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    install(client, headers)
    for body in (
        {"settings": {"apiKey": SECRET}},
        {"settings": {"apiKey": SECRET, "threshold": 1}, "plan": True},
    ):
        answer = client.put(f"{BASE}/acme.hello/settings", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text
    with db.session() as session:
        row = session.scalars(select(AgentInstallation)).one()
        assert "apiKey" not in row.settings
        assert SECRET not in json.dumps(row.settings)
    shown = client.get(f"{BASE}/acme.hello")
    assert SECRET not in shown.text
    assert shown.json()["secrets"] == {"apiKey": "set"}
    # Wrong types for a secret are refused without echoing the value.
    for value in ({"nested": SECRET}, [SECRET], SECRET[:4]):
        bad = client.put(
            f"{BASE}/acme.hello/settings", json={"settings": {"apiKey": value}}, headers=headers
        )
        assert bad.status_code == 422, bad.text
        assert SECRET[:4] not in bad.text.replace("sk-l", "") or SECRET not in bad.text
        assert SECRET not in bad.text


# --- console forms ---------------------------------------------------------------------------

CONSOLE_FORMS = (
    "/console/agents/acme.hello/disable",
    "/console/agents/acme.hello/enable",
    "/console/agents/acme.hello/settings",
    "/console/agents/acme.hello/update",
    "/console/agents/acme.hello/update/confirm",
    "/console/agents/acme.hello/uninstall",
    "/console/agents/acme.hello/uninstall/confirm",
    "/console/agents/acme.hello/release",
    "/console/agents/acme.hello/release/confirm",
    "/console/agents/integrity/check",
    "/console/agents/integrity/repair",
    "/console/marketplace/agents/paulyops.file-processor/install",
    "/console/marketplace/agents/paulyops.file-processor/install/confirm",
)
CONFIGURE_FORMS = CONSOLE_FORMS[:3]


def _console(client, db, acme):
    from tests.web.pages.console.test_console_pages import _signed_in, _token

    _signed_in(client, acme.emails["Owner"])
    return _token(client.get("/console/agents"))


def test_every_console_form_refuses_a_missing_wrong_or_foreign_csrf_token(client, orgs):
    from tests.web.pages.console.test_console_pages import _signed_in, _token

    db, acme, other, _key, _pkg = orgs
    install(client, sign_in(client, acme.id, acme.members["Owner"]))
    _signed_in(client, other.emails["Owner"])
    foreign = _token(client.get("/console/agents"))
    own = _console(client, db, acme)
    before = rows(db)
    data = {"grant": GRANT, "setting.threshold": "1", "installation": "acme.hello"}
    for path in CONSOLE_FORMS:
        for token in (None, "", "x" * 43, foreign, own + "x"):
            form = dict(data) if token is None else {**data, "csrf_token": token}
            answer = client.post(path, data=form, follow_redirects=False)
            assert answer.status_code == 403, (path, token, answer.status_code)
        # The token in a header instead of the form is not a way around it either.
        answer = client.post(
            path, data=data, headers={"X-CSRF-Token": foreign}, follow_redirects=False
        )
        assert answer.status_code == 403, (path, answer.status_code)
    assert rows(db) == before


def test_every_console_form_refuses_a_weaker_role(client, orgs):
    from tests.web.pages.console.test_console_pages import _signed_in, _token

    db, acme, _other, _key, _pkg = orgs
    install(client, sign_in(client, acme.id, acme.members["Owner"]))
    before = rows(db)
    for role in ("Manager", "User", "Viewer"):
        _signed_in(client, acme.emails[role])
        token = _token(client.get("/console/agents/acme.hello"))
        form = {"csrf_token": token, "grant": GRANT, "setting.threshold": "1"}
        for path in CONSOLE_FORMS:
            if role == "Manager" and path in CONFIGURE_FORMS:
                continue
            answer = client.post(path, data=form, follow_redirects=False)
            assert answer.status_code == 403, (role, path, answer.status_code)
    after = rows(db)  # sign-ins write audit rows; nothing else may have changed
    assert (after[0], after[1], after[3]) == (before[0], before[1], before[3])
    with db.session() as session:
        row = session.scalars(select(AgentInstallation)).one()
        assert (row.status, row.settings) == ("enabled", {})


@pytest.mark.parametrize(
    "grant",
    [
        ["alerts:raise"],
        ["ALERTS:RAISE", "secrets:apiKey"],
        [*GRANT, "network"],
        ["alerts:raise", "secrets:../x"],
        [],
    ],
)
def test_console_install_confirm_with_a_grant_that_differs_installs_nothing(client, orgs, grant):
    db, acme, _other, _key, _pkg = orgs
    token = _console(client, db, acme)
    before = rows(db)
    answer = client.post(
        "/console/marketplace/agents/acme.hello/install/confirm",
        data={"csrf_token": token, "grant": grant},
        follow_redirects=False,
    )
    assert answer.status_code in (409, 422), answer.status_code
    with db.session() as session:
        assert session.scalars(select(AgentInstallation)).first() is None
    assert rows(db)[0] == before[0]


def test_console_settings_form_never_echoes_a_secret_in_a_whole_object_error(client, orgs):
    db, acme, _other, key, _pkg = orgs
    package = files(agent_id="acme.strict")
    package["manifest.toml"] = package["manifest.toml"].replace(
        b'[settings]\ntype = "object"\n',
        b'[settings]\ntype = "object"\nmaxProperties = 1\n',
    )
    upload_files(db, acme.id, key, package)
    install(client, sign_in(client, acme.id, acme.members["Owner"]), agent="acme.strict")
    token = _console(client, db, acme)
    answer = client.post(
        "/console/agents/acme.strict/settings",
        data={"csrf_token": token, "setting.apiKey": SECRET, "setting.threshold": "3"},
        follow_redirects=False,
    )
    assert answer.status_code == 422, answer.status_code
    assert SECRET not in answer.text
