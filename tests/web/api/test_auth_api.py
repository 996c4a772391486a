"""Sign-in, sessions, CSRF and bearer tokens through the HTTP API."""

from __future__ import annotations

from tests.factories import PASSWORD, make_org


def _sign_in(client, email, password=PASSWORD):
    return client.post("/api/auth/sign-in", json={"email": email, "password": password})


def test_sign_in_sets_session_cookie_and_returns_csrf(client):
    """A correct sign-in sets an HttpOnly SameSite=Lax cookie and returns a CSRF token."""
    org = make_org(client.app.state.instance.db, "acme")
    response = _sign_in(client, org.emails["Admin"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organizationId"] == org.id
    assert body["csrfToken"]
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    assert "members:update" in me.json()["permissions"]


def test_sign_in_failures_are_generic(client):
    """Wrong password and unknown account give the same 401 message."""
    org = make_org(client.app.state.instance.db, "acme")
    wrong = _sign_in(client, org.emails["Admin"], "not-the-password-at-all")
    unknown = _sign_in(client, "nobody@nowhere.example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"]


def test_unsafe_request_needs_csrf_token(client):
    """With a cookie session, a POST without the CSRF token is refused; with it, accepted."""
    org = make_org(client.app.state.instance.db, "acme")
    token = _sign_in(client, org.emails["Viewer"]).json()["csrfToken"]
    refused = client.post("/api/auth/sign-out")
    assert refused.status_code == 403
    accepted = client.post("/api/auth/sign-out", headers={"X-CSRF-Token": token})
    assert accepted.status_code == 200
    assert client.get("/api/auth/me").status_code == 401


def test_sign_out_invalidates_session_on_server(client):
    """After sign-out, replaying the old cookie no longer works."""
    org = make_org(client.app.state.instance.db, "acme")
    token = _sign_in(client, org.emails["User"]).json()["csrfToken"]
    old_cookie = dict(client.cookies)
    client.post("/api/auth/sign-out", headers={"X-CSRF-Token": token})
    client.cookies.clear()
    client.cookies.update(old_cookie)
    assert client.get("/api/auth/me").status_code == 401


def test_session_id_rotates_at_sign_in(client):
    """Signing in again gives a new session id and revokes the old one."""
    org = make_org(client.app.state.instance.db, "acme")
    _sign_in(client, org.emails["User"])
    first = dict(client.cookies)
    _sign_in(client, org.emails["User"])
    assert dict(client.cookies) != first
    client.cookies.clear()
    client.cookies.update(first)
    assert client.get("/api/auth/me").status_code == 401


def test_sessions_are_listed_and_revocable(client):
    """A user sees their sessions and can revoke one."""
    org = make_org(client.app.state.instance.db, "acme")
    token = _sign_in(client, org.emails["User"]).json()["csrfToken"]
    listed = client.get("/api/auth/sessions").json()
    assert len(listed) == 1
    assert listed[0]["current"] is True
    revoked = client.delete(
        f"/api/auth/sessions/{listed[0]['id']}", headers={"X-CSRF-Token": token}
    )
    assert revoked.status_code == 200
    assert client.get("/api/auth/me").status_code == 401


def test_admin_without_second_factor_is_limited_when_org_requires_it(client):
    """When the org requires 2FA for admins, an admin without TOTP can only enroll."""
    from paulyops.core.db.models import SecurityConfig

    db = client.app.state.instance.db
    org = make_org(db, "strict")
    with db.write_session() as session:
        config = session.query(SecurityConfig).filter_by(organization_id=org.id).one()
        config.require_admin_2fa = True
    _sign_in(client, org.emails["Admin"])
    me = client.get("/api/auth/me").json()
    assert me["permissions"] == []
    assert client.get("/api/members").status_code == 403
    _sign_in(client, org.emails["User"])
    assert client.get("/api/members").status_code == 200


def test_totp_enrollment_then_second_factor_sign_in(client):
    """After enrolling TOTP, sign-in needs a code; a wrong code fails, a right one works."""
    import pyotp

    org = make_org(client.app.state.instance.db, "acme")
    csrf = _sign_in(client, org.emails["User"]).json()["csrfToken"]
    secret = client.post("/api/auth/totp/start", headers={"X-CSRF-Token": csrf}).json()["secret"]
    codes = client.post(
        "/api/auth/totp/confirm",
        json={"code": pyotp.TOTP(secret).now()},
        headers={"X-CSRF-Token": csrf},
    ).json()["recoveryCodes"]
    assert len(codes) == 10
    step = _sign_in(client, org.emails["User"]).json()
    assert step["needsSecondFactor"] is True
    assert client.get("/api/auth/me").status_code == 401
    wrong = client.post("/api/auth/second-factor", json={"code": "000000"})
    assert wrong.status_code == 401
    ok = client.post("/api/auth/second-factor", json={"code": codes[0]})
    assert ok.status_code == 200, ok.text
    assert client.get("/api/auth/me").status_code == 200


def test_bearer_token_is_csrf_exempt_and_limited_to_its_permissions(client):
    """An API token works without CSRF and only within the permissions it was given."""
    org = make_org(client.app.state.instance.db, "acme")
    csrf = _sign_in(client, org.emails["Admin"]).json()["csrfToken"]
    created = client.post(
        "/api/tokens",
        json={"name": "ci", "permissions": ["members:read"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status_code == 201
    secret = created.json()["token"]
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/members", headers=auth).status_code == 200
    assert client.get("/api/roles", headers=auth).status_code == 403
    listed = client.get("/api/tokens", headers=auth)
    assert listed.status_code == 403
    assert (
        client.get("/api/members", headers={"Authorization": "Bearer pot_wrong"}).status_code == 401
    )


def test_healthz_details_for_health_read_holders(app_settings):
    """A remote caller holding health:read sees details; an anonymous one does not."""
    from fastapi.testclient import TestClient

    from paulyops.web.app import create_app

    app = create_app(app_settings)
    with TestClient(app, base_url="http://203.0.113.9", client=("203.0.113.9", 5000)) as remote:
        assert app.state.instance.ready.wait(20)
        org = make_org(app.state.instance.db, "acme")
        assert "details" not in remote.get("/api/healthz").json()["checks"]["database"]
        _sign_in(remote, org.emails["Admin"])
        assert "details" in remote.get("/api/healthz").json()["checks"]["database"]


def test_failed_sign_in_leaves_an_audit_row(client):
    """A refused sign-in is recorded in the instance audit chain (without the e-mail)."""
    from sqlalchemy import select

    from paulyops.core.db.models import AuditLog

    response = _sign_in(client, "nobody@nowhere.example.com", "wrong-password-here")
    assert response.status_code == 401
    with client.app.state.instance.db.session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.action == "auth.sign_in", AuditLog.outcome == "failure")
        ).all()
    assert len(rows) == 1
    assert "nobody@" not in str(rows[0].changes)


def test_a_totp_code_works_only_once(client):
    """A code already accepted cannot be replayed to finish another sign-in."""
    import pyotp

    org = make_org(client.app.state.instance.db, "acme")
    csrf = _sign_in(client, org.emails["User"]).json()["csrfToken"]
    secret = client.post("/api/auth/totp/start", headers={"X-CSRF-Token": csrf}).json()["secret"]
    code = pyotp.TOTP(secret).now()
    confirmed = client.post(
        "/api/auth/totp/confirm", json={"code": code}, headers={"X-CSRF-Token": csrf}
    )
    assert confirmed.status_code == 200
    assert _sign_in(client, org.emails["User"]).json()["needsSecondFactor"] is True
    replay = client.post("/api/auth/second-factor", json={"code": code})
    assert replay.status_code == 401
