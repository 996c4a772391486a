"""``/api/agents``: every role, two organizations, CSRF, plans, secrets and integrity."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, update

from paulyops.core.db.models import AgentEvent, AgentInstallation, AgentPackage, AuditLog
from paulyops.core.security.signatures import generate_key
from paulyops.services.auth.permissions import role_templates
from tests.factories import make_org
from tests.services.agents.helpers import SECRET, audit_text, setup_instance, upload
from tests.web.api.test_marketplace_api import sign_in

BASE = "/api/agents"
GRANT = ["alerts:raise", "secrets:apiKey"]


@pytest.fixture
def two_orgs(client):
    db = client.app.state.instance.db
    key = generate_key()
    setup_instance(db, key, bind=False)
    acme = make_org(db, "acme", model="enterprise")
    other = make_org(db, "other", model="enterprise")
    upload(db, acme.id, key)
    return db, acme, other


def rows(db) -> tuple[int, int, int]:
    with db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(AgentInstallation)),
            session.scalar(select(func.count()).select_from(AgentEvent)),
            session.scalar(select(func.count()).select_from(AuditLog)),
        )


def test_every_role_gets_what_its_permissions_allow(client, two_orgs):
    """Viewer and User read; Manager also configures; Admin and Owner install."""
    _db, acme, _other = two_orgs
    for template in role_templates("enterprise"):
        headers = sign_in(client, acme.id, acme.members[template.name])
        perms = template.permissions
        listed = client.get(BASE)
        assert listed.status_code == 200, (template.name, listed.text)
        answer = client.post(
            BASE, json={"agentId": "paulyops.file-processor", "grant": []}, headers=headers
        )
        if "agents:install" in perms:
            assert answer.status_code == 201, (template.name, answer.text)
        else:
            assert answer.status_code == 403, (template.name, answer.text)
            continue
        disabled = client.post(f"{BASE}/paulyops.file-processor/disable", headers=headers)
        assert disabled.status_code == (200 if "agents:configure" in perms else 403)
        gone = client.delete(f"{BASE}/paulyops.file-processor", headers=headers)
        assert gone.status_code == 200, gone.text
    # Manager: configure yes, install no.
    headers = sign_in(client, acme.id, acme.members["Owner"])
    assert (
        client.post(
            BASE, json={"agentId": "acme.hello", "grant": GRANT}, headers=headers
        ).status_code
        == 201
    )
    for name in ("Manager", "User", "Viewer"):
        headers = sign_in(client, acme.id, acme.members[name])
        allowed = name == "Manager"
        put = client.put(
            f"{BASE}/acme.hello/settings", json={"settings": {"threshold": 2}}, headers=headers
        )
        assert put.status_code == (200 if allowed else 403), (name, put.text)
        off = client.post(f"{BASE}/acme.hello/disable", headers=headers)
        assert off.status_code == (200 if allowed else 403), (name, off.text)
        assert client.delete(f"{BASE}/acme.hello", headers=headers).status_code == 403
        assert client.get(f"{BASE}/acme.hello").status_code == 200
        assert client.get(f"{BASE}/integrity").status_code == 200


def test_csrf_is_required_on_every_change(client, two_orgs):
    db, acme, _other = two_orgs
    sign_in(client, acme.id, acme.members["Owner"])
    before = rows(db)
    for method, path, body in (
        ("POST", BASE, {"agentId": "acme.hello", "grant": GRANT}),
        ("POST", f"{BASE}/acme.hello/update", {}),
        ("DELETE", f"{BASE}/acme.hello", None),
        ("POST", f"{BASE}/acme.hello/enable", None),
        ("PUT", f"{BASE}/acme.hello/settings", {"settings": {"threshold": 1}}),
        ("POST", f"{BASE}/acme.hello/release", {}),
    ):
        answer = client.request(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
    assert rows(db) == before


def test_plan_grant_and_the_one_error_shape(client, two_orgs):
    db, acme, _other = two_orgs
    headers = sign_in(client, acme.id, acme.members["Admin"])
    before = rows(db)
    planned = client.post(BASE, json={"agentId": "acme.hello", "plan": True}, headers=headers)
    assert planned.status_code == 200, planned.text
    body = planned.json()
    assert body["applied"] is False
    assert [c["name"] for c in body["plan"]["grants"]["requested"]] == GRANT
    assert body["plan"]["filesAdded"]
    partial = client.post(
        BASE, json={"agentId": "acme.hello", "grant": ["alerts:raise"]}, headers=headers
    )
    assert partial.status_code == 422
    assert partial.json()["success"] is False
    assert partial.json()["errors"][0]["field"] == "grant"
    assert rows(db) == before
    done = client.post(BASE, json={"agentId": "acme.hello", "grant": GRANT}, headers=headers)
    assert done.status_code == 201, done.text
    inst = done.json()["installation"]
    assert inst["secrets"] == {"apiKey": "not set"}
    assert (
        client.post(
            BASE, json={"agentId": "acme.hello", "grant": GRANT}, headers=headers
        ).status_code
        == 409
    )
    off_plan = client.post(f"{BASE}/acme.hello/disable", params={"plan": "true"}, headers=headers)
    assert off_plan.json()["applied"] is False
    assert client.get(f"{BASE}/acme.hello").json()["status"] == "enabled"
    del_plan = client.delete(f"{BASE}/acme.hello", params={"plan": "true"}, headers=headers)
    assert del_plan.status_code == 200
    assert del_plan.json()["plan"]["filesRemoved"]
    assert client.get(f"{BASE}/acme.hello").status_code == 200


def test_another_organization_never_sees_or_changes_it(client, two_orgs):
    db, acme, other = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    inst = client.post(BASE, json={"agentId": "acme.hello", "grant": GRANT}, headers=headers).json()
    inst_id = inst["installation"]["id"]
    headers = sign_in(client, other.id, other.members["Owner"])
    assert client.get(BASE).json() == []
    for ref in ("acme.hello", inst_id):
        assert client.get(f"{BASE}/{ref}").status_code == 404
        assert client.delete(f"{BASE}/{ref}", headers=headers).status_code == 404
        assert client.post(f"{BASE}/{ref}/disable", headers=headers).status_code == 404
        assert client.post(f"{BASE}/{ref}/update", json={}, headers=headers).status_code == 404
        assert client.post(f"{BASE}/{ref}/release", json={}, headers=headers).status_code == 404
        put = client.put(
            f"{BASE}/{ref}/settings", json={"settings": {"threshold": 1}}, headers=headers
        )
        assert put.status_code == 404
    # acme's own upload is not other's to install.
    assert (
        client.post(
            BASE, json={"agentId": "acme.hello", "grant": GRANT}, headers=headers
        ).status_code
        == 404
    )
    with db.session() as session:
        row = session.scalars(select(AgentInstallation)).one()
        assert (row.organization_id, row.status, row.settings) == (acme.id, "enabled", {})


def test_secrets_are_never_returned(client, two_orgs, capsys):
    """Not in answers, views, errors, audit rows, events nor the log lines."""
    db, acme, _other = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    client.post(BASE, json={"agentId": "acme.hello", "grant": GRANT}, headers=headers)
    put = client.put(
        f"{BASE}/acme.hello/settings",
        json={"settings": {"apiKey": SECRET, "threshold": 3}},
        headers=headers,
    )
    assert put.status_code == 200, put.text
    assert SECRET not in put.text
    assert put.json()["installation"]["secrets"] == {"apiKey": "set"}
    shown = client.get(f"{BASE}/acme.hello")
    assert SECRET not in shown.text
    assert shown.json()["settings"] == {"threshold": 3}
    bad = client.put(
        f"{BASE}/acme.hello/settings", json={"settings": {"apiKey": 12345}}, headers=headers
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "settings.apiKey"
    assert "12345" not in bad.text
    assert SECRET not in client.get(BASE).text
    assert SECRET not in audit_text(db)
    with db.session() as session:
        details = session.scalars(select(AgentEvent.details)).all()
    assert SECRET not in json.dumps(details)
    logged = capsys.readouterr()
    assert SECRET not in logged.out
    assert SECRET not in logged.err


def test_integrity_report_quarantine_and_release(client, two_orgs):
    db, acme, _other = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    client.post(BASE, json={"agentId": "acme.hello", "grant": GRANT}, headers=headers)
    client.post(BASE, json={"agentId": "paulyops.file-processor", "grant": []}, headers=headers)
    report = client.get(f"{BASE}/integrity").json()
    assert [(r["agentId"], r["archiveOk"], r["problems"]) for r in report] == [
        ("acme.hello", True, []),
        ("paulyops.file-processor", True, []),
    ]
    with db.write_session() as session:
        session.execute(
            update(AgentPackage)
            .where(AgentPackage.agent_id == "acme.hello")
            .values(archive=b"tampered")
        )
    report = client.get(f"{BASE}/integrity").json()
    assert report[0]["archiveOk"] is False
    assert client.get(f"{BASE}/acme.hello").json()["status"] == "enabled"  # a GET changes nothing
    verified = client.post(f"{BASE}/integrity", headers=headers).json()
    assert verified[0]["quarantined"] is True
    statuses = {a["agentId"]: a["status"] for a in client.get(BASE).json()}
    assert statuses == {"acme.hello": "quarantined", "paulyops.file-processor": "enabled"}
    refused = client.post(f"{BASE}/acme.hello/release", json={}, headers=headers)
    assert refused.status_code == 409
    assert "damaged" in refused.json()["message"]
    assert client.post(f"{BASE}/acme.hello/enable", headers=headers).status_code == 409
    repaired = client.post(f"{BASE}/acme.hello/repair", headers=headers).json()
    assert repaired[0]["repaired"] is False
