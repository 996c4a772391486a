"""The marketplace API: browse, search, upload-and-verify and the platform trust routes.

Two organizations and every role of the enterprise model; another organization's
packages are never served, weaker roles are refused, cookie sessions need the CSRF
token, bodies are capped before they are read whole and nothing is stored on failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import INSTANCE_CHAIN, AgentPackage, AuditLog, User
from paulyops.core.security.signatures import generate_key, public_key_id, public_key_pem
from paulyops.services.actor import SYSTEM
from paulyops.services.auth import sessions
from paulyops.services.auth.permissions import role_templates
from paulyops.services.marketplace import trust
from paulyops.services.marketplace.build import assemble
from paulyops.web.api.marketplace import BODY_LIMITS, UPLOAD_PATH
from tests.factories import make_org
from tests.services.marketplace.packages import agent_files, signed_package

AGENTS = "/api/marketplace/agents"
# The bundled agents every organization sees, in the listing order (by id).
BUNDLED = ["paulyops.document-classifier", "paulyops.file-processor"]


def sign_in(client, org_id: str, user_id: str) -> dict[str, str]:
    """Start a cookie session for ``user_id``; return the CSRF header for it."""
    db = client.app.state.instance.db
    with db.write_session() as session:
        new = sessions.create_session(session, user_id=user_id, organization_id=org_id)
        csrf = client.app.state.instance.csrf.issue(new.row.id)
    client.cookies.clear()
    client.cookies.set("paulyops_session", new.token)
    return {"X-CSRF-Token": csrf}


def trust_key(db, key, publisher: str = "acme") -> None:
    """Trust ``key`` for ``publisher`` in the instance trust store."""
    with db.write_session() as session:
        trust.trust_key(
            session,
            trust.TrustKey(
                publisher=publisher, public_key=public_key_pem(key.public_key()).decode()
            ),
            actor=SYSTEM,
        )


def upload(client, headers, data: bytes, name: str = "hello.pauly"):
    """POST ``data`` as the multipart field ``file``."""
    return client.post(
        UPLOAD_PATH,
        files={"file": (name, data, "application/octet-stream")},
        headers=headers,
    )


def stored_count(db) -> int:
    """How many package versions are stored."""
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(AgentPackage))


@pytest.fixture
def two_orgs(client):
    """Two enterprise organizations (every built-in role in each) and a trusted acme key."""
    db = client.app.state.instance.db
    key = generate_key()
    trust_key(db, key)
    return make_org(db, "acme", model="enterprise"), make_org(db, "other", model="enterprise"), key


def test_every_role_browses_and_only_managers_upload(client, two_orgs):
    """Every role reads; only roles holding marketplace:manage upload; others get 403."""
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    for number, template in enumerate(role_templates("enterprise")):
        headers = sign_in(client, acme.id, acme.members[template.name])
        listed = client.get(AGENTS)
        assert listed.status_code == 200, (template.name, listed.text)
        answer = upload(client, headers, signed_package(key, version=f"1.0.{number}"))
        if "marketplace:manage" in template.permissions:
            assert answer.status_code == 201, (template.name, answer.text)
            body = answer.json()
            assert body["organizationLocal"] is True
            assert body["signatureState"] == "signed"
            assert [c["status"] for c in body["checks"]] == ["ok"] * 6
        else:
            assert answer.status_code == 403, (template.name, answer.text)
    assert {
        t.name for t in role_templates("enterprise") if "marketplace:manage" in t.permissions
    } == {
        "Owner",
        "Admin",
    }
    with db.session() as session:
        versions = session.scalars(select(AgentPackage.version)).all()
    assert sorted(versions) == ["1.0.0", "1.0.1"]


def test_details_show_versions_badge_and_plain_words(client, two_orgs):
    """The detail answer has versions, publisher, signature state, badge and capability words."""
    acme, _other, key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Admin"])
    assert upload(client, headers, signed_package(key)).status_code == 201
    assert upload(client, headers, signed_package(key, version="1.1.0")).status_code == 201
    detail = client.get(f"{AGENTS}/acme.hello").json()
    assert detail["latestVersion"] == "1.1.0"
    assert [v["version"] for v in detail["allVersions"]] == ["1.1.0", "1.0.0"]
    assert detail["publisher"] == "acme"
    assert detail["signatureState"] == "signed"
    assert detail["badge"] == "organization-local"
    assert detail["keyId"] == public_key_id(key)
    assert detail["capabilityDetails"] == [
        {
            "name": "alerts:raise",
            "description": "Raise alerts that people in the organization are told about.",
        }
    ]
    found = client.get(AGENTS, params={"q": "words", "capability": "alerts:raise"}).json()
    assert [a["id"] for a in found] == ["acme.hello"]
    assert client.get(AGENTS, params={"publisher": "globex"}).json() == []
    bad = client.get(AGENTS, params={"industry": "space"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "industry"


def test_another_organizations_packages_are_not_found(client, two_orgs):
    """Ids of another organization's uploads answer 404 and never appear in its listing."""
    acme, other, key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    assert upload(client, headers, signed_package(key)).status_code == 201
    sign_in(client, other.id, other.members["Owner"])
    assert client.get(f"{AGENTS}/acme.hello").status_code == 404
    # Only the bundled agents (every organization's) are listed, never acme's upload.
    assert [a["id"] for a in client.get(AGENTS).json()] == BUNDLED


def test_missing_csrf_is_refused_and_nothing_is_stored(client, two_orgs):
    """A cookie session without the CSRF token gets 403 on an upload."""
    acme, _other, key = two_orgs
    sign_in(client, acme.id, acme.members["Owner"])
    answer = upload(client, {}, signed_package(key))
    assert answer.status_code == 403
    wrong = upload(client, {"X-CSRF-Token": "forged"}, signed_package(key))
    assert wrong.status_code == 403
    assert stored_count(client.app.state.instance.db) == 0


def test_rejections_come_in_the_one_error_shape_and_store_nothing(client, two_orgs, tmp_path):
    """Unsigned, untrusted and corrupt uploads: 422 with the validator's message per field."""
    acme, _other, _key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    before = set(os.listdir(tmp_path))
    unsigned = upload(client, headers, assemble(agent_files()))
    assert unsigned.status_code == 422
    body = unsigned.json()
    assert body["success"] is False
    assert body["errors"][0]["field"] == "SIGNATURE"
    assert "SIGNATURE is missing" in body["errors"][0]["message"]
    stranger = upload(client, headers, signed_package(generate_key()))
    assert "not a trusted key" in stranger.json()["errors"][0]["message"]
    garbage = upload(client, headers, b"PK\x03\x04 not really a zip")
    assert garbage.status_code == 422
    assert garbage.json()["errors"][0]["field"] == "(archive)"
    assert stored_count(client.app.state.instance.db) == 0
    assert set(os.listdir(tmp_path)) == before


def test_unsigned_mode_is_the_organizations_and_audited(client, two_orgs):
    """PUT policy turns unsigned uploads on for that organization only; each use is audited."""
    acme, other, _key = two_orgs
    db = client.app.state.instance.db
    viewer = sign_in(client, acme.id, acme.members["Viewer"])
    assert client.get("/api/marketplace/policy").json() == {"allowUnsigned": False}
    assert (
        client.put("/api/marketplace/policy", json={"allowUnsigned": True}, headers=viewer)
    ).status_code == 403
    admin = sign_in(client, acme.id, acme.members["Admin"])
    turned = client.put("/api/marketplace/policy", json={"allowUnsigned": True}, headers=admin)
    assert turned.json() == {"allowUnsigned": True}
    # Not acme.*: a trusted key owns that namespace, so unsigned is refused there anyway.
    unsigned = assemble(agent_files(agent_id="tinker.hello"))
    answer = upload(client, admin, unsigned)
    assert answer.status_code == 201, answer.text
    assert client.get(f"{AGENTS}/tinker.hello").json()["badge"] == "unsigned-allowed"
    other_admin = sign_in(client, other.id, other.members["Admin"])
    assert upload(client, other_admin, unsigned).status_code == 422
    with db.session() as session:
        actions = session.scalars(select(AuditLog.action).where(AuditLog.chain == acme.id)).all()
    assert "marketplace.unsigned_policy_changed" in actions
    assert "marketplace.unsigned_package_accepted" in actions


@pytest.mark.parametrize(
    "name",
    [
        "../../../../etc/cron.d/evil.pauly",
        "/abs/path.pauly",
        "C:\\Windows\\system32\\x.pauly",
        "evil\x00name.pauly",
        "..",
        "x" * 1000 + ".pauly",
        "<script>alert(1)</script>.pauly",
        "ünïcødé\u202e.pauly",
    ],
)
def test_hostile_file_names_change_nothing_but_the_audit_label(client, two_orgs, tmp_path, name):
    """The client's file name is only a sanitized label: never a path, never an error."""
    acme, _other, key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    answer = upload(client, headers, signed_package(key), name=name)
    assert answer.status_code == 201, answer.text
    with client.app.state.instance.db.session() as session:
        row = session.scalars(
            select(AuditLog).where(AuditLog.action == "marketplace.package_uploaded")
        ).one()
    label = row.changes["fileName"]
    assert "/" not in label
    assert "\\" not in label
    assert "\x00" not in label
    assert ".." not in label
    assert len(label.encode()) <= 255
    assert not Path("/etc/cron.d/evil.pauly").exists()


def test_huge_bodies_are_refused_before_they_are_read(client, two_orgs):
    """A declared or streamed body over the upload limit is a 413; nothing is stored."""
    acme, _other, _key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    limit = BODY_LIMITS[UPLOAD_PATH]
    declared = client.post(
        UPLOAD_PATH,
        content=b"x" * 10,
        headers={
            **headers,
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(limit + 1),
        },
    )
    assert declared.status_code == 413
    assert declared.json()["success"] is False

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pauly"\r\n\r\n'
        for _ in range(limit // (1024 * 1024) + 2):
            yield b"\0" * (1024 * 1024)

    streamed = client.post(
        UPLOAD_PATH,
        content=chunks(),
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert streamed.status_code == 413
    assert stored_count(client.app.state.instance.db) == 0


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\n"),  # no boundary
        ("multipart/form-data; boundary=x", b"garbage without any boundary"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'),
        ("application/json", b"{}"),
        ("text/plain", b"hello"),
    ],
)
def test_malformed_or_wrong_bodies_are_422(client, two_orgs, content_type, body):
    """Whatever is not one well-formed multipart file answers 422 on the field 'file'."""
    acme, _other, _key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    answer = client.post(
        UPLOAD_PATH, content=body, headers={**headers, "Content-Type": content_type}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "file"


def test_trust_routes_are_for_platform_administrators(client, two_orgs):
    """An organization Owner gets 403; a platform admin trusts and revokes, audited."""
    acme, _other, _key = two_orgs
    db = client.app.state.instance.db
    newcomer = generate_key()
    body = {"publisher": "globex", "publicKey": public_key_pem(newcomer.public_key()).decode()}
    owner = sign_in(client, acme.id, acme.members["Owner"])
    assert (
        client.post("/api/platform/marketplace/keys", json=body, headers=owner).status_code == 403
    )
    assert client.get("/api/platform/marketplace/trust").status_code == 403
    with db.write_session() as session:
        session.get(User, acme.members["Owner"]).is_platform_admin = True
    admin = sign_in(client, acme.id, acme.members["Owner"])
    added = client.post("/api/platform/marketplace/keys", json=body, headers=admin)
    assert added.status_code == 201, added.text
    assert added.json()["namespace"] == "globex.*"
    assert (
        client.post("/api/platform/marketplace/keys", json=body, headers=admin).status_code == 409
    )
    revoked = client.post(
        "/api/platform/marketplace/revocations",
        json={"key": public_key_id(newcomer), "reason": "rotated"},
        headers=admin,
    )
    assert revoked.status_code == 201, revoked.text
    listed = client.get("/api/platform/marketplace/trust").json()
    assert [k["revoked"] for k in listed["keys"] if k["namespace"] == "globex.*"] == [True]
    both = client.post(
        "/api/platform/marketplace/revocations",
        json={"key": "abcdef12", "agentId": "acme.hello", "version": "1.0.0"},
        headers=admin,
    )
    assert both.status_code == 422
    with db.session() as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.chain == INSTANCE_CHAIN)
        ).all()
    assert {"marketplace.key_trusted", "marketplace.key_revoked"} <= set(actions)


def test_a_script_uploads_with_an_api_token_and_no_csrf(client, two_orgs):
    """Bearer tokens are CSRF-exempt: a token with marketplace:manage uploads; one without, 403."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.auth import rbac, tokens

    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    with db.write_session() as session:
        holder = rbac.grant_for(session, acme.id, acme.members["Admin"])
        issued = {
            name: tokens.create_api_token(
                OrgScope(session, acme.id),
                user_id=acme.members["Admin"],
                name=name,
                permissions=perms,
                holder_permissions=holder.permissions,
            ).secret
            for name, perms in (
                ("ci", ["marketplace:manage", "marketplace:read"]),
                ("reader", ["marketplace:read"]),
            )
        }
    client.cookies.clear()
    reader = {"Authorization": f"Bearer {issued['reader']}"}
    assert upload(client, reader, signed_package(key)).status_code == 403
    ci = {"Authorization": f"Bearer {issued['ci']}"}
    answer = upload(client, ci, signed_package(key))
    assert answer.status_code == 201, answer.text
    assert [a["id"] for a in client.get(AGENTS, headers=reader).json()] == [*BUNDLED, "acme.hello"]


def test_bundled_agents_are_listed_for_every_organization_with_their_badge(client, two_orgs):
    """Bundled agents come from the distribution: every organization sees them, trusted."""
    acme, other, _key = two_orgs
    for org in (acme, other):
        sign_in(client, org.id, org.members["Viewer"])
        listed = {a["id"]: a for a in client.get(AGENTS).json()}
        assert listed["paulyops.file-processor"]["badge"] == "bundled"
        assert listed["paulyops.file-processor"]["signatureState"] == "bundled"
        assert listed["paulyops.file-processor"]["publisher"] == "paulyops"
    detail = client.get(f"{AGENTS}/paulyops.file-processor").json()
    assert detail["badgeLabel"] == "Bundled with PaulyOps"
    assert detail["mediaTypes"] == ["*/*"]
    assert detail["documentClasses"] == ["generic"]
    assert detail["keyId"] is None
    assert [(v["version"], v["source"]) for v in detail["allVersions"]] == [("0.1.0", "bundled")]
    found = client.get(AGENTS, params={"publisher": "paulyops"}).json()
    assert [a["id"] for a in found] == BUNDLED
    # Nothing of it is stored: bundled agents are read from the distribution.
    assert stored_count(client.app.state.instance.db) == 0
