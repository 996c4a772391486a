"""The second-factor rule binds every credential; sensitive account actions need the
password again; one-time secrets are never cached (issue 9.3 and parts of 9.6).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select, update

from paulyops.core.db.models import ApiToken, SecurityConfig, WebSession
from paulyops.web.pages import console
from tests.factories import PASSWORD, make_org

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
NEW_PASSWORD = "an-unusual-and-long-passphrase-77"


@pytest.fixture
def web(client):
    """The app's client with the console pages mounted."""
    paths = {getattr(route, "path", None) for route in client.app.routes}
    if "/console" not in paths:
        client.app.include_router(console.router)
    return client


def _db(client):
    return client.app.state.instance.db


def _sign_in(client, email, password=PASSWORD):
    client.cookies.clear()
    response = client.post("/api/auth/sign-in", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrfToken"]}


def _require_admin_2fa(client, org_id, on=True):
    with _db(client).write_session() as session:
        session.execute(
            update(SecurityConfig)
            .where(SecurityConfig.organization_id == org_id)
            .values(require_admin_2fa=on)
        )


def _age_password_confirmation(client, minutes=11):
    """Make every session's last password entry ``minutes`` old."""
    with _db(client).write_session() as session:
        session.execute(
            update(WebSession).values(
                password_confirmed_at=datetime.now(UTC) - timedelta(minutes=minutes)
            )
        )


def _token(client, headers, permissions=("org:read",)):
    created = client.post(
        "/api/tokens", json={"name": "script", "permissions": list(permissions)}, headers=headers
    )
    assert created.status_code == 201, created.text
    return created.json()


# --- the rule binds tokens and delegates, by permission -------------------------------------


def test_token_made_before_enrolment_is_refused_until_the_admin_enrols(client):
    """An Owner's API token made before the rule was switched on is refused (403 saying to
    enrol) while the Owner has no second factor, and works again once they enrol."""
    org = make_org(_db(client), "acme")
    owner = _sign_in(client, org.emails["Owner"])
    secret = _token(client, owner)["token"]
    _require_admin_2fa(client, org.id)
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {secret}"}
    refused = client.get("/api/organization", headers=bearer)
    assert refused.status_code == 403, refused.text
    assert "second factor" in refused.json()["message"]
    assert "set up two-factor" in refused.json()["message"]
    assert client.get("/api/auth/me", headers=bearer).status_code == 403

    owner = _sign_in(client, org.emails["Owner"])
    assert client.get("/api/auth/me").json()["permissions"] == []
    started = client.post("/api/auth/totp/start", headers=owner)
    assert started.status_code == 200, started.text
    code = pyotp.TOTP(started.json()["secret"]).now()
    assert (
        client.post("/api/auth/totp/confirm", json={"code": code}, headers=owner).status_code == 200
    )
    client.cookies.clear()
    assert client.get("/api/organization", headers=bearer).status_code == 200


def test_delegate_without_second_factor_cannot_turn_the_rule_off(web):
    """A User holding a delegated security:update is bound by the rule like an admin: their
    session has no permissions, so the settings form refuses them and the rule stays on."""
    org = make_org(_db(web), "acme", model="enterprise")
    admin = _sign_in(web, org.emails["Admin"])
    lent = web.post(
        "/api/delegations",
        json={
            "toUserId": org.members["User"],
            "permissions": ["security:read", "security:update"],
            "expiresAt": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        },
        headers=admin,
    )
    assert lent.status_code == 201, lent.text
    _require_admin_2fa(web, org.id)
    web.cookies.clear()
    page_token = TOKEN.search(web.get("/sign-in").text).group(1)
    signed = web.post(
        "/sign-in",
        data={"email": org.emails["User"], "password": PASSWORD, "csrf_token": page_token},
        follow_redirects=False,
    )
    assert signed.headers["location"] == "/console/security"
    page = web.get("/console/security")
    form_token = TOKEN.search(page.text).group(1)
    off = web.post(
        "/console/security/settings",
        data={"csrf_token": form_token, "idle_minutes": "60", "absolute_hours": "12"},
        follow_redirects=False,
    )
    assert off.status_code == 403
    assert web.get("/api/auth/me").json()["permissions"] == []
    with _db(web).session() as session:
        config = session.scalars(
            select(SecurityConfig).where(SecurityConfig.organization_id == org.id)
        ).one()
        assert config.require_admin_2fa is True


def test_rule_binds_by_permission_not_rank(client):
    """A Manager (rank 60, but holding members:invite and more) is bound; a User is not."""
    org = make_org(_db(client), "acme", model="enterprise")
    _require_admin_2fa(client, org.id)
    _sign_in(client, org.emails["Manager"])
    assert client.get("/api/auth/me").json()["permissions"] == []
    _sign_in(client, org.emails["User"])
    assert "agents:run" in client.get("/api/auth/me").json()["permissions"]


# --- recent authentication ------------------------------------------------------------------


def test_token_creation_needs_a_recent_password(client):
    """Ten minutes after sign-in, creating a token needs the password in the request (422
    naming ``password`` otherwise); a wrong one is refused, the right one works."""
    org = make_org(_db(client), "acme")
    owner = _sign_in(client, org.emails["Owner"])
    _age_password_confirmation(client)
    body = {"name": "ci", "permissions": ["org:read"]}
    stale = client.post("/api/tokens", json=body, headers=owner)
    assert stale.status_code == 422, stale.text
    assert stale.json()["errors"][0]["field"] == "password"
    wrong = client.post("/api/tokens", json={**body, "password": "not-it"}, headers=owner)
    assert wrong.status_code == 422
    ok = client.post("/api/tokens", json={**body, "password": PASSWORD}, headers=owner)
    assert ok.status_code == 201, ok.text
    # The password just entered vouches for the next minutes.
    assert client.post("/api/tokens", json=body, headers=owner).status_code == 201


def test_totp_enrolment_needs_a_recent_password(client):
    """Starting and confirming TOTP enrolment in a session whose password is old need it."""
    org = make_org(_db(client), "acme")
    user = _sign_in(client, org.emails["User"])
    _age_password_confirmation(client)
    stale = client.post("/api/auth/totp/start", headers=user)
    assert stale.status_code == 422, stale.text
    assert stale.json()["errors"][0]["field"] == "password"
    started = client.post("/api/auth/totp/start", json={"password": PASSWORD}, headers=user)
    assert started.status_code == 200, started.text
    _age_password_confirmation(client)
    code = pyotp.TOTP(started.json()["secret"]).now()
    late = client.post("/api/auth/totp/confirm", json={"code": code}, headers=user)
    assert late.status_code == 422
    done = client.post(
        "/api/auth/totp/confirm", json={"code": code, "password": PASSWORD}, headers=user
    )
    assert done.status_code == 200, done.text


def test_console_token_form_needs_a_recent_password(web):
    """The console's token form asks for the password once the sign-in is old."""
    org = make_org(_db(web), "acme")
    web.cookies.clear()
    page_token = TOKEN.search(web.get("/sign-in").text).group(1)
    web.post(
        "/sign-in",
        data={"email": org.emails["Owner"], "password": PASSWORD, "csrf_token": page_token},
    )
    _age_password_confirmation(web)
    form = {
        "csrf_token": TOKEN.search(web.get("/console/security").text).group(1),
        "name": "backup",
        "permissions": ["org:read"],
    }
    stale = web.post("/console/security/tokens", data=form)
    assert stale.status_code == 422
    assert "enter your password again" in stale.text
    made = web.post("/console/security/tokens", data={**form, "password": PASSWORD})
    assert made.status_code == 200
    assert "shown <strong>only this once</strong>" in made.text


def _console_sign_in(web, email):
    web.cookies.clear()
    page_token = TOKEN.search(web.get("/sign-in").text).group(1)
    web.post("/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": page_token})


def test_console_totp_setup_needs_a_recent_password(web):
    """The console's "Set up a second factor" asks for the password once the sign-in is
    old, and shows the secret once it is given."""
    org = make_org(_db(web), "acme")
    _console_sign_in(web, org.emails["User"])
    _age_password_confirmation(web)
    token = TOKEN.search(web.get("/console/security").text).group(1)
    stale = web.post("/console/security/totp/start", data={"csrf_token": token})
    assert stale.status_code == 422
    assert 'id="totp-secret"' not in stale.text
    assert "enter your password again" in stale.text
    started = web.post(
        "/console/security/totp/start", data={"csrf_token": token, "password": PASSWORD}
    )
    assert started.status_code == 200
    assert 'id="totp-secret"' in started.text


# --- password changes -----------------------------------------------------------------------


def test_console_password_change_revokes_tokens_and_says_so(web):
    """Changing the password on the console ends the account's API tokens and says so."""
    org = make_org(_db(web), "acme")
    admin = _sign_in(web, org.emails["Admin"])
    _token(web, admin)
    _console_sign_in(web, org.emails["Admin"])
    token = TOKEN.search(web.get("/console/security").text).group(1)
    done = web.post(
        "/console/security/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert done.status_code == 200
    assert "your 1 API token revoked" in done.text
    with _db(web).session() as session:
        assert session.scalars(select(ApiToken.revoked_at)).one() is not None


def test_password_change_revokes_the_accounts_tokens_and_says_so(client):
    """After a password change every API token of the account stops working (401), and
    the answer says how many were revoked."""
    org = make_org(_db(client), "acme")
    admin = _sign_in(client, org.emails["Admin"])
    secret = _token(client, admin)["token"]
    changed = client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert "1 API token" in changed.json()["message"]
    client.cookies.clear()
    assert (
        client.get("/api/auth/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )
    with _db(client).session() as session:
        assert session.scalars(select(ApiToken.revoked_at)).one() is not None


def test_password_endpoint_is_limited_per_account(client):
    """Guessing the current password through POST /api/auth/password hits the per-account
    sign-in limit (10 per 15 minutes, shared with sign-in, which used one) instead of
    going on without end."""
    org = make_org(_db(client), "acme")
    headers = _sign_in(client, org.emails["User"])
    statuses = [
        client.post(
            "/api/auth/password",
            json={"currentPassword": f"guess-number-{n}", "newPassword": NEW_PASSWORD},
            headers=headers,
        ).status_code
        for n in range(12)
    ]
    assert statuses[:9] == [401] * 9
    assert set(statuses[9:]) == {429}


# --- one-time secrets are not cached --------------------------------------------------------


def test_one_time_secrets_carry_no_store(client):
    """New API tokens, TOTP secrets and recovery codes are answered with no-store."""
    org = make_org(_db(client), "acme")
    headers = _sign_in(client, org.emails["Admin"])
    made = client.post(
        "/api/tokens", json={"name": "ci", "permissions": ["org:read"]}, headers=headers
    )
    assert made.headers["cache-control"] == "no-store"
    started = client.post("/api/auth/totp/start", headers=headers)
    assert started.headers["cache-control"] == "no-store"
    code = pyotp.TOTP(started.json()["secret"]).now()
    confirmed = client.post("/api/auth/totp/confirm", json={"code": code}, headers=headers)
    assert confirmed.status_code == 200
    assert confirmed.headers["cache-control"] == "no-store"
