"""Nobody can hand out power they lack: roles, role assignment, tokens and account routes."""

from __future__ import annotations

from tests.factories import PASSWORD, make_org


def _sign_in(client, email):
    response = client.post("/api/auth/sign-in", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrfToken"]}


def test_admin_cannot_put_platform_permissions_into_a_role(client):
    """org:create and ratelimits:manage never go into an organization's role."""
    org = make_org(client.app.state.instance.db, "acme", model="granular")
    headers = _sign_in(client, org.emails["Admin"])
    response = client.post(
        "/api/roles",
        json={"name": "Sneaky", "permissions": ["org:create", "ratelimits:manage"]},
        headers=headers,
    )
    assert response.status_code == 403
    assert "platform administrators" in response.json()["message"]


def test_role_cannot_hold_permissions_its_creator_lacks(client):
    """A member with roles:manage but not audit:export cannot create a role with it."""
    db = client.app.state.instance.db
    org = make_org(db, "acme", model="granular")
    owner = _sign_in(client, org.emails["Owner"])
    keeper = client.post(
        "/api/roles",
        json={"name": "Keeper", "permissions": ["roles:manage", "roles:read", "members:read"]},
        headers=owner,
    )
    assert keeper.status_code == 201, keeper.text
    changed = client.patch(
        f"/api/members/{org.memberships['User']}",
        json={"roleId": keeper.json()["id"]},
        headers=owner,
    )
    assert changed.status_code == 200, changed.text
    keeper_headers = _sign_in(client, org.emails["User"])
    refused = client.post(
        "/api/roles",
        json={"name": "Exporter", "permissions": ["audit:export"]},
        headers=keeper_headers,
    )
    assert refused.status_code == 403
    assert "audit:export" in refused.json()["message"]


def test_admin_like_custom_role_ranks_as_admin(client):
    """A custom role holding admin-only permissions gets the Admin rank (2FA rules apply)."""
    org = make_org(client.app.state.instance.db, "acme", model="granular")
    headers = _sign_in(client, org.emails["Owner"])
    created = client.post(
        "/api/roles",
        json={"name": "Security officer", "permissions": ["security:update", "security:read"]},
        headers=headers,
    )
    assert created.status_code == 201
    from paulyops.core.db.models import Role

    with client.app.state.instance.db.session() as session:
        assert session.get(Role, created.json()["id"]).rank == 80


def test_enterprise_role_below_another_cannot_hold_more(client):
    """In the hierarchy, a role placed under Viewer may hold only what Viewer holds."""
    org = make_org(client.app.state.instance.db, "acme", model="enterprise")
    headers = _sign_in(client, org.emails["Owner"])
    response = client.post(
        "/api/roles",
        json={
            "name": "Under viewer",
            "permissions": ["members:update"],
            "parentId": org.roles["Viewer"],
        },
        headers=headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "permissions"


def test_api_token_cannot_change_account_security(client):
    """A bearer token may read who it is, but not touch the second factor or sessions."""
    org = make_org(client.app.state.instance.db, "acme")
    headers = _sign_in(client, org.emails["Owner"])
    token = client.post(
        "/api/tokens", json={"name": "ro", "permissions": ["org:read"]}, headers=headers
    ).json()["token"]
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    assert client.post("/api/auth/totp/start", headers=bearer).status_code == 403
    assert client.get("/api/auth/sessions", headers=bearer).status_code == 403


def test_totp_cannot_be_restarted_while_on(client):
    """Starting TOTP enrollment again while it is on is refused (it would turn 2FA off)."""
    import pyotp

    org = make_org(client.app.state.instance.db, "acme")
    headers = _sign_in(client, org.emails["User"])
    secret = client.post("/api/auth/totp/start", headers=headers).json()["secret"]
    client.post("/api/auth/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers)
    assert client.post("/api/auth/totp/start", headers=headers).status_code == 409


def test_invite_never_hands_out_a_link_for_an_existing_account(client):
    """Inviting an address whose account never set a password gives no password link."""
    import re

    from paulyops.services.actor import SYSTEM
    from paulyops.services.onboarding.provision import ProvisionContext, provision
    from paulyops.services.onboarding.spec import parse_spec

    instance = client.app.state.instance
    other = provision(
        instance.db,
        parse_spec(
            {
                "organization": {"name": "Beta Works", "industry": "other"},
                "owner": {"email": "owner@beta.example.com", "name": "Beta Owner"},
            }
        ),
        ProvisionContext(
            actor=SYSTEM, jwt_secret="x" * 40, public_url="http://x", data_dir=tmp_dir(client)
        ),
    )
    assert other.owner_password_link is not None
    org = make_org(instance.db, "acme", model="enterprise")
    _sign_in(client, org.emails["Manager"])
    page = client.get("/console/members")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/console/members/invite",
        data={
            "csrf_token": token,
            "email": "owner@beta.example.com",
            "name": "Whoever",
            "role_id": org.roles["Viewer"],
        },
    )
    assert "set-password?token=" not in response.text


def tmp_dir(client):
    return client.app.state.instance.settings.data_dir
