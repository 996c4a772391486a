"""The RBAC matrix, generated from the app's route table.

For every route guarded by ``require(permission)``, each built-in role of each RBAC model
is allowed exactly when the role holds the permission; ids of another organization in the
path are never served (404) — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re

import pytest

from paulyops.core.db.models import ApiToken, Delegation, Invitation, Role
from paulyops.core.db.scoped import OrgScope
from paulyops.services.actor import SYSTEM
from paulyops.services.auth import invitations, rbac, sessions, tokens
from paulyops.services.auth.permissions import role_templates
from paulyops.web.deps import access_rules, api_routes
from tests.factories import make_org

BODIES = {
    "/api/members/{membership_id}": {"roleId": "role_missing"},
    "/api/roles": {"name": "Auditor", "permissions": ["audit:read"]},
    "/api/roles/{role_id}": {"permissions": ["org:read"]},
    "/api/tokens": {"name": "ci", "permissions": ["org:read"]},
    "/api/invitations": {"email": "new@outside.example.com", "name": "New", "roleId": "role_x"},
    "/api/delegations": {
        "toUserId": "usr_missing",
        "permissions": ["org:read"],
        "expiresAt": "2099-01-01T00:00:00Z",
    },
}


def _guarded_routes(app):
    for path, route in api_routes(app):
        for rule in access_rules(route):
            if rule.startswith("perm:"):
                for method in sorted(route.methods):
                    yield method, path, rule.removeprefix("perm:")


def _sign_in_as(client, db, org_id, user_id):
    with db.write_session() as session:
        new = sessions.create_session(session, user_id=user_id, organization_id=org_id)
        csrf = client.app.state.instance.csrf.issue(new.row.id)
    client.cookies.clear()
    client.cookies.set("paulyops_session", new.token)
    return csrf


def _ids(db, org):
    """Real ids of objects in ``org``, to put in paths."""
    with db.write_session() as session:
        scope = OrgScope(session, org.id)
        # The token belongs to the Viewer, whom every role holding tokens:manage outranks:
        # revoking it is a matter of permission alone (an Owner's token is beyond an
        # Admin's reach by rank, which tests/web/test_delegation_limits.py covers).
        holder = rbac.grant_for(session, org.id, org.members["Viewer"])
        issued = tokens.create_api_token(
            scope,
            user_id=org.members["Viewer"],
            name="t",
            permissions=["org:read"],
            holder_permissions=holder.permissions,
        )
        owner = rbac.grant_for(session, org.id, org.members["Owner"])
        invited = invitations.create_invitation(
            scope,
            grant=owner,
            command=invitations.Invite(
                email=f"invited-{len(invitations.list_pending(scope))}@outside.example.com",
                name="Invited",
                role_id=org.roles["Viewer"],
            ),
            public_url="http://paulyops.test",
            actor=SYSTEM,
        )
        custom = scope.first(Role, Role.is_builtin.is_(False))
        delegation = scope.first(Delegation)
        return {
            "membership_id": org.memberships["target"],
            "role_id": custom.id if custom else org.roles["Viewer"],
            "token_id": issued.row.id,
            "delegation_id": delegation.id if delegation else "dlg_missing",
            "invitation_id": invited.invitation.id,
        }


def _fill(path, ids):
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "missing"), path)


@pytest.mark.parametrize("model", ["simple", "granular", "enterprise"])
def test_route_matrix(client, model):
    """Each role gets exactly the routes its permissions allow, and never another org's ids."""
    db = client.app.state.instance.db
    own = make_org(db, f"own-{model}", model=model)
    other = make_org(db, f"other-{model}", model=model)
    other_ids = _ids(db, other)
    routes = list(_guarded_routes(client.app))
    assert routes, "no guarded routes found"
    failures = []
    for template in role_templates(model):
        with db.session() as session:
            grant = rbac.grant_for(session, own.id, own.members[template.name])
        for method, path, permission in routes:
            own_ids = _ids(db, own)
            csrf = _sign_in_as(client, db, own.id, own.members[template.name])
            headers = {"X-CSRF-Token": csrf}
            body = BODIES.get(path) if method in {"POST", "PATCH", "PUT"} else None
            response = client.request(method, _fill(path, own_ids), json=body, headers=headers)
            allowed = permission in grant.permissions
            denied = response.status_code in {401, 403}
            if allowed == denied or response.status_code >= 500:
                failures.append(
                    f"{template.name} {method} {path}: {response.status_code} (allowed={allowed})"
                )
            if "{" in path:
                csrf = _sign_in_as(client, db, own.id, own.members[template.name])
                cross = client.request(
                    method, _fill(path, other_ids), json=body, headers={"X-CSRF-Token": csrf}
                )
                if cross.status_code < 400 or cross.status_code >= 500:
                    failures.append(
                        f"{template.name} {method} {path} with another org's id: "
                        f"{cross.status_code}"
                    )
    assert failures == []
    # Nothing of the other organization was changed through the cross-tenant requests.
    with db.session() as session:
        scope = OrgScope(session, other.id)
        assert scope.count(ApiToken, ApiToken.revoked_at.is_(None)) >= 1
        assert scope.count(Invitation, Invitation.revoked_at.is_(None)) >= 1


def test_anonymous_gets_401_on_every_guarded_route(client):
    """Without a session or token, every guarded route answers 401."""
    client.cookies.clear()
    for method, path, _permission in _guarded_routes(client.app):
        response = client.request(
            method, _fill(path, {}), json=BODIES.get(path), follow_redirects=False
        )
        if path.startswith("/api/"):
            assert response.status_code == 401, (method, path, response.status_code)
        else:
            # Pages send anonymous visitors to the sign-in page instead.
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/sign-in"), (method, path)
