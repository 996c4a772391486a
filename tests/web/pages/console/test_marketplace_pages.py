"""The marketplace console pages: browse, search, details in plain words, upload, policy."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from paulyops.core.db.models import AgentPackage
from paulyops.core.security.signatures import generate_key
from paulyops.services.marketplace.build import assemble
from tests.factories import make_org
from tests.services.marketplace.packages import agent_files, signed_package
from tests.web.api.test_marketplace_api import trust_key
from tests.web.pages.console.test_console_pages import _signed_in, _token

UPLOAD = "/console/marketplace/upload"


def _upload(client, data: bytes, token: str, name: str = "hello.pauly"):
    return client.post(
        UPLOAD,
        data={"csrf_token": token},
        files={"file": (name, data, "application/octet-stream")},
        follow_redirects=False,
    )


def test_an_admin_uploads_and_everyone_reads_the_details(client):
    """Upload through the form, then the details page shows capabilities in plain words."""
    db = client.app.state.instance.db
    org = make_org(db, "acme")
    key = generate_key()
    trust_key(db, key)
    _signed_in(client, "admin@acme.example.com")
    page = client.get(UPLOAD)
    assert page.status_code == 200
    stored = _upload(client, signed_package(key), _token(page))
    assert stored.status_code == 303, stored.text
    assert stored.headers["location"] == "/console/marketplace/agents/acme.hello"
    _signed_in(client, "viewer@acme.example.com")
    detail = client.get("/console/marketplace/agents/acme.hello")
    assert detail.status_code == 200
    assert "Raise alerts that people in the organization are told about." in detail.text
    assert "Uploaded by your organization" in detail.text
    listing = client.get("/console/marketplace", params={"q": "words"})
    assert 'href="/console/marketplace/agents/acme.hello"' in listing.text
    assert "Upload a package" not in listing.text  # a Viewer is not offered the upload
    assert client.get(UPLOAD).status_code == 403
    none = client.get("/console/marketplace", params={"q": "no-such-thing"})
    assert "No agent matches" in none.text
    bad = client.get("/console/marketplace", params={"industry": "space"})
    assert bad.status_code == 422
    make_org(db, "other")
    _signed_in(client, "owner@other.example.com")
    assert client.get("/console/marketplace/agents/acme.hello").status_code == 404
    assert org.id


def test_a_rejected_upload_lists_each_failed_check_and_stores_nothing(client):
    """An unsigned package is refused with the validator's message on the page (422)."""
    db = client.app.state.instance.db
    make_org(db, "acme")
    _signed_in(client, "owner@acme.example.com")
    token = _token(client.get(UPLOAD))
    refused = _upload(client, assemble(agent_files()), token)
    assert refused.status_code == 422
    assert "SIGNATURE is missing" in refused.text
    no_csrf = client.post(UPLOAD, files={"file": ("x.pauly", b"PK", "application/octet-stream")})
    assert no_csrf.status_code == 403
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AgentPackage)) == 0


def test_the_unsigned_mode_is_switched_on_the_upload_page(client):
    """Checking the box turns developer mode on; an unsigned upload then succeeds."""
    db = client.app.state.instance.db
    make_org(db, "acme")
    _signed_in(client, "owner@acme.example.com")
    token = _token(client.get(UPLOAD))
    on = client.post(
        "/console/marketplace/policy",
        data={"csrf_token": token, "allow_unsigned": "on"},
        follow_redirects=False,
    )
    assert on.status_code == 303
    page = client.get(UPLOAD)
    assert re.search(r'name="allow_unsigned" checked', page.text)
    assert _upload(client, assemble(agent_files()), _token(page)).status_code == 303
    detail = client.get("/console/marketplace/agents/acme.hello")
    assert "Unsigned (developer mode)" in detail.text


def test_the_pages_need_nothing_the_content_security_policy_forbids(client):
    """No inline style or script on any marketplace page (the browser test bypasses CSP)."""
    db = client.app.state.instance.db
    make_org(db, "acme")
    key = generate_key()
    trust_key(db, key)
    _signed_in(client, "owner@acme.example.com")
    assert _upload(client, signed_package(key), _token(client.get(UPLOAD))).status_code == 303
    for path in (
        "/console/marketplace",
        "/console/marketplace?q=hello",
        "/console/marketplace/agents/acme.hello",
        UPLOAD,
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "style=" not in page.text, path
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert re.search(r"\son[a-z]+=", page.text) is None, path
