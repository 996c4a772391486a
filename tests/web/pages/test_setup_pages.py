"""The first-run wizard pages, driven through plain form posts (no JavaScript)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import Organization, User, WizardDraft
from paulyops.services.actor import SYSTEM
from paulyops.services.onboarding.firstrun import ensure_setup_token

PASSWORD = "a-long-and-unusual-passphrase-91"


def _token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the form"
    return match.group(1)


@pytest.fixture
def setup_token(client):
    instance = client.app.state.instance
    return ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)


def _unlock(client, setup_token):
    page = client.get("/setup")
    assert page.status_code == 200
    return client.post(
        "/setup",
        data={"token": setup_token, "csrf_token": _token(page.text)},
        follow_redirects=False,
    )


def _post_step(client, path, data):
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={**data, "csrf_token": _token(page.text)}, follow_redirects=False)


def test_home_sends_a_fresh_instance_to_the_unlock_page(client):
    """Without an organization, / redirects to the unlock page."""
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/setup"


def test_wrong_setup_token_is_refused_on_the_page(client, setup_token):
    """A wrong token re-renders the unlock page with the error next to the field."""
    page = client.get("/setup")
    response = client.post("/setup", data={"token": "pos_wrong", "csrf_token": _token(page.text)})
    assert response.status_code == 403
    assert 'aria-invalid="true"' in response.text
    assert "setup token" in response.text


def test_unlock_without_csrf_token_is_refused(client, setup_token):
    """The unlock form without its pre-session CSRF token is refused (403)."""
    client.get("/setup")
    response = client.post("/setup", data={"token": setup_token})
    assert response.status_code == 403


def test_step_pages_need_the_setup_session(client, setup_token):
    """Wizard steps without a setup session answer 403 with the error page."""
    response = client.get("/setup/organization")
    assert response.status_code == 403
    assert "setup token" in response.text


def test_whole_wizard_creates_the_organization_and_signs_the_owner_in(client, setup_token):
    """Unlock, owner, four steps and review create the org; the owner lands signed in."""
    assert _unlock(client, setup_token).headers["location"] == "/setup/owner"
    owner = _post_step(
        client,
        "/setup/owner",
        {
            "owner.name": "Pat Owner",
            "owner.email": "pat@acme.example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )
    assert owner.headers["location"] == "/setup/organization"
    org = _post_step(
        client,
        "/setup/organization",
        {"organization.name": "Acme Corp", "organization.industry": "healthcare", "action": "next"},
    )
    assert org.headers["location"] == "/setup/storage"
    storage_page = client.get("/setup/storage")
    assert "from healthcare template" in storage_page.text
    assert (
        _post_step(
            client, "/setup/storage", {"storage.providers": "local", "action": "next"}
        ).status_code
        == 303
    )
    security = client.get("/setup/security")
    assert "Required by the enterprise preset" in security.text
    secure = {
        "security.rbacModel": "enterprise",
        "security.auditLogging": "on",
        "security.dataRetention": "2190",
        "security.encryptionLevel": "enhanced",
        "security.requireAdmin2fa": "on",
        "action": "next",
    }
    assert _post_step(client, "/setup/security", secure).status_code == 303
    assert (
        _post_step(
            client, "/setup/agents", {"agents.defaultAgents": "file-processor", "action": "next"}
        ).status_code
        == 303
    )
    review = client.get("/setup/review")
    assert "Acme Corp" in review.text
    done = client.post(
        "/setup/review", data={"csrf_token": _token(review.text)}, follow_redirects=False
    )
    assert done.headers["location"] == "/setup/done"
    instance = client.app.state.instance
    with instance.db.session() as session:
        org_row = session.scalars(select(Organization)).one()
        assert org_row.compliance_level == "enterprise"
        assert session.scalar(select(func.count()).select_from(WizardDraft)) == 0
        user = session.scalars(select(User)).one()
        assert user.password_hash is not None
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["organizationId"] == org_row.id


def test_invalid_answer_is_shown_next_to_the_field_with_values_kept(client, setup_token):
    """A preset violation re-renders the step (422) with the message and the typed value."""
    _unlock(client, setup_token)
    _post_step(
        client,
        "/setup/owner",
        {
            "owner.name": "Pat",
            "owner.email": "pat@acme.example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )
    _post_step(
        client,
        "/setup/organization",
        {"organization.name": "Acme", "organization.industry": "finance", "action": "next"},
    )
    response = _post_step(
        client, "/setup/security", {"security.dataRetention": "30", "action": "next"}
    )
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.text
    assert "at least 365" in response.text
    assert 'value="30"' in response.text
    fixed = _post_step(
        client,
        "/setup/security",
        {"security.auditLogging": "on", "security.dataRetention": "400", "action": "next"},
    )
    assert fixed.status_code == 303, re.findall(r"class=\"error\"[^>]*>([^<]+)<", fixed.text)
    assert fixed.headers["location"] == "/setup/agents"


def test_back_keeps_answers_without_validating(client, setup_token):
    """Back saves what was typed, even if invalid, and the step shows it again."""
    _unlock(client, setup_token)
    _post_step(
        client,
        "/setup/owner",
        {
            "owner.name": "Pat",
            "owner.email": "pat@acme.example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )
    back = _post_step(
        client, "/setup/organization", {"organization.name": "Half typed", "action": "back"}
    )
    assert back.headers["location"] == "/setup/owner"
    assert 'value="Half typed"' in client.get("/setup/organization").text


def test_weak_owner_password_is_refused(client, setup_token):
    """The owner step applies the password policy and names the problem."""
    _unlock(client, setup_token)
    response = _post_step(
        client,
        "/setup/owner",
        {
            "owner.name": "Pat",
            "owner.email": "pat@acme.example.com",
            "password": "password123",
            "password_confirm": "password123",
        },
    )
    assert response.status_code == 422
    assert 'id="password-error"' in response.text
    assert "password" in response.text.lower()


def test_unknown_page_renders_the_html_404(client):
    """An unknown address gets the styled 404 page."""
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Page not found" in response.text
    assert "<!doctype html>" in response.text.lower()
