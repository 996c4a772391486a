"""The marketplace attacked by someone with two organizations and every role.

Each test is one attempt that must keep failing: another organization's packages through
every route, weaker roles, narrow or delegated credentials, forged CSRF, hostile uploads
(bombs, foreign or reserved namespaces, revoked keys and versions, races), injection-like
search filters, and secrets leaking into answers or logs.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from starlette.datastructures import UploadFile

from paulyops.core.db.models import AgentPackage, Delegation, MarketplacePolicy, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.logging import add_alert_hook
from paulyops.core.security.signatures import generate_key, public_key_id, public_key_pem
from paulyops.services.actor import SYSTEM
from paulyops.services.auth import rbac, tokens
from paulyops.services.marketplace import store, trust
from paulyops.services.marketplace.build import assemble
from paulyops.services.marketplace.validate import validate_package
from paulyops.web.api.marketplace import BODY_LIMITS, UPLOAD_PATH
from tests.services.marketplace.packages import Raw, agent_files, raw_zip, signed_package
from tests.web.api.test_marketplace_api import AGENTS, sign_in, stored_count, trust_key, upload

POLICY = "/api/marketplace/policy"
CONSOLE_UPLOAD = "/console/marketplace/upload"
CONSOLE_POLICY = "/console/marketplace/policy"


@pytest.fixture
def two_orgs(client):
    """Two enterprise organizations (every built-in role in each) and a trusted acme key."""
    from tests.factories import make_org

    db = client.app.state.instance.db
    key = generate_key()
    trust_key(db, key)
    return make_org(db, "acme", model="enterprise"), make_org(db, "other", model="enterprise"), key


def _token(db, org, member: str, permissions: list[str]) -> dict[str, str]:
    with db.write_session() as session:
        holder = rbac.grant_for(session, org.id, org.members[member])
        secret = tokens.create_api_token(
            OrgScope(session, org.id),
            user_id=org.members[member],
            name="-".join(permissions).replace(":", "_"),
            permissions=permissions,
            holder_permissions=holder.grantable,
        ).secret
    return {"Authorization": f"Bearer {secret}"}


def _policy_of(db, org_id: str) -> bool:
    with db.session() as session:
        row = session.scalars(
            select(MarketplacePolicy).where(MarketplacePolicy.organization_id == org_id)
        ).first()
        return bool(row and row.allow_unsigned)


def _console_token(client) -> str:
    """The CSRF token the console upload page embeds for the signed-in session."""
    page = client.get(CONSOLE_UPLOAD)
    assert page.status_code == 200, page.text
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def _allow_unsigned(client, org, member: str = "Owner") -> dict[str, str]:
    headers = sign_in(client, org.id, org.members[member])
    assert client.put(POLICY, json={"allowUnsigned": True}, headers=headers).status_code == 200
    return headers


# --- another organization's packages ----------------------------------------------------


def test_another_organizations_package_looks_exactly_like_no_package(client, two_orgs):
    """Detail, listing with every filter, console pages: the same 404 as an unknown id."""
    acme, other, key = two_orgs
    acme_admin = sign_in(client, acme.id, acme.members["Admin"])
    stored = upload(client, acme_admin, signed_package(key)).json()
    sign_in(client, other.id, other.members["Owner"])
    theirs = client.get(f"{AGENTS}/acme.hello")
    nobody = client.get(f"{AGENTS}/acme.nobody")
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json()["message"].replace("hello", "X") == nobody.json()["message"].replace(
        "nobody", "X"
    )
    for params in ({"q": "hello"}, {"publisher": "acme"}, {"capability": "alerts:raise"}):
        assert client.get(AGENTS, params=params).json() == []
    page = client.get("/console/marketplace/agents/acme.hello")
    assert page.status_code == 404
    assert "Counts words" not in page.text
    assert "Counts words" not in client.get("/console/marketplace", params={"q": "h"}).text
    assert stored["sha256"] not in client.get(f"{AGENTS}/acme.nobody").text
    assert client.get(POLICY).json() == {"allowUnsigned": False}


def test_the_same_id_and_version_in_another_organization_reveals_nothing(client, two_orgs):
    """Other bytes for an id+version another organization holds: stored, no 409 that tells."""
    acme, other, key = two_orgs
    first = sign_in(client, acme.id, acme.members["Owner"])
    assert upload(client, first, signed_package(key)).status_code == 201
    second = sign_in(client, other.id, other.members["Owner"])
    different = signed_package(key, capabilities="[]")
    answer = upload(client, second, different)
    assert answer.status_code == 201, answer.text
    assert answer.json()["created"] is True
    assert [v["version"] for v in client.get(f"{AGENTS}/acme.hello").json()["allVersions"]] == [
        "1.0.0"
    ]


def test_an_api_token_of_one_organization_never_reaches_the_other(client, two_orgs):
    """A token is bound to its organization: the other one's uploads stay invisible."""
    acme, other, key = two_orgs
    db = client.app.state.instance.db
    headers = sign_in(client, other.id, other.members["Owner"])
    assert upload(client, headers, signed_package(key, agent_id="acme.secret")).status_code == 201
    client.cookies.clear()
    token = _token(db, acme, "Owner", ["marketplace:read", "marketplace:manage"])
    assert client.get(f"{AGENTS}/acme.secret", headers=token).status_code == 404
    assert [a["id"] for a in client.get(AGENTS, headers=token).json()] == [
        "paulyops.document-classifier",
        "paulyops.file-processor",
    ]
    assert client.put(POLICY, json={"allowUnsigned": True}, headers=token).status_code == 200
    assert _policy_of(db, other.id) is False


def test_stored_archives_load_only_for_their_organization(client, two_orgs):
    """The one download path (load_archive) answers 404 for another organization's id."""
    acme, other, key = two_orgs
    db = client.app.state.instance.db
    headers = sign_in(client, acme.id, acme.members["Owner"])
    package_id = upload(client, headers, signed_package(key)).json()["id"]
    with db.session() as session:
        assert store.load_archive(session, package_id, organization_id=acme.id)
        from paulyops.core.errors import NotFoundError

        with pytest.raises(NotFoundError):
            store.load_archive(session, package_id, organization_id=other.id)
        with pytest.raises(NotFoundError):
            store.load_archive(session, package_id, organization_id=None)


# --- weaker roles, narrow tokens, delegation ----------------------------------------------


@pytest.mark.parametrize("role", ["Manager", "User", "Viewer"])
def test_weaker_roles_neither_upload_nor_switch_the_policy(client, two_orgs, role):
    """API and console: upload and policy answer 403 and change nothing."""
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    headers = sign_in(client, acme.id, acme.members[role])
    assert upload(client, headers, signed_package(key)).status_code == 403
    assert client.put(POLICY, json={"allowUnsigned": True}, headers=headers).status_code == 403
    csrf = headers["X-CSRF-Token"]
    assert client.get(CONSOLE_UPLOAD).status_code == 403
    posted = client.post(
        CONSOLE_UPLOAD,
        data={"csrf_token": csrf},
        files={"file": ("a.pauly", signed_package(key), "application/octet-stream")},
    )
    assert posted.status_code == 403
    switched = client.post(CONSOLE_POLICY, data={"csrf_token": csrf, "allow_unsigned": "on"})
    assert switched.status_code == 403
    assert stored_count(db) == 0
    assert _policy_of(db, acme.id) is False


def test_tokens_limited_to_other_permissions_are_refused(client, two_orgs):
    """A token without marketplace:read cannot browse; without manage, cannot upload or toggle."""
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    client.cookies.clear()
    unrelated = _token(db, acme, "Owner", ["org:read"])
    assert client.get(AGENTS, headers=unrelated).status_code == 403
    assert client.get(f"{AGENTS}/acme.hello", headers=unrelated).status_code == 403
    assert client.get(POLICY, headers=unrelated).status_code == 403
    reader = _token(db, acme, "Owner", ["marketplace:read"])
    assert upload(client, reader, signed_package(key)).status_code == 403
    assert client.put(POLICY, json={"allowUnsigned": True}, headers=reader).status_code == 403
    assert client.get("/api/platform/marketplace/trust", headers=reader).status_code == 403
    assert stored_count(db) == 0
    assert _policy_of(db, acme.id) is False


def test_a_delegated_manage_permission_works_until_it_expires(client, two_orgs):
    """A Viewer lent marketplace:manage uploads; once expired, 403 again; never into a token."""
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    with db.write_session() as session:
        session.add(
            Delegation(
                organization_id=acme.id,
                from_user_id=acme.members["Admin"],
                to_user_id=acme.members["Viewer"],
                permissions=["marketplace:manage"],
                expires_at=utcnow() + timedelta(days=1),
            )
        )
    headers = sign_in(client, acme.id, acme.members["Viewer"])
    assert upload(client, headers, signed_package(key)).status_code == 201
    from paulyops.core.errors import PermissionDeniedError

    with pytest.raises(PermissionDeniedError):
        _token(db, acme, "Viewer", ["marketplace:manage"])
    with db.write_session() as session:
        for row in session.scalars(select(Delegation)):
            row.expires_at = utcnow() - timedelta(seconds=1)
    headers = sign_in(client, acme.id, acme.members["Viewer"])
    again = upload(client, headers, signed_package(key, version="1.0.1"))
    assert again.status_code == 403, again.text
    assert stored_count(db) == 1


# --- CSRF with a cookie session -------------------------------------------------------------


def test_cookie_sessions_need_the_csrf_token_in_json_and_multipart(client, two_orgs):
    """Missing or wrong token: 403 for JSON (policy) and multipart (upload, token as a field)."""
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    sign_in(client, acme.id, acme.members["Owner"])
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        assert client.put(POLICY, json={"allowUnsigned": True}, headers=headers).status_code == 403
    files = {"file": ("a.pauly", signed_package(key), "application/octet-stream")}
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
        assert client.post(UPLOAD_PATH, data=data, files=files).status_code == 403
        assert client.post(CONSOLE_UPLOAD, data=data, files=files).status_code == 403
        policy = client.post(CONSOLE_POLICY, data={**data, "allow_unsigned": "on"})
        assert policy.status_code == 403
    assert stored_count(db) == 0
    assert _policy_of(db, acme.id) is False
    token = _console_token(client)
    posted = client.post(
        CONSOLE_UPLOAD, data={"csrf_token": token}, files=files, follow_redirects=False
    )
    assert posted.status_code == 303, posted.text
    assert stored_count(db) == 1


def _tracking_uploads(monkeypatch) -> list[UploadFile]:
    made: list[UploadFile] = []
    original = UploadFile.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(UploadFile, "__init__", init)
    return made


def test_a_form_parsed_by_the_csrf_guard_is_closed_on_every_route(client, two_orgs, monkeypatch):
    """The guard reads csrf_token from a multipart body: its spooled files are closed after.

    Sent to routes that never read a file (the console policy switch, the JSON policy
    route) and with a token the guard refuses, the uploaded file must not stay open.
    """
    acme, _other, _key = two_orgs
    made = _tracking_uploads(monkeypatch)
    sign_in(client, acme.id, acme.members["Owner"])
    token = _console_token(client)
    big = b"x" * (512 * 1024)
    files = {"junk": ("junk.bin", big, "application/octet-stream")}
    ok = client.post(
        CONSOLE_POLICY, data={"csrf_token": token}, files=files, follow_redirects=False
    )
    assert ok.status_code == 303, ok.text
    refused = client.put(POLICY, data={"csrf_token": "forged"}, files=files)
    assert refused.status_code == 403
    unread = client.put(POLICY, data={"csrf_token": token}, files=files)
    assert unread.status_code == 422
    assert made, "the guard parsed no file"
    assert all(f.file.closed for f in made)


def test_the_guard_does_not_lift_the_upload_routes_one_file_limit(client, two_orgs):
    """A console upload with many files (parsed first by the CSRF guard) is refused, 422."""
    acme, _other, key = two_orgs
    sign_in(client, acme.id, acme.members["Owner"])
    token = _console_token(client)
    files = [("file", ("a.pauly", signed_package(key), "application/octet-stream"))]
    files += [("extra", (f"x{i}.bin", b"x", "application/octet-stream")) for i in range(20)]
    answer = client.post(CONSOLE_UPLOAD, data={"csrf_token": token}, files=files)
    assert answer.status_code == 422, answer.text
    assert stored_count(client.app.state.instance.db) == 0


# --- the platform trust store ---------------------------------------------------------------


def test_an_organization_owner_is_no_platform_administrator(client, two_orgs):
    """Owner (session or full token): every platform trust route answers 403, nothing changes."""
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    owner = sign_in(client, acme.id, acme.members["Owner"])
    body = {"publisher": "evil", "publicKey": public_key_pem(generate_key().public_key()).decode()}
    revoke = {"key": public_key_id(key), "reason": "mine now"}
    assert client.get("/api/platform/marketplace/trust").status_code == 403
    assert (
        client.post("/api/platform/marketplace/keys", json=body, headers=owner).status_code == 403
    )
    answer = client.post("/api/platform/marketplace/revocations", json=revoke, headers=owner)
    assert answer.status_code == 403
    with db.session() as session:
        found = trust.list_trust(session)
    assert [k.namespace for k in found.keys] == ["acme.*"]
    assert found.revocations == []


# --- hostile packages ---------------------------------------------------------------------


def test_a_zip_bomb_is_refused_while_streaming_and_nothing_is_stored(client, two_orgs):
    """A small deflate entry that would unpack to 20 MB: 422 naming the ratio."""
    acme, _other, _key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    bomb = raw_zip([Raw("zz.bin", b"\0" * (20 * 1024 * 1024), method=8)])
    assert len(bomb) < 64 * 1024
    answer = upload(client, headers, bomb)
    assert answer.status_code == 422
    assert "compression ratio" in answer.text
    assert stored_count(client.app.state.instance.db) == 0


@pytest.mark.parametrize(
    ("agent_id", "expected"),
    [
        ("globex.hello", "trusted only for acme.*"),
        ("paulyops.hello", "reserved for agents bundled"),
    ],
)
def test_signed_packages_outside_the_keys_namespace_are_refused(
    client, two_orgs, agent_id, expected
):
    """An acme key signing another publisher's or the reserved namespace: 422."""
    acme, _other, key = two_orgs
    headers = _allow_unsigned(client, acme)
    answer = upload(client, headers, signed_package(key, agent_id=agent_id))
    assert answer.status_code == 422
    assert expected in answer.text
    unsigned = upload(client, headers, assemble(agent_files(agent_id="paulyops.hello")))
    assert unsigned.status_code == 422
    assert "reserved for agents bundled" in unsigned.text
    assert stored_count(client.app.state.instance.db) == 0


def test_developer_mode_cannot_squat_a_trusted_publishers_namespace(client, two_orgs):
    """Unsigned is allowed, but not under acme.*, which a trusted key owns: 422.

    Otherwise an unsigned ``acme.hello 9.0.0`` would become the newest version of the
    verified publisher's agent in the organization's listing.
    """
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    with db.write_session() as session:
        stored = store.store_package(
            session,
            signed_package(key),
            validate_package(
                io.BytesIO(signed_package(key)),
                trusted=trust.trust_inputs(session)[0],
            ),
            organization_id=None,
            source="catalog",
            uploaded_by=None,
        )
    assert stored.created
    headers = _allow_unsigned(client, acme)
    squat = upload(client, headers, assemble(agent_files(version="9.0.0")))
    assert squat.status_code == 422, squat.text
    assert squat.json()["errors"][0]["field"] == "SIGNATURE"
    assert "acme.*" in squat.json()["errors"][0]["message"]
    detail = client.get(f"{AGENTS}/acme.hello").json()
    assert detail["latestVersion"] == "1.0.0"
    assert detail["badge"] == "verified-publisher"
    own = upload(client, headers, assemble(agent_files(agent_id="tinker.hello")))
    assert own.status_code == 201, own.text


def test_revoked_keys_and_versions_are_refused_at_upload(client, two_orgs):
    """After a revocation the same bytes answer 422 with the reason."""
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    with db.write_session() as session:
        trust.revoke(
            session,
            trust.RevokeTrust(agent_id="acme.hello", version="1.0.0", reason="bad build"),
            actor=SYSTEM,
        )
    headers = sign_in(client, acme.id, acme.members["Owner"])
    version = upload(client, headers, signed_package(key))
    assert version.status_code == 422
    assert "was revoked by this instance (bad build)" in version.text
    assert upload(client, headers, signed_package(key, version="1.0.1")).status_code == 201
    with db.write_session() as session:
        trust.revoke(
            session, trust.RevokeTrust(key=public_key_id(key), reason="leaked"), actor=SYSTEM
        )
    headers = sign_in(client, acme.id, acme.members["Owner"])
    keyed = upload(client, headers, signed_package(key, version="1.0.2"))
    assert keyed.status_code == 422
    assert "which was revoked (leaked)" in keyed.text
    listed = client.get(f"{AGENTS}/acme.hello").json()
    assert listed["revoked"] is True
    assert stored_count(db) == 1


def test_unsigned_uploads_with_the_policy_off_are_refused_everywhere(client, two_orgs):
    """Policy off (default, or turned off again): unsigned answers 422 by API and console."""
    acme, _other, _key = two_orgs
    headers = _allow_unsigned(client, acme)
    assert client.put(POLICY, json={"allowUnsigned": False}, headers=headers).status_code == 200
    unsigned = assemble(agent_files(agent_id="tinker.hello"))
    assert upload(client, headers, unsigned).status_code == 422
    token = _console_token(client)
    files = {"file": ("a.pauly", unsigned, "application/octet-stream")}
    assert client.post(CONSOLE_UPLOAD, data={"csrf_token": token}, files=files).status_code == 422
    assert stored_count(client.app.state.instance.db) == 0


# --- re-upload races ----------------------------------------------------------------------


def test_same_id_and_version_with_other_bytes_is_a_conflict(client, two_orgs):
    """Identical bytes again: 201 with created false; other bytes: 409, the first kept."""
    acme, _other, key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    first = upload(client, headers, signed_package(key))
    again = upload(client, headers, signed_package(key))
    assert again.status_code == 201
    assert again.json()["created"] is False
    assert again.json()["id"] == first.json()["id"]
    other = upload(client, headers, signed_package(key, capabilities="[]"))
    assert other.status_code == 409
    assert stored_count(client.app.state.instance.db) == 1


def test_two_identical_uploads_at_once_store_one_row_and_never_fail(client, two_orgs):
    """Concurrent stores of one id+version: one row; the loser sees it (no IntegrityError).

    The first transaction inserts but has not committed when the second checks for a
    clash, so the second only meets the row at the unique index (PostgreSQL); SQLite
    serializes the two writers instead. Either way the loser answers like a re-upload.
    """
    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    data = signed_package(key)
    with db.session() as session:
        trusted, _revoked = trust.trust_inputs(session)

    def attempt() -> store.StoredPackage:
        report = validate_package(io.BytesIO(data), trusted=trusted)
        with db.write_session() as session:
            return store.store_package(
                session,
                data,
                report,
                organization_id=acme.id,
                source="upload",
                uploaded_by=None,
            )

    results: list[object] = []
    first = db.write_session()
    session = first.__enter__()
    report = validate_package(io.BytesIO(data), trusted=trusted)
    store.store_package(
        session, data, report, organization_id=acme.id, source="upload", uploaded_by=None
    )

    def second() -> None:
        try:
            results.append(attempt())
        except Exception as err:
            results.append(err)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)  # PostgreSQL: the second waits on the unique index; SQLite: on BEGIN
    first.__exit__(None, None, None)
    thread.join(20)
    assert len(results) == 1
    assert isinstance(results[0], store.StoredPackage), repr(results[0])
    assert results[0].created is False
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AgentPackage)) == 1


# --- listing filters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"q": "%"},
        {"q": "_"},
        {"q": "%hello%"},
        {"q": "' OR 1=1 --"},
        {"publisher": "%"},
        {"publisher": "_cme"},
        {"publisher": "acme' OR '1'='1"},
        {"capability": "%"},
        {"capability": "alerts:%"},
        {"q": "*"},
        {"q": "\\"},
    ],
)
def test_wildcards_and_quotes_in_filters_match_only_themselves(client, two_orgs, params):
    """SQL wildcards and quotes are plain text: no match, never everything, never a 500."""
    acme, _other, key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    assert upload(client, headers, signed_package(key)).status_code == 201
    answer = client.get(AGENTS, params=params)
    assert answer.status_code == 200, answer.text
    assert answer.json() == []
    assert client.get("/console/marketplace", params=params).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 201},
        {"publisher": "x" * 41},
        {"capability": "x" * 81},
        {"industry": "%"},
        {"industry": "x" * 5000},
    ],
)
def test_overlong_or_unknown_filters_are_422(client, two_orgs, params):
    """Too long or outside the vocabulary: 422 in the one shape (API and console)."""
    acme, _other, _key = two_orgs
    sign_in(client, acme.id, acme.members["Viewer"])
    answer = client.get(AGENTS, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["success"] is False
    assert client.get("/console/marketplace", params=params).status_code in (200, 422)


def test_an_overlong_agent_id_is_a_plain_404(client, two_orgs):
    """A 10,000-character id answers 404 without echoing it whole."""
    acme, _other, _key = two_orgs
    sign_in(client, acme.id, acme.members["Viewer"])
    answer = client.get(f"{AGENTS}/{'a' * 10_000}")
    assert answer.status_code == 404
    assert len(answer.text) < 1_000


# --- secrets --------------------------------------------------------------------------------


def test_no_secret_reaches_an_answer_or_a_log(client, two_orgs, capfd):
    """Session cookie, CSRF token, API token and private key: never in a response or the logs."""
    from cryptography.hazmat.primitives import serialization

    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    events: list[dict[str, object]] = []
    remove = add_alert_hook(events.append)
    try:
        headers = sign_in(client, acme.id, acme.members["Owner"])
        cookie = client.cookies.get("paulyops_session")
        answers = [
            upload(client, headers, signed_package(key)),
            upload(client, headers, signed_package(generate_key())),
            client.put(POLICY, json={"allowUnsigned": True}, headers=headers),
            upload(client, {}, signed_package(key, version="2.0.0")),
            client.get(f"{AGENTS}/acme.hello"),
            client.get(AGENTS),
        ]
        client.cookies.clear()
        api = _token(db, acme, "Owner", ["marketplace:read"])
        answers.append(client.get(AGENTS, headers=api))
        answers.append(client.get(AGENTS, headers={"Authorization": api["Authorization"] + "x"}))
    finally:
        remove()
    private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    secrets = [cookie, headers["X-CSRF-Token"], api["Authorization"].split()[1], private.hex()]
    secrets.append(pem.splitlines()[1])
    out, err = capfd.readouterr()
    shown = "\n".join([*(a.text for a in answers), *(repr(e) for e in events), out, err])
    assert events, "no security event was raised"
    for secret in secrets:
        assert secret
        assert secret not in shown


# --- more attempts --------------------------------------------------------------------------


def test_a_token_loses_manage_when_its_holder_is_demoted(client, two_orgs):
    """A token is capped by its holder's current role: a demoted Admin's CI token is 403."""
    from paulyops.core.db.models import Membership

    acme, _other, key = two_orgs
    db = client.app.state.instance.db
    client.cookies.clear()
    ci = _token(db, acme, "Admin", ["marketplace:read", "marketplace:manage"])
    assert upload(client, ci, signed_package(key)).status_code == 201
    with db.write_session() as session:
        member = session.scalars(
            select(Membership).where(
                Membership.organization_id == acme.id,
                Membership.user_id == acme.members["Admin"],
            )
        ).one()
        member.role_id = acme.roles["Viewer"]
    assert upload(client, ci, signed_package(key, version="1.0.1")).status_code == 403
    assert client.put(POLICY, json={"allowUnsigned": True}, headers=ci).status_code == 403
    assert stored_count(db) == 1


def test_dependencies_never_resolve_to_another_organizations_upload(client, two_orgs):
    """Org B's package needing acme.base (only org A has it) fails as missing."""
    acme, other, key = two_orgs
    first = sign_in(client, acme.id, acme.members["Owner"])
    base = signed_package(key, agent_id="acme.base")
    assert upload(client, first, base).status_code == 201
    second = sign_in(client, other.id, other.members["Owner"])
    needs = signed_package(key, agent_id="acme.user", agents={"acme.base": ">=1.0"})
    answer = upload(client, second, needs)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "dependencies.agents"
    assert "acme.base" in answer.text
    first = sign_in(client, acme.id, acme.members["Owner"])
    assert upload(client, first, needs).status_code == 201


def test_a_chunked_upload_is_read_and_capped_like_any_other(client, two_orgs):
    """No Content-Length (chunked): a small package is stored; the console path is capped."""
    acme, _other, key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    data = signed_package(key)
    boundary = "chunky"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pauly"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks(body: bytes):
        for start in range(0, len(body), 97):
            yield body[start : start + 97]

    answer = client.post(
        UPLOAD_PATH,
        content=chunks(head + data + tail),
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert answer.status_code == 201, answer.text

    def past_the_limit():
        yield head.replace(b'name="file"', b'name="csrf_token"')
        for _ in range(BODY_LIMITS[CONSOLE_UPLOAD] // (1024 * 1024) + 2):
            yield b"\0" * (1024 * 1024)

    huge = client.post(
        CONSOLE_UPLOAD,
        content=past_the_limit(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert huge.status_code == 413
    assert stored_count(client.app.state.instance.db) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"allowUnsigned": "yes please"},
        {"allowUnsigned": True, "organizationId": "org_other"},
        {"allow_unsigned": True, "extra": 1},
        {},
    ],
)
def test_policy_bodies_that_smuggle_fields_are_422(client, two_orgs, body):
    """Wrong types or extra fields (another organization's id): 422, the policy unchanged."""
    acme, other, _key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    assert client.put(POLICY, json=body, headers=headers).status_code == 422
    db = client.app.state.instance.db
    assert _policy_of(db, acme.id) is False
    assert _policy_of(db, other.id) is False


@pytest.mark.parametrize(
    "agent_id", ["..", "..%2F..%2Fplatform", "%00", "acme.hello%00", "ACME.HELLO", "acme.hello "]
)
def test_odd_agent_ids_in_the_path_find_nothing(client, two_orgs, agent_id):
    """Traversal, NUL and case or space variants of a stored id: 404, never another's."""
    acme, _other, key = two_orgs
    headers = sign_in(client, acme.id, acme.members["Owner"])
    assert upload(client, headers, signed_package(key)).status_code == 201
    answer = client.get(f"{AGENTS}/{agent_id}")
    assert answer.status_code == 404, answer.text


def test_markup_in_a_manifest_is_escaped_on_the_console(client, two_orgs):
    """A description holding a script tag is shown as text on the browse and detail pages."""
    acme, _other, _key = two_orgs
    headers = _allow_unsigned(client, acme)
    files = agent_files(agent_id="tinker.hello")
    files["manifest.toml"] = files["manifest.toml"].replace(
        b'description = "Counts words."', b'description = "<script>alert(1)</script>"'
    )
    answer = upload(client, headers, assemble(files))
    assert answer.status_code == 201, answer.text
    for path in ("/console/marketplace", "/console/marketplace/agents/tinker.hello"):
        page = client.get(path)
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;" in page.text
