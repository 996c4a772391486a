"""Every front door enforces the same rule with the same words (issue 11.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from paulyops.core.db.models import ApiToken, AuditLog
from paulyops.services.auth.rbac import NEEDS_AN_OWNER
from paulyops.web.pages import console
from tests.factories import PASSWORD, make_org


@pytest.fixture
def web(client):
    """The app's client with the console pages mounted."""
    paths = {getattr(route, "path", None) for route in client.app.routes}
    if "/console" not in paths:
        client.app.include_router(console.router)
    return client


def _console_sign_in(client, email):
    client.cookies.clear()
    page = client.get("/sign-in")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = client.post(
        "/sign-in",
        data={"email": email, "password": PASSWORD, "csrf_token": token, "next": ""},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text


def _sign_in(client, email):
    client.cookies.clear()
    response = client.post("/api/auth/sign-in", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrfToken"]}


def test_api_refuses_a_token_that_has_already_expired(client):
    """POST /api/tokens with a past expiresAt is a 422 naming the field; nothing is made.

    Regression: only the console's form checked the expiry, so the API created tokens that
    never worked.
    """
    db = client.app.state.instance.db
    org = make_org(db, "acme")
    headers = _sign_in(client, org.emails["Owner"])
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    answer = client.post(
        "/api/tokens",
        json={"name": "late", "permissions": ["org:read"], "expiresAt": past, "password": PASSWORD},
        headers=headers,
    )
    assert answer.status_code == 422, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == ["expiresAt"]
    assert "in the future" in answer.json()["errors"][0]["message"]
    with db.session() as session:
        assert session.scalars(select(ApiToken)).all() == []
        audit = select(AuditLog).where(AuditLog.action == "token.created")
        assert session.scalars(audit).all() == []


def test_the_last_owner_rule_has_one_text_for_demotion_and_removal(client):
    """Demoting and removing the only Owner are refused with the same message."""
    org = make_org(client.app.state.instance.db, "acme")
    headers = _sign_in(client, org.emails["Owner"])
    # An Admin ranks below the Owner, so the Owner acts on themself through another Owner's
    # absence: demote the Owner as the Owner (the only one).
    demoted = client.patch(
        f"/api/members/{org.memberships['Owner']}",
        json={"roleId": org.roles["Admin"]},
        headers=headers,
    )
    assert demoted.status_code == 403, demoted.text
    assert demoted.json()["message"] == NEEDS_AN_OWNER
    # Removal of oneself is refused earlier ("ask another admin"); a second Owner who
    # removes the first leaves one, so the rule bites on the last one only.
    promoted = client.patch(
        f"/api/members/{org.memberships['Admin']}",
        json={"roleId": org.roles["Owner"]},
        headers=headers,
    )
    assert promoted.status_code == 200, promoted.text
    second = _sign_in(client, org.emails["Admin"])
    removed = client.delete(f"/api/members/{org.memberships['Owner']}", headers=second)
    assert removed.status_code == 200, removed.text
    demote_self = client.patch(
        f"/api/members/{org.memberships['Admin']}",
        json={"roleId": org.roles["Admin"]},
        headers=second,
    )
    assert demote_self.status_code == 403
    assert demote_self.json()["message"] == NEEDS_AN_OWNER


def test_delegation_expiry_is_refused_alike_by_the_api_and_the_console(web):
    """A last day in the past gets the command's message on the API and on the form."""
    org = make_org(web.app.state.instance.db, "acme", model="enterprise")
    headers = _sign_in(web, org.emails["Owner"])
    yesterday = datetime.now(UTC) - timedelta(days=1)
    api = web.post(
        "/api/delegations",
        json={
            "toUserId": org.members["User"],
            "permissions": ["audit:read"],
            "expiresAt": yesterday.isoformat(),
        },
        headers=headers,
    )
    assert api.status_code == 422, api.text
    [error] = api.json()["errors"]
    assert error["field"] == "expiresAt"
    _console_sign_in(web, org.emails["Owner"])
    page = web.get("/console/roles")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = web.post(
        "/console/delegations",
        data={
            "csrf_token": token,
            "to_user_id": org.members["User"],
            "permissions": ["audit:read"],
            "expires": yesterday.date().isoformat(),
        },
    )
    assert form.status_code == 422
    assert 'aria-describedby="f-expires-hint f-expires-error"' in form.text
    assert "expected a time within the next 30 days" in form.text
    assert "expected a time within the next 30 days" in error["message"]


def test_role_form_bounds_come_from_the_command(web):
    """The role name and description inputs carry the command's maxLength."""
    org = make_org(web.app.state.instance.db, "acme", model="granular")
    _console_sign_in(web, org.emails["Owner"])
    page = web.get("/console/roles")
    assert 'name="name" type="text" required maxlength="80"' in page.text
    assert 'name="description" type="text" maxlength="400"' in page.text
