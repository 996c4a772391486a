"""The console pages: sign-in, RBAC on every page and action, CSRF, one-time secrets, audit."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from sqlalchemy import select

from paulyops.core.db.models import AuditLog, Role, SecurityConfig, StorageConfig, User
from paulyops.core.db.scoped import OrgScope
from paulyops.services.auth import rbac
from paulyops.services.security_settings import UpdateSecurity
from paulyops.services.storage.connections import BACKUP_LABELS, AddStorage
from paulyops.web.pages import console
from tests.factories import PASSWORD, make_org
from tests.support.moto import DUMMY_KEY_ID, DUMMY_SECRET, create_bucket, running_moto
from tests.support.server import free_port

PAGES = [
    "/console",
    "/console/members",
    "/console/roles",
    "/console/security",
    "/console/storage",
    "/console/audit",
    "/console/invitations",
]
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web(client):
    """The app's client, with the console router included if the app does not yet."""
    paths = {getattr(route, "path", None) for route in client.app.routes}
    if "/console" not in paths:
        client.app.include_router(console.router)
    return client


def _token(page) -> str:
    match = TOKEN.search(page.text)
    assert match, f"no CSRF token on the page: {page.text[:300]}"
    return match.group(1)


def _sign_in(client, email, password=PASSWORD, next_url=""):
    client.cookies.clear()
    token = _token(client.get("/sign-in"))
    return client.post(
        "/sign-in",
        data={"email": email, "password": password, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )


def _signed_in(client, email):
    response = _sign_in(client, email)
    assert response.status_code == 303, response.text
    return client


def _db(client):
    return client.app.state.instance.db


def test_each_page_renders_for_an_owner(web):
    """Every console page answers 200 with HTML for an Owner."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    for path in PAGES:
        page = web.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert page.headers["content-type"].startswith("text/html")
        assert 'aria-current="page"' in page.text


def test_pages_have_no_inline_script_or_style(web):
    """No page carries an inline script or a style attribute (the CSP forbids both)."""
    org = make_org(_db(web), "acme", model="enterprise")
    _signed_in(web, org.emails["Owner"])
    for path in [*PAGES, "/sign-in"]:
        html = web.get(path).text
        assert " style=" not in html, path
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, path
        assert "<style" not in html, path


def test_sign_in_redirects_only_to_local_paths(web):
    """A ``next`` pointing at another site is ignored; a local path is followed."""
    org = make_org(_db(web), "acme")
    offsite = _sign_in(web, org.emails["Owner"], next_url="//evil.example.com/x")
    assert offsite.headers["location"] == "/console"
    local = _sign_in(web, org.emails["Owner"], next_url="/console/audit")
    assert local.headers["location"] == "/console/audit"


def test_wrong_password_shows_the_form_again(web):
    """A wrong password re-renders the form with one generic, field-linked error."""
    org = make_org(_db(web), "acme")
    response = _sign_in(web, org.emails["Owner"], password="not-the-password-at-all")
    assert response.status_code == 401
    assert 'aria-describedby="sign-in-error"' in response.text
    assert "not correct" in response.text


def test_signed_out_visitor_is_sent_to_sign_in(web):
    """A console page without a session redirects to the sign-in page with ``next``."""
    web.cookies.clear()
    response = web.get("/console/members", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/console/members"


def test_viewer_sees_no_admin_actions_and_cannot_forge_them(web):
    """A Viewer gets no Remove button or invite form, and a forged removal is refused (403)."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Viewer"])
    page = web.get("/console/members")
    assert page.status_code == 200
    assert "Remove" not in page.text
    assert "/console/members/invite" not in page.text
    assert "Change role" not in page.text
    forged = web.post(
        f"/console/members/{org.memberships['target']}/remove",
        data={"csrf_token": _token(page)},
    )
    assert forged.status_code == 403
    assert forged.headers["content-type"].startswith("text/html")
    assert web.get("/console/audit").status_code == 403


def test_post_without_csrf_token_is_refused(web):
    """An Owner's POST without the form's CSRF token is refused with 403."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    response = web.post(f"/console/members/{org.memberships['target']}/remove", data={})
    assert response.status_code == 403
    members = web.get("/console/members").text
    assert "Target" in members


def test_owner_removes_and_changes_members(web):
    """An Owner changes a member's role, then removes them; each result is flashed."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/members"))
    target = org.memberships["target"]
    changed = web.post(
        f"/console/members/{target}/role", data={"csrf_token": token, "role_id": org.roles["User"]}
    )
    assert changed.status_code == 200
    assert "Role changed." in changed.text
    removed = web.post(f"/console/members/{target}/remove", data={"csrf_token": token})
    assert "Member removed." in removed.text
    assert "target@acme.example.com" not in removed.text


def test_unknown_page_renders_the_html_error_page(web):
    """An unknown address renders the 404 page in the product's style."""
    response = web.get("/console/no-such-page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text


def test_invite_link_creates_the_account_then_signs_in(web):
    """Invite by link (shown once); a new address chooses a password through it; it then dies."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/members"))
    invited = web.post(
        "/console/members/invite",
        data={
            "csrf_token": token,
            "email": "new.person@acme.example.com",
            "name": "New Person",
            "role_id": org.roles["User"],
        },
    )
    assert invited.status_code == 200, invited.text
    link = re.search(r"https?://[^<\s\"]+/invitation\?token=[^<\s\"]+", invited.text)
    assert link, invited.text
    members = web.get("/console/members").text
    assert members.count("/invitation?token=") == 0
    assert "new.person@acme.example.com" in members  # listed as pending
    path = urlsplit(link.group(0))
    web.cookies.clear()
    form = web.get(f"{path.path}?{path.query}")
    assert form.status_code == 200
    assert "Create account and join" in form.text
    new_password = "a-long-and-unusual-passphrase-91"
    done = web.post(
        "/invitation",
        data={
            "csrf_token": _token(form),
            "token": parse_qs(path.query)["token"][0],
            "name": "New Person",
            "password": new_password,
            "confirm": new_password,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/sign-in"
    signed_in = _sign_in(web, "new.person@acme.example.com", new_password)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/console"
    assert "<h1>Acme</h1>" in web.get("/console").text
    web.cookies.clear()
    assert web.get(f"{path.path}?{path.query}").status_code == 403


def test_invitation_password_errors_are_tied_to_their_field(web):
    """Two different passwords re-render the form with the error linked to its input."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    invited = web.post(
        "/console/members/invite",
        data={
            "csrf_token": _token(web.get("/console/members")),
            "email": "second@acme.example.com",
            "name": "Second",
            "role_id": org.roles["Viewer"],
        },
    )
    query = re.search(r"/invitation\?(token=[^<\s\"]+)", invited.text).group(1)
    web.cookies.clear()
    form = web.get(f"/invitation?{query}")
    response = web.post(
        "/invitation",
        data={
            "csrf_token": _token(form),
            "token": parse_qs(query)["token"][0],
            "name": "Second",
            "password": "a-long-and-unusual-passphrase-91",
            "confirm": "something-else-entirely-42",
        },
    )
    assert response.status_code == 422
    assert 'aria-describedby="f-confirm-error"' in response.text
    assert 'aria-invalid="true"' in response.text
    # A refused attempt does not burn the link.
    assert web.get(f"/invitation?{query}").status_code == 200


def test_invite_form_errors_are_tied_to_their_field(web):
    """A bad e-mail address re-renders the invite form with the error on that input."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    response = web.post(
        "/console/members/invite",
        data={
            "csrf_token": _token(web.get("/console/members")),
            "email": "not-an-address",
            "name": "X",
            "role_id": org.roles["Viewer"],
        },
    )
    assert response.status_code == 422
    assert 'aria-describedby="f-email-error"' in response.text


def test_audit_verify_shows_verified(web):
    """The verify button reports the organization's chain as verified."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/members"))
    web.post(f"/console/members/{org.memberships['target']}/remove", data={"csrf_token": token})
    response = web.post("/console/audit/verify", data={"csrf_token": token})
    assert response.status_code == 200
    assert "verified" in response.text
    assert "member.removed" in response.text


def test_audit_filters_and_paging(web):
    """Filtering by action narrows the rows; a bad date is reported on its field."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/members"))
    web.post(f"/console/members/{org.memberships['target']}/remove", data={"csrf_token": token})
    only = web.get("/console/audit", params={"action": "member."})
    assert "member.removed" in only.text
    none = web.get("/console/audit", params={"action": "storage."})
    assert "No events match." in none.text
    bad = web.get("/console/audit", params={"from": "yesterday"})
    assert bad.status_code == 422
    assert 'aria-describedby="f-from-error"' in bad.text


def test_export_csv_has_a_header_row(web):
    """The CSV export starts with the column header and holds the organization's rows."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/members"))
    web.post(f"/console/members/{org.memberships['target']}/remove", data={"csrf_token": token})
    response = web.get("/console/audit/export", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0].startswith("id,chain,seq,created_at")
    assert any("member.removed" in line for line in lines[1:])
    jsonl = web.get("/console/audit/export", params={"format": "jsonl"})
    assert '"action":"member.removed"' in jsonl.text


def test_home_page_draws_charts_as_svg(web):
    """The home page shows the health bars and the 30-day activity chart as inline SVG."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    page = web.get("/console")
    assert page.text.count("<svg") >= 3
    assert "Activity, last 30 days" in page.text
    assert "database" in page.text


def test_home_shows_platform_admins_the_production_checklist_with_fixes(web):
    """Platform administrators see doctor's checklist with each fix; others never do."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    assert "Production checklist" not in web.get("/console").text
    with _db(web).write_session() as session:
        session.get(User, org.members["Owner"]).is_platform_admin = True
    page = web.get("/console")
    assert "Production checklist" in page.text
    assert "paulyops doctor" in page.text
    assert "rate limiting" in page.text
    assert "fix every failure" in page.text


def test_second_factor_enrollment_then_sign_in_with_code(web):
    """Enroll TOTP on the security page (recovery codes shown once), then sign in with a code."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Admin"])
    token = _token(web.get("/console/security"))
    started = web.post("/console/security/totp/start", data={"csrf_token": token})
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', started.text).group(1)
    wrong = web.post("/console/security/totp/confirm", data={"csrf_token": token, "code": "000000"})
    assert wrong.status_code == 422
    assert 'aria-describedby="f-code-error"' in wrong.text
    confirmed = web.post(
        "/console/security/totp/confirm",
        data={"csrf_token": token, "code": pyotp.TOTP(secret).now()},
    )
    assert "recovery codes are shown" in confirmed.text
    first = _sign_in(web, org.emails["Admin"])
    assert first.headers["location"].startswith("/sign-in/code")
    code_page = web.get(first.headers["location"])
    done = web.post(
        "/sign-in/code",
        # The enrollment code is spent (codes work once): use the next 30-second step's.
        data={
            "csrf_token": _token(code_page),
            "code": pyotp.TOTP(secret).at(time.time() + 30),
            "next": "",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console"
    assert web.get("/console").status_code == 200


def test_security_settings_and_api_token_shown_once(web):
    """An Owner saves session timeouts and creates an API token whose secret appears once."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/security"))
    saved = web.post(
        "/console/security/settings",
        data={"csrf_token": token, "idle_minutes": "30", "absolute_hours": "8"},
    )
    assert "Security settings saved." in saved.text
    with _db(web).session() as session:
        config = session.scalars(select(SecurityConfig)).first()
        assert (config.session_idle_minutes, config.session_absolute_hours) == (30, 8)
    bad = web.post(
        "/console/security/settings",
        data={"csrf_token": token, "idle_minutes": "1", "absolute_hours": "8"},
    )
    assert bad.status_code == 422
    assert 'aria-describedby="f-idle-minutes-hint f-idle-minutes-error"' in bad.text
    created = web.post(
        "/console/security/tokens",
        data={"csrf_token": token, "name": "ci", "permissions": ["org:read", "audit:read"]},
    )
    secret = re.search(r"pot_[A-Za-z0-9_\-]+", created.text).group(0)
    assert secret not in web.get("/console/security").text
    response = web.get("/api/organization", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


def test_storage_credentials_are_never_shown_and_tests_are_honest(web, tmp_path):
    """Credentials go in encrypted and are never echoed; untestable providers say so."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/storage"))
    added = web.post(
        "/console/storage",
        data={
            "csrf_token": token,
            "provider": "s3",
            "name": "archive",
            "bucket": "acme-archive",
            # Nothing listens there: the test must fail fast, never reach out to AWS.
            "endpoint": f"http://127.0.0.1:{free_port()}",
            "access_key_id": "AKIAEXAMPLEKEY",
            "secret_access_key": "very-secret-value",
        },
    )
    assert "added" in added.text
    assert "very-secret-value" not in added.text
    assert "AKIAEXAMPLEKEY" not in added.text
    refused = web.post(
        "/console/storage",
        data={"csrf_token": token, "provider": "local", "name": "etc", "path": "/etc"},
    )
    assert refused.status_code == 422
    assert "only platform administrators" in refused.text
    web.post(
        "/console/storage",
        data={"csrf_token": token, "provider": "local", "name": "files", "path": "docs"},
    )
    with _db(web).session() as session:
        rows = {row.name: row for row in session.scalars(select(StorageConfig))}
        assert "very-secret-value" not in str(rows["archive"].settings)
        assert b"very-secret-value" not in rows["archive"].credentials
        changes = session.scalars(select(AuditLog.changes)).all()
    assert "very-secret-value" not in str(changes)
    s3 = web.post(f"/console/storage/{rows['archive'].id}/test", data={"csrf_token": token})
    # Loopback endpoints are refused unless the operator allows private endpoints (SSRF).
    assert "private, loopback or other non-public address" in s3.text
    assert "very-secret-value" not in s3.text
    assert "AKIAEXAMPLEKEY" not in s3.text
    local = web.post(f"/console/storage/{rows['files'].id}/test", data={"csrf_token": token})
    assert "Connection works" in local.text
    web.post(
        "/console/storage",
        data={
            "csrf_token": token,
            "provider": "google-drive",
            "name": "drive",
            "client_id": "acme-client",
            "client_secret": "drive-secret-value",
        },
    )
    with _db(web).session() as session:
        drive = session.scalars(select(StorageConfig).where(StorageConfig.name == "drive")).one()
    untested = web.post(f"/console/storage/{drive.id}/test", data={"csrf_token": token})
    assert "Not tested: credentials present, connection test for google-drive" in untested.text
    assert "OAuth authorization flow" in untested.text
    bad = web.post(
        "/console/storage",
        data={"csrf_token": token, "provider": "s3", "name": "Bad Name", "bucket": "x"},
    )
    assert bad.status_code == 422
    assert 'aria-describedby="f-name-hint f-name-error"' in bad.text


def test_storage_and_security_forms_show_the_commands_bounds_and_choices(web):
    """Bounds, backup choices and their labels come from the commands, not the templates."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    storage = web.get("/console/storage").text
    retention = AddStorage.model_json_schema()["properties"]["retentionDays"]
    assert f'min="{retention["minimum"]}" max="{retention["maximum"]}"' in storage
    for value, label in BACKUP_LABELS.items():
        assert f'<option value="{value}"' in storage
        assert label in storage
    security = web.get("/console/security").text
    props = UpdateSecurity.model_json_schema()["properties"]
    for field in ("idleMinutes", "absoluteHours"):
        low, high = props[field]["minimum"], props[field]["maximum"]
        assert f'min="{low}" max="{high}"' in security
        assert f"{low} to {high}." in security


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A moto S3 endpoint holding the bucket ``acme-archive``."""
    with running_moto(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        create_bucket(endpoint, "acme-archive")
        yield endpoint


@pytest.mark.slow
def test_s3_connection_to_a_bucket_tests_as_connected(web, moto):
    """An S3 connection pointed at moto tests as connected, with one audit row, no secrets."""
    instance = web.app.state.instance
    instance.settings = instance.settings.model_copy(update={"storage_private_endpoints": True})
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/storage"))
    web.post(
        "/console/storage",
        data={
            "csrf_token": token,
            "provider": "s3",
            "name": "archive",
            "bucket": "acme-archive",
            "region": "us-east-1",
            "endpoint": moto,
            "access_key_id": DUMMY_KEY_ID,
            "secret_access_key": DUMMY_SECRET,
        },
    )
    with _db(web).session() as session:
        row = session.scalars(select(StorageConfig)).one()
    tested = web.post(f"/console/storage/{row.id}/test", data={"csrf_token": token})
    assert "Connection works: the bucket &#39;acme-archive&#39;" in tested.text
    assert DUMMY_SECRET not in tested.text
    assert DUMMY_KEY_ID not in tested.text
    with _db(web).session() as session:
        row = session.get(StorageConfig, row.id)
        assert row.status == "connected"
        assert row.last_tested_at is not None
        audits = session.scalars(select(AuditLog).where(AuditLog.action == "storage.tested")).all()
    assert [(a.outcome, a.changes["status"]) for a in audits] == [("success", "connected")]
    assert DUMMY_SECRET not in str(audits[0].changes)
    page = web.get("/console/storage")
    assert '<span class="badge badge-ok">connected</span>' in page.text


def test_custom_roles_and_delegations_in_the_enterprise_model(web):
    """An Owner creates a custom role and a delegation; a Viewer sees neither form."""
    org = make_org(_db(web), "acme", model="enterprise")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/roles"))
    created = web.post(
        "/console/roles",
        data={
            "csrf_token": token,
            "name": "Auditor",
            "permissions": ["audit:read"],
            "parent_id": org.roles["Manager"],
        },
    )
    assert "Role &#39;Auditor&#39; created." in created.text
    until = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    delegated = web.post(
        "/console/delegations",
        data={
            "csrf_token": token,
            "to_user_id": org.members["User"],
            "permissions": ["audit:read"],
            "expires": until,
        },
    )
    assert "Delegation created." in delegated.text
    _signed_in(web, org.emails["Viewer"])
    page = web.get("/console/roles")
    assert page.status_code == 200
    assert 'action="/console/roles"' not in page.text
    assert 'action="/console/delegations"' not in page.text


class _Controls(HTMLParser):
    """Collects form controls and how each is labelled."""

    def __init__(self) -> None:
        super().__init__()
        self.label_for: set[str] = set()
        self.ids: list[str] = []
        self.depth = 0
        self.unlabelled: list[str] = []
        self.pending: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(values["id"])
        if tag == "label":
            self.depth += 1
            if values.get("for"):
                self.label_for.add(values["for"])
        if tag in {"input", "select", "textarea"}:
            hidden = values.get("type") == "hidden" or "hidden" in values
            if not hidden and not self.depth and not values.get("aria-label"):
                self.pending.append((values.get("name") or "?", values.get("id")))

    def handle_endtag(self, tag):
        if tag == "label":
            self.depth -= 1

    def problems(self) -> list[str]:
        """Controls without a label, and ids used twice."""
        out = [name for name, fid in self.pending if fid is None or fid not in self.label_for]
        out += [f"duplicate id {i}" for i in {i for i in self.ids if self.ids.count(i) > 1}]
        return out


def test_every_input_is_labelled(web):
    """On every page each visible control has a label, and no id is used twice."""
    org = make_org(_db(web), "acme", model="enterprise")
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/security"))
    enrolling = web.post("/console/security/totp/start", data={"csrf_token": token})
    pages = {path: web.get(path).text for path in PAGES}
    pages["totp"] = enrolling.text
    web.cookies.clear()
    pages["/sign-in"] = web.get("/sign-in").text
    for path, html in pages.items():
        parser = _Controls()
        parser.feed(html)
        assert parser.problems() == [], path


def test_admin_without_required_second_factor_is_sent_to_set_it_up(web):
    """When the organization requires a second factor, an admin without one lands on Security."""
    org = make_org(_db(web), "acme")
    with _db(web).write_session() as session:
        session.scalars(select(SecurityConfig)).one().require_admin_2fa = True
    response = _sign_in(web, org.emails["Admin"])
    assert response.headers["location"] == "/console/security"
    page = web.get("/console/security")
    assert page.status_code == 200
    assert "requires a second factor for members with admin permissions" in page.text
    assert 'href="/console/members"' not in page.text
    assert web.get("/console").status_code == 403


# --- account, role, storage and organization actions ----------------------------------------

NEW_PASSWORD = "an-unusual-and-long-passphrase-77"


def _audits(client, action):
    with _db(client).session() as session:
        return session.scalars(select(AuditLog).where(AuditLog.action == action)).all()


def _enroll_totp(client) -> str:
    token = _token(client.get("/console/security"))
    started = client.post("/console/security/totp/start", data={"csrf_token": token})
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', started.text).group(1)
    confirmed = client.post(
        "/console/security/totp/confirm",
        data={"csrf_token": token, "code": pyotp.TOTP(secret).now()},
    )
    assert "recovery codes are shown" in confirmed.text
    return secret


def test_change_password_rotates_the_session(web):
    """Changing the password re-checks the old one, rotates the cookie and writes one audit row."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Viewer"])
    page = web.get("/console/security")
    assert 'action="/console/security/password"' in page.text
    token = _token(page)
    form = {"csrf_token": token, "current_password": PASSWORD}
    wrong = web.post(
        "/console/security/password",
        data={**form, "current_password": "not-it", "new_password": NEW_PASSWORD}
        | {"confirm_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 422
    assert 'aria-describedby="f-current-password-error"' in wrong.text
    weak = web.post(
        "/console/security/password",
        data={**form, "new_password": "short", "confirm_password": "short"},
    )
    assert weak.status_code == 422
    assert 'aria-describedby="f-new-password-hint f-new-password-error"' in weak.text
    assert "expected at least 12 characters" in weak.text
    differ = web.post(
        "/console/security/password",
        data={**form, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD + "x"},
    )
    assert differ.status_code == 422
    assert 'aria-describedby="f-confirm-password-error"' in differ.text
    assert _audits(web, "auth.password_changed") == []
    old_cookie = web.cookies.get("paulyops_session")
    done = web.post(
        "/console/security/password",
        data={**form, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/security"
    new_cookie = web.cookies.get("paulyops_session")
    assert new_cookie
    assert new_cookie != old_cookie
    after = web.get("/console/security")
    assert after.status_code == 200
    assert "Your password is changed." in after.text
    assert len(_audits(web, "auth.password_changed")) == 1
    web.cookies.clear()
    web.cookies.set("paulyops_session", old_cookie)
    assert web.get("/console/security", follow_redirects=False).status_code == 303
    assert _sign_in(web, org.emails["Viewer"]).status_code == 401
    assert _sign_in(web, org.emails["Viewer"], NEW_PASSWORD).status_code == 303


def test_change_password_needs_the_csrf_token(web):
    """A password change without the form's CSRF token is refused and changes nothing."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Owner"])
    refused = web.post(
        "/console/security/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert refused.status_code == 403
    assert _audits(web, "auth.password_changed") == []
    assert _sign_in(web, org.emails["Owner"]).status_code == 303


def test_turn_off_second_factor_with_the_password(web):
    """A member turns their second factor off by re-entering the password (one audit row)."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["User"])
    _enroll_totp(web)
    page = web.get("/console/security")
    assert 'action="/console/security/totp/disable"' in page.text
    token = _token(page)
    unguarded = web.post("/console/security/totp/disable", data={"password": PASSWORD})
    assert unguarded.status_code == 403
    wrong = web.post(
        "/console/security/totp/disable", data={"csrf_token": token, "password": "nope"}
    )
    assert wrong.status_code == 422
    assert 'aria-describedby="f-totp-password-hint f-totp-password-error"' in wrong.text
    assert _audits(web, "auth.totp_disabled") == []
    done = web.post(
        "/console/security/totp/disable", data={"csrf_token": token, "password": PASSWORD}
    )
    assert done.status_code == 200
    assert "Your second factor is off" in done.text
    assert 'action="/console/security/totp/start"' in done.text
    [row] = _audits(web, "auth.totp_disabled")
    assert row.target_id == org.members["User"]
    first = _sign_in(web, org.emails["User"])
    assert first.headers["location"] == "/console"


def test_required_second_factor_cannot_be_turned_off_by_an_admin(web):
    """Where admins must use a second factor, an Admin sees why it stays on; forging is refused."""
    org = make_org(_db(web), "acme")
    _signed_in(web, org.emails["Admin"])
    _enroll_totp(web)
    with _db(web).write_session() as session:
        session.scalars(select(SecurityConfig)).one().require_admin_2fa = True
    page = web.get("/console/security")
    assert 'action="/console/security/totp/disable"' not in page.text
    assert "requires a second factor for members with admin permissions" in page.text
    forged = web.post(
        "/console/security/totp/disable",
        data={"csrf_token": _token(page), "password": PASSWORD},
    )
    assert forged.status_code == 403
    assert "Acme requires a second factor for members with admin permissions" in forged.text
    assert _audits(web, "auth.totp_disabled") == []
    assert _sign_in(web, org.emails["Admin"]).headers["location"].startswith("/sign-in/code")


def _custom_role(client, org, name="Auditor", permissions=("audit:read",)):
    token = _token(client.get("/console/roles"))
    created = client.post(
        "/console/roles",
        data={"csrf_token": token, "name": name, "permissions": list(permissions)},
    )
    assert "created." in created.text, created.text
    with _db(client).session() as session:
        return session.scalars(
            select(Role).where(Role.organization_id == org.id, Role.name == name)
        ).one()


def test_owner_edits_a_custom_roles_permissions(web):
    """A custom role is edited from a pre-checked list (one audit row); built-in roles are not."""
    org = make_org(_db(web), "acme", model="granular")
    _signed_in(web, org.emails["Owner"])
    role = _custom_role(web, org)
    page = web.get("/console/roles")
    action = f'action="/console/roles/{role.id}/permissions"'
    assert action in page.text
    editor = page.text.split(action, 1)[1].split("</form>", 1)[0]
    assert 'value="audit:read" checked' in editor
    assert 'value="members:read">' in editor
    for builtin in org.roles.values():
        assert f"/console/roles/{builtin}/permissions" not in page.text
    token = _token(page)
    path = f"/console/roles/{role.id}/permissions"
    assert web.post(path, data={"permissions": ["org:read"]}).status_code == 403
    bad = web.post(path, data={"csrf_token": token, "permissions": ["no:such"]})
    assert bad.status_code == 422
    assert f'aria-describedby="f-perm-{role.id.replace("_", "-")}-error"' in bad.text
    saved = web.post(
        path, data={"csrf_token": token, "permissions": ["audit:read", "members:read"]}
    )
    assert "Permissions of &#39;Auditor&#39; saved." in saved.text
    with _db(web).session() as session:
        assert sorted(session.get(Role, role.id).permissions) == ["audit:read", "members:read"]
    [row] = _audits(web, "role.updated")
    assert row.target_id == role.id
    assert row.changes["permissions"]["to"] == ["audit:read", "members:read"]
    builtin = web.post(
        f"/console/roles/{org.roles['Viewer']}/permissions",
        data={"csrf_token": token, "permissions": ["org:read"]},
    )
    assert "cannot be changed" in builtin.text
    assert len(_audits(web, "role.updated")) == 1


def test_viewer_cannot_edit_roles_and_other_orgs_roles_are_not_found(web):
    """A Viewer gets no role editor and a forged edit is 403; another org's role id is 404."""
    org = make_org(_db(web), "acme", model="granular")
    other = make_org(_db(web), "beta", model="granular")
    _signed_in(web, other.emails["Owner"])
    foreign = _custom_role(web, other, name="Foreign")
    _signed_in(web, org.emails["Owner"])
    own = _custom_role(web, org)
    token = _token(web.get("/console/roles"))
    cross = web.post(
        f"/console/roles/{foreign.id}/permissions",
        data={"csrf_token": token, "permissions": ["org:read"]},
    )
    assert cross.status_code == 404
    _signed_in(web, org.emails["Viewer"])
    page = web.get("/console/roles")
    assert "/permissions" not in page.text
    forged = web.post(
        f"/console/roles/{own.id}/permissions",
        data={"csrf_token": _token(page), "permissions": ["org:read"]},
    )
    assert forged.status_code == 403
    with _db(web).session() as session:
        assert session.get(Role, own.id).permissions == ["audit:read"]
        assert session.get(Role, foreign.id).permissions == ["audit:read"]
    assert _audits(web, "role.updated") == []


def _storage_row(client, org_id, name="files"):
    with _db(client).write_session() as session:
        row = OrgScope(session, org_id).add(
            StorageConfig(
                name=name,
                provider="local",
                settings={},
                backup_strategy="local",
                retention_days=365,
                status="configured",
            )
        )
        session.flush()
        return row.id


def test_owner_removes_a_storage_connection_after_confirming(web):
    """Removing a connection asks first (nothing changes), then removes it with one audit row."""
    org = make_org(_db(web), "acme")
    storage_id = _storage_row(web, org.id)
    _signed_in(web, org.emails["Owner"])
    page = web.get("/console/storage")
    assert f'action="/console/storage/{storage_id}/remove"' in page.text
    token = _token(page)
    ask = f"/console/storage/{storage_id}/remove"
    assert web.post(ask, data={}).status_code == 403
    confirm = web.post(ask, data={"csrf_token": token})
    assert confirm.status_code == 200
    assert "Remove files?" in confirm.text
    assert f'action="/console/storage/{storage_id}/remove/confirm"' in confirm.text
    assert _token(confirm) == token
    with _db(web).session() as session:
        assert session.get(StorageConfig, storage_id) is not None
    assert _audits(web, "storage.removed") == []
    assert web.post(ask + "/confirm", data={}).status_code == 403
    removed = web.post(ask + "/confirm", data={"csrf_token": token})
    assert removed.status_code == 200
    assert "Storage connection &#39;files&#39; removed" in removed.text
    with _db(web).session() as session:
        assert session.get(StorageConfig, storage_id) is None
    [row] = _audits(web, "storage.removed")
    assert (row.target_id, row.changes) == (storage_id, {"name": "files", "provider": "local"})
    assert web.post(ask + "/confirm", data={"csrf_token": token}).status_code == 404


def test_viewer_cannot_remove_storage_and_other_orgs_storage_is_not_found(web):
    """A Viewer sees no Remove button and is refused (403); another org's connection is 404."""
    org = make_org(_db(web), "acme")
    other = make_org(_db(web), "beta")
    own_id = _storage_row(web, org.id)
    foreign_id = _storage_row(web, other.id)
    _signed_in(web, org.emails["Owner"])
    token = _token(web.get("/console/storage"))
    for suffix in ("", "/confirm"):
        path = f"/console/storage/{foreign_id}/remove{suffix}"
        assert web.post(path, data={"csrf_token": token}).status_code == 404
    _signed_in(web, org.emails["Viewer"])
    page = web.get("/console/storage")
    assert "/remove" not in page.text
    for suffix in ("", "/confirm"):
        path = f"/console/storage/{own_id}/remove{suffix}"
        assert web.post(path, data={"csrf_token": _token(page)}).status_code == 403
    with _db(web).session() as session:
        assert session.get(StorageConfig, own_id) is not None
        assert session.get(StorageConfig, foreign_id) is not None
    assert _audits(web, "storage.removed") == []


def test_switch_organization_from_the_nav(web):
    """A member of two organizations switches from the nav; the session rotates; one audit row."""
    acme = make_org(_db(web), "acme")
    beta = make_org(_db(web), "beta")
    with _db(web).write_session() as session:
        rbac.add_member(OrgScope(session, beta.id), acme.members["Owner"], beta.roles["Viewer"])
    _signed_in(web, acme.emails["Viewer"])
    assert "/console/switch-org" not in web.get("/console").text
    _signed_in(web, acme.emails["Owner"])
    home = web.get("/console")
    assert 'action="/console/switch-org"' in home.text
    assert f'<option value="{beta.id}">Beta</option>' in home.text
    token = _token(home)
    assert web.post("/console/switch-org", data={"organization_id": beta.id}).status_code == 403
    old_cookie = web.cookies.get("paulyops_session")
    switched = web.post(
        "/console/switch-org",
        data={"csrf_token": token, "organization_id": beta.id},
        follow_redirects=False,
    )
    assert switched.status_code == 303
    assert switched.headers["location"] == "/console"
    assert web.cookies.get("paulyops_session") != old_cookie
    now = web.get("/console")
    assert "<h1>Beta</h1>" in now.text
    assert "You are now working in Beta." in now.text
    [row] = _audits(web, "auth.organization_switched")
    assert row.chain == beta.id
    # A Viewer in Beta: the Owner's rights in Acme do not travel along.
    assert (
        web.post(
            f"/console/members/{beta.memberships['target']}/remove",
            data={"csrf_token": _token(now)},
        ).status_code
        == 403
    )


def test_switching_to_an_organization_you_do_not_belong_to_is_refused(web):
    """The service refuses an organization the user is not a member of (404); nothing changes."""
    acme = make_org(_db(web), "acme")
    beta = make_org(_db(web), "beta")
    gamma = make_org(_db(web), "gamma")
    with _db(web).write_session() as session:
        rbac.add_member(OrgScope(session, beta.id), acme.members["Owner"], beta.roles["Viewer"])
    _signed_in(web, acme.emails["Owner"])
    home = web.get("/console")
    assert gamma.id not in home.text
    refused = web.post(
        "/console/switch-org", data={"csrf_token": _token(home), "organization_id": gamma.id}
    )
    assert refused.status_code == 404
    assert "<h1>Acme</h1>" in web.get("/console").text
    assert _audits(web, "auth.organization_switched") == []
