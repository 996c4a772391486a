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
