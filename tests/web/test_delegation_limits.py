"""Delegation never outlives itself or raises a rank, and revoking respects rank (issue 9.2).

Each test replays an attack that worked on main, over the JSON API and, where the console
has the same action, over its form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from paulyops.core.db.models import ApiToken, Delegation, Role
from paulyops.services.auth.permissions import role_templates
from paulyops.web.pages import console
from tests.factories import PASSWORD, make_org

VIEWER_PERMISSIONS = sorted(
    next(t for t in role_templates("enterprise") if t.name == "Viewer").permissions
)
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web(client):
    """The app's client with the console pages mounted."""
    paths = {getattr(route, "path", None) for route in client.app.routes}
    if "/console" not in paths:
        client.app.include_router(console.router)
    return client


def _db(client):
    return client.app.state.instance.db


def _sign_in(client, email):
    client.cookies.clear()
    response = client.post("/api/auth/sign-in", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrfToken"]}


def _in_a_week() -> str:
    return (datetime.now(UTC) + timedelta(days=7)).isoformat()


def _intern_with_delegation(client, org, permissions):
    """An "Intern" role (Viewer's permissions, rank 20) held by the target member, who
    receives ``permissions`` by delegation from the Admin. Returns (role id, delegation id)."""
    owner = _sign_in(client, org.emails["Owner"])
    intern = client.post(
        "/api/roles", json={"name": "Intern", "permissions": VIEWER_PERMISSIONS}, headers=owner
    )
    assert intern.status_code == 201, intern.text
    moved = client.patch(
        f"/api/members/{org.memberships['target']}",
        json={"roleId": intern.json()["id"]},
        headers=owner,
    )
    assert moved.status_code == 200, moved.text
    admin = _sign_in(client, org.emails["Admin"])
    delegation = client.post(
        "/api/delegations",
        json={
            "toUserId": org.members["target"],
            "permissions": permissions,
            "expiresAt": _in_a_week(),
        },
        headers=admin,
    )
    assert delegation.status_code == 201, delegation.text
    return intern.json()["id"], delegation.json()["id"]


def _role(client, role_id) -> Role:
    with _db(client).session() as session:
        role = session.get(Role, role_id)
        session.expunge(role)
        return role


def test_delegate_cannot_write_delegated_permissions_into_their_own_role(client):
    """The Intern 20 -> 80 attack: with a delegated roles:manage and members:update the
    Intern can neither edit their own role, nor put the delegated permissions in any role,
    nor move the delegating Admin; once the delegation ends, nothing of it remains."""
    org = make_org(_db(client), "acme", model="enterprise")
    lent = ["members:update", "roles:manage"]
    intern_id, delegation_id = _intern_with_delegation(client, org, lent)
    intern = _sign_in(client, "target@acme.example.com")

    own = client.patch(
        f"/api/roles/{intern_id}",
        json={"permissions": [*VIEWER_PERMISSIONS, *lent]},
        headers=intern,
    )
    assert own.status_code == 403, own.text
    assert "your own role" in own.json()["message"]
    other = client.post(
        "/api/roles",
        json={"name": "Escalator", "permissions": [*VIEWER_PERMISSIONS, "roles:manage"]},
        headers=intern,
    )
    assert other.status_code == 403, other.text
    assert "delegation" in other.json()["message"]
    moved = client.patch(
        f"/api/members/{org.memberships['Admin']}", json={"roleId": intern_id}, headers=intern
    )
    assert moved.status_code == 403, moved.text

    role = _role(client, intern_id)
    assert role.rank == 20
    assert sorted(role.permissions) == VIEWER_PERMISSIONS

    admin = _sign_in(client, org.emails["Admin"])
    assert client.delete(f"/api/delegations/{delegation_id}", headers=admin).status_code == 200
    _sign_in(client, "target@acme.example.com")
    me = client.get("/api/auth/me").json()
    assert sorted(me["permissions"]) == VIEWER_PERMISSIONS


def test_delegate_cannot_edit_their_own_role_on_the_console(web):
    """The same attack through the roles page: 403, and the role keeps rank and permissions."""
    org = make_org(_db(web), "acme", model="enterprise")
    lent = ["members:update", "roles:manage"]
    intern_id, _delegation_id = _intern_with_delegation(web, org, lent)
    _sign_in(web, "target@acme.example.com")
    page = web.get("/console/roles")
    assert "This is your own role" in page.text
    token = TOKEN.search(page.text).group(1)
    response = web.post(
        f"/console/roles/{intern_id}/permissions",
        data={"csrf_token": token, "permissions": [*VIEWER_PERMISSIONS, *lent]},
    )
    assert response.status_code == 403
    assert "your own role" in response.text
    role = _role(web, intern_id)
    assert role.rank == 20
    assert sorted(role.permissions) == VIEWER_PERMISSIONS


def test_recomputed_rank_never_exceeds_the_actors(client):
    """A member whose role ranks 60 cannot create a role that would rank above 60."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.core.errors import PermissionDeniedError
    from paulyops.services.auth import rbac

    org = make_org(_db(client), "acme", model="enterprise")
    with _db(client).write_session() as session:
        scope = OrgScope(session, org.id)
        owner = rbac.grant_for(session, org.id, org.members["Owner"])
        manager = rbac.grant_for(session, org.id, org.members["Manager"])
        # A grant claiming roles:manage through its role, but ranked as a Manager: the
        # resulting rank (Admin's 80, since roles:manage is admin-only) is refused.
        capped = rbac.Grant(
            org.id,
            manager.user_id,
            manager.role_name,
            manager.role_rank,
            owner.permissions,
            role_id=manager.role_id,
            grantable=owner.grantable,
        )
        with pytest.raises(PermissionDeniedError, match="rank 80"):
            rbac.create_custom_role(
                scope, "enterprise", actor=capped, name="Too high", permissions=["roles:manage"]
            )


def test_delegated_permissions_never_go_into_a_token(client):
    """A member holding tokens:manage and audit:export by delegation can make a token only
    with their own role's permissions; the token never gains a delegated one."""
    org = make_org(_db(client), "acme", model="enterprise")
    admin = _sign_in(client, org.emails["Admin"])
    lent = client.post(
        "/api/delegations",
        json={
            "toUserId": org.members["User"],
            "permissions": ["audit:export", "tokens:manage"],
            "expiresAt": _in_a_week(),
        },
        headers=admin,
    )
    assert lent.status_code == 201, lent.text
    user = _sign_in(client, org.emails["User"])
    refused = client.post(
        "/api/tokens", json={"name": "export", "permissions": ["audit:export"]}, headers=user
    )
    assert refused.status_code == 403, refused.text
    assert "delegation" in refused.json()["message"]
    made = client.post(
        "/api/tokens", json={"name": "read", "permissions": ["org:read"]}, headers=user
    )
    assert made.status_code == 201, made.text
    with _db(client).session() as session:
        assert session.scalars(select(ApiToken.permissions)).all() == [["org:read"]]


def test_manager_cannot_revoke_an_admins_delegation(web):
    """Only the giver, the recipient or someone ranked above the giver ends a delegation:
    a Manager's attempt is refused over the API and the console; the Owner's works."""
    org = make_org(_db(web), "acme", model="enterprise")
    admin = _sign_in(web, org.emails["Admin"])
    created = web.post(
        "/api/delegations",
        json={
            "toUserId": org.members["User"],
            "permissions": ["audit:read"],
            "expiresAt": _in_a_week(),
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    delegation_id = created.json()["id"]

    manager = _sign_in(web, org.emails["Manager"])
    api = web.delete(f"/api/delegations/{delegation_id}", headers=manager)
    assert api.status_code == 403, api.text
    token = TOKEN.search(web.get("/console/roles").text).group(1)
    form = web.post(f"/console/delegations/{delegation_id}/revoke", data={"csrf_token": token})
    assert "Delegation ended" not in form.text
    with _db(web).session() as session:
        assert session.get(Delegation, delegation_id).revoked_at is None

    owner = _sign_in(web, org.emails["Owner"])
    assert web.delete(f"/api/delegations/{delegation_id}", headers=owner).status_code == 200
    with _db(web).session() as session:
        assert session.get(Delegation, delegation_id).revoked_at is not None


def test_recipient_may_hand_a_delegation_back(client):
    """The member who received a delegation may end it early (it only shrinks their power)."""
    org = make_org(_db(client), "acme", model="enterprise")
    owner = _sign_in(client, org.emails["Owner"])
    created = client.post(
        "/api/delegations",
        json={
            "toUserId": org.members["Manager"],
            "permissions": ["audit:export"],
            "expiresAt": _in_a_week(),
        },
        headers=owner,
    )
    assert created.status_code == 201, created.text
    manager = _sign_in(client, org.emails["Manager"])
    back = client.delete(f"/api/delegations/{created.json()['id']}", headers=manager)
    assert back.status_code == 200, back.text


def test_admin_cannot_revoke_the_owners_token(web):
    """Revoking another member's token needs rank over them: an Admin cannot end the
    Owner's token (API or console), but may end their own and the Owner may end the Admin's."""
    org = make_org(_db(web), "acme")
    owner = _sign_in(web, org.emails["Owner"])
    owner_token = web.post(
        "/api/tokens", json={"name": "backup", "permissions": ["org:read"]}, headers=owner
    )
    assert owner_token.status_code == 201, owner_token.text
    owner_token_id = owner_token.json()["id"]

    admin = _sign_in(web, org.emails["Admin"])
    api = web.delete(f"/api/tokens/{owner_token_id}", headers=admin)
    assert api.status_code == 403, api.text
    page = web.get("/console/security")
    token = TOKEN.search(page.text).group(1)
    form = web.post(f"/console/security/tokens/{owner_token_id}/revoke", data={"csrf_token": token})
    assert "Token revoked" not in form.text
    with _db(web).session() as session:
        assert session.get(ApiToken, owner_token_id).revoked_at is None

    admin = _sign_in(web, org.emails["Admin"])  # the console page issued a new CSRF token
    admin_token = web.post(
        "/api/tokens", json={"name": "mine", "permissions": ["org:read"]}, headers=admin
    ).json()["id"]
    assert web.delete(f"/api/tokens/{admin_token}", headers=admin).status_code == 200
    second = web.post(
        "/api/tokens", json={"name": "mine too", "permissions": ["org:read"]}, headers=admin
    ).json()["id"]
    owner = _sign_in(web, org.emails["Owner"])
    assert web.delete(f"/api/tokens/{second}", headers=owner).status_code == 200


def test_delegated_permissions_never_go_into_an_invitation(client):
    """A member lent members:invite may invite into roles made of their own permissions,
    never into a role that holds the lent permission itself (it would outlive the loan)."""
    org = make_org(_db(client), "acme", model="enterprise")
    owner = _sign_in(client, org.emails["Owner"])
    user_permissions = sorted(
        next(t for t in role_templates("enterprise") if t.name == "User").permissions
    )
    greeter = client.post(
        "/api/roles",
        json={"name": "Greeter", "permissions": [*user_permissions, "members:invite"]},
        headers=owner,
    )
    assert greeter.status_code == 201, greeter.text
    admin = _sign_in(client, org.emails["Admin"])
    lent = client.post(
        "/api/delegations",
        json={
            "toUserId": org.members["User"],
            "permissions": ["members:invite"],
            "expiresAt": _in_a_week(),
        },
        headers=admin,
    )
    assert lent.status_code == 201, lent.text
    with _db(client).write_session() as session:
        session.get(Role, greeter.json()["id"]).rank = 0  # rank alone must not be the guard
    user = _sign_in(client, org.emails["User"])
    refused = client.post(
        "/api/invitations",
        json={"email": "friend@example.com", "name": "Friend", "roleId": greeter.json()["id"]},
        headers=user,
    )
    assert refused.status_code == 403, refused.text
    assert "delegation" in refused.json()["message"]


def test_nobody_deletes_a_role_ranked_above_their_own(client):
    """Deleting a custom role needs a rank at least as high as the role's."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.core.errors import PermissionDeniedError
    from paulyops.services.auth import rbac

    org = make_org(_db(client), "acme", model="enterprise")
    owner = _sign_in(client, org.emails["Owner"])
    made = client.post(
        "/api/roles", json={"name": "Auditor", "permissions": VIEWER_PERMISSIONS}, headers=owner
    )
    assert made.status_code == 201, made.text
    with _db(client).write_session() as session:
        scope = OrgScope(session, org.id)
        session.get(Role, made.json()["id"]).rank = 90
        admin = rbac.grant_for(session, org.id, org.members["Admin"])
        assert admin is not None
        assert admin.role_rank < 90
        with pytest.raises(PermissionDeniedError):
            rbac.delete_role(scope, made.json()["id"], actor=admin)
    admin_headers = _sign_in(client, org.emails["Admin"])
    refused = client.delete(f"/api/roles/{made.json()['id']}", headers=admin_headers)
    assert refused.status_code == 403, refused.text
    owner = _sign_in(client, org.emails["Owner"])
    assert client.delete(f"/api/roles/{made.json()['id']}", headers=owner).status_code == 200
