"""Invitations: a link joins its own organization only; existing accounts must accept.

The first test is the account takeover found on main: a Viewer invitation in A and an
Admin invitation in B for the same new address; A's inviter used A's link and was signed
in to B as Admin.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from paulyops.core.db.models import AuditLog, Invitation, Membership, utcnow
from paulyops.services.auth import rbac
from tests.factories import PASSWORD, make_org

NEW_PASSWORD = "a-long-and-unusual-passphrase-91"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK = re.compile(r"https?://[^<\s\"]+/invitation\?token=([A-Za-z0-9_\-]+)")


def _db(client):
    return client.app.state.instance.db


def _api_sign_in(client, email, password=PASSWORD, organization_id=None):
    client.cookies.clear()
    body = {"email": email, "password": password}
    if organization_id:
        body["organizationId"] = organization_id
    response = client.post("/api/auth/sign-in", json=body)
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrfToken"]}


def _invite(client, headers, email, role_id, name="Invited Person"):
    response = client.post(
        "/api/invitations", json={"email": email, "name": name, "roleId": role_id}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response


def _token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def _page_token(page) -> str:
    match = TOKEN.search(page.text)
    assert match, page.text[:300]
    return match.group(1)


def _create_account_through_link(client, token, password=NEW_PASSWORD):
    client.cookies.clear()
    form = client.get(f"/invitation?token={token}")
    assert form.status_code == 200, form.text
    assert "Create account and join" in form.text
    return client.post(
        "/invitation",
        data={
            "csrf_token": _page_token(form),
            "token": token,
            "name": "Whoever",
            "password": password,
            "confirm": password,
        },
        follow_redirects=False,
    )


def _memberships(client, user_email):
    with _db(client).session() as session:
        from paulyops.services.auth import accounts

        user = accounts.find_user(session, user_email)
        if user is None:
            return {}
        return {org.slug: role.name for org, role in rbac.memberships_of(session, user.id)}


def _actions(client, chain):
    with _db(client).session() as session:
        return session.scalars(
            select(AuditLog.action).where(AuditLog.chain == chain).order_by(AuditLog.seq)
        ).all()


def test_first_inviters_link_never_grants_the_second_organization(client):
    """Viewer invite in A, Admin invite in B, A's link used: the account is in A only.

    B's invitation is not listed for the account that A's link made, cannot be accepted
    by id, and B's link asks the account to sign in and accept: nothing of B is granted.
    """
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    victim = "victim@outside.example.com"
    link_a = _invite(
        client, _api_sign_in(client, alpha.emails["Owner"]), victim, alpha.roles["Viewer"]
    )
    link_b = _invite(
        client, _api_sign_in(client, beta.emails["Owner"]), victim, beta.roles["Admin"]
    )
    beta_invitation = link_b.json()["id"]

    # A's inviter keeps A's link and uses it themselves.
    done = _create_account_through_link(client, _token_of(link_a.json()["link"]))
    assert done.status_code == 303, done.text
    assert _memberships(client, victim) == {"alpha": "Viewer"}

    headers = _api_sign_in(client, victim, NEW_PASSWORD)
    me = client.get("/api/auth/me").json()
    assert me["organizationId"] == alpha.id
    assert "members:invite" not in me["permissions"]
    assert client.get("/api/auth/invitations").json() == []
    refused = client.post(f"/api/auth/invitations/{beta_invitation}/accept", headers=headers)
    assert refused.status_code == 404
    client.cookies.clear()
    into_beta = client.post(
        "/api/auth/sign-in",
        json={"email": victim, "password": NEW_PASSWORD, "organizationId": beta.id},
    )
    assert into_beta.json()["organizationId"] is None
    assert client.get("/api/members").status_code == 403
    assert _memberships(client, victim) == {"alpha": "Viewer"}

    # B's link now leads to sign-in-and-accept; opening it grants nothing.
    client.cookies.clear()
    page = client.get(f"/invitation?token={_token_of(link_b.json()['link'])}")
    assert page.status_code == 200
    assert "Sign in to accept" in page.text
    assert "Create account" not in page.text
    assert _memberships(client, victim) == {"alpha": "Viewer"}
    with _db(client).session() as session:
        assert session.get(Invitation, beta_invitation).accepted_at is None


def _console_invite(client, owner_email, email, role_id):
    client.cookies.clear()
    sign_in = client.get("/sign-in")
    client.post(
        "/sign-in",
        data={"email": owner_email, "password": PASSWORD, "csrf_token": _page_token(sign_in)},
    )
    page = client.post(
        "/console/members/invite",
        data={
            "csrf_token": _page_token(client.get("/console/members")),
            "email": email,
            "name": "Victim",
            "role_id": role_id,
        },
    )
    assert page.status_code == 200, page.text
    return page


def test_takeover_reproduction_through_the_console_forms(client):
    """The reproduction as found, with the console only: A's link must not sign in to B.

    Whatever the inviter's page offers for a new address is followed the way the inviter
    would (choose a password through it), then the inviter signs in and asks for B.
    """
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    victim = "victim@outside.example.com"
    page_a = _console_invite(client, alpha.emails["Owner"], victim, alpha.roles["Viewer"])
    _console_invite(client, beta.emails["Owner"], victim, beta.roles["Admin"])
    link = re.search(r"https?://[^<\s\"]+\?token=[A-Za-z0-9_\-.]+", page_a.text)
    assert link, page_a.text
    parts = urlsplit(link.group(0))
    client.cookies.clear()
    form = client.get(f"{parts.path}?{parts.query}")
    action = re.search(r'<form method="post" action="([^"]+)"', form.text).group(1)
    client.post(
        action,
        data={
            "csrf_token": _page_token(form),
            "token": parse_qs(parts.query)["token"][0],
            "name": "Attacker",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    client.cookies.clear()
    sign_in = client.get("/sign-in")
    client.post(
        "/sign-in",
        data={"email": victim, "password": NEW_PASSWORD, "csrf_token": _page_token(sign_in)},
    )
    home = client.get("/console")
    assert home.status_code == 200
    switched = client.post(
        "/console/switch-org", data={"csrf_token": _page_token(home), "organization_id": beta.id}
    )
    assert switched.status_code == 404
    assert "beta" not in _memberships(client, victim)


def test_invite_of_an_existing_account_needs_its_acceptance(client):
    """An existing account joins only after signing in and accepting; the default stays."""
    zeta = make_org(_db(client), "zeta")
    alpha = make_org(_db(client), "alpha")
    person = zeta.emails["Viewer"]
    created = _invite(
        client, _api_sign_in(client, alpha.emails["Owner"]), person, alpha.roles["User"]
    )
    assert _memberships(client, person) == {"zeta": "Viewer"}

    headers = _api_sign_in(client, person)
    assert client.get("/api/auth/me").json()["organizationId"] == zeta.id
    mine = client.get("/api/auth/invitations").json()
    assert [(item["id"], item["organizationName"], item["roleName"]) for item in mine] == [
        (created.json()["id"], "Alpha", "User")
    ]
    accepted = client.post(f"/api/auth/invitations/{created.json()['id']}/accept", headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert _memberships(client, person) == {"alpha": "User", "zeta": "Viewer"}
    # Accepting did not move this session, and the next sign-in starts in zeta again
    # (alphabetically "alpha" would come first).
    assert client.get("/api/auth/me").json()["organizationId"] == zeta.id
    _api_sign_in(client, person)
    assert client.get("/api/auth/me").json()["organizationId"] == zeta.id
    assert client.get("/api/auth/invitations").json() == []
    assert _actions(client, alpha.id)[-2:] == ["invitation.created", "invitation.accepted"]


def test_existing_account_accepts_through_the_console_and_by_link(client):
    """The console lists the account's invitations; the link's page accepts once signed in."""
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    person = alpha.emails["User"]
    first = _invite(
        client, _api_sign_in(client, beta.emails["Owner"]), person, beta.roles["Viewer"]
    )
    token = _token_of(first.json()["link"])

    client.cookies.clear()
    anonymous = client.get(f"/invitation?token={token}")
    assert "Sign in to accept" in anonymous.text
    assert "/sign-in?next=%2Finvitation%3Ftoken%3D" in anonymous.text

    _api_sign_in(client, person)
    listing = client.get("/console/invitations")
    assert listing.status_code == 200
    assert "Beta" in listing.text
    page = client.get(f"/invitation?token={token}")
    assert "Accept and join" in page.text
    done = client.post(
        "/invitation/accept",
        data={"csrf_token": _page_token(page), "token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert _memberships(client, person) == {"alpha": "User", "beta": "Viewer"}
    assert client.get(f"/invitation?token={token}").status_code == 403


def test_invite_response_does_not_reveal_whether_an_account_exists(client):
    """Inviting a new address and an existing account answer alike (API, page, audit)."""
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    headers = _api_sign_in(client, alpha.emails["Owner"])
    fresh = _invite(client, headers, "nobody@outside.example.com", alpha.roles["User"], "Same")
    existing = _invite(client, headers, beta.emails["User"], alpha.roles["User"], "Same")
    assert fresh.status_code == existing.status_code == 201
    assert fresh.headers["cache-control"] == existing.headers["cache-control"] == "no-store"

    def shape(body):
        varying = {"id", "email", "link", "createdAt", "expiresAt"}
        return {key: (None if key in varying else value) for key, value in body.items()}

    assert shape(fresh.json()) == shape(existing.json())
    assert LINK.match(fresh.json()["link"])
    assert LINK.match(existing.json()["link"])
    with _db(client).session() as session:
        changes = {
            row.target_id: row.changes
            for row in session.scalars(
                select(AuditLog).where(AuditLog.action == "invitation.created")
            )
        }
    assert set(changes[fresh.json()["id"]]) == set(changes[existing.json()["id"]])
    assert changes[fresh.json()["id"]]["role_id"] == changes[existing.json()["id"]]["role_id"]

    # The console page: the same words, whoever the address is.
    pages = []
    for email in ("someone.else@outside.example.com", beta.emails["Viewer"]):
        client.cookies.clear()
        _api_sign_in(client, alpha.emails["Owner"])
        members = client.get("/console/members")
        page = client.post(
            "/console/members/invite",
            data={
                "csrf_token": _page_token(members),
                "email": email,
                "name": "Same",
                "role_id": alpha.roles["User"],
            },
        )
        assert page.status_code == 200
        section = page.text.split('id="invited-title"', 1)[1].split("</section>", 1)[0]
        pages.append(LINK.sub("LINK", section.replace(email, "EMAIL")))
    assert pages[0] == pages[1]


def test_revoked_expired_declined_and_used_invitations_grant_nothing(client):
    """Every link that is no longer pending is refused, on the page and through the API."""
    alpha = make_org(_db(client), "alpha")
    headers = _api_sign_in(client, alpha.emails["Owner"])
    revoked = _invite(client, headers, "revoked@outside.example.com", alpha.roles["User"]).json()
    expired = _invite(client, headers, "expired@outside.example.com", alpha.roles["User"]).json()
    used = _invite(client, headers, "used@outside.example.com", alpha.roles["User"]).json()
    pending = client.get("/api/invitations", headers=headers).json()
    assert {item["id"] for item in pending} == {revoked["id"], expired["id"], used["id"]}
    assert all("link" not in item for item in pending)
    assert client.delete(f"/api/invitations/{revoked['id']}", headers=headers).status_code == 200
    again = client.delete(f"/api/invitations/{revoked['id']}", headers=headers)
    assert again.status_code == 409
    with _db(client).write_session() as session:
        session.get(Invitation, expired["id"]).expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/api/invitations", headers=headers).json()[0]["id"] == used["id"]
    assert _create_account_through_link(client, _token_of(used["link"])).status_code == 303

    for item, why in ((revoked, "not valid"), (expired, "expired"), (used, "not valid")):
        token = _token_of(item["link"])
        client.cookies.clear()
        page = client.get(f"/invitation?token={token}")
        assert page.status_code == 403, item
        assert why in page.text
        api = client.post(
            "/api/invitations/accept", json={"token": token, "password": NEW_PASSWORD}
        )
        assert api.status_code == 403, api.text
    assert _memberships(client, "revoked@outside.example.com") == {}
    assert _memberships(client, "expired@outside.example.com") == {}
    assert _actions(client, alpha.id).count("invitation.revoked") == 1


def test_declining_ends_the_invitation(client):
    """A declined invitation is gone from the list, its link grants nothing, one audit row."""
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    person = beta.emails["User"]
    created = _invite(
        client, _api_sign_in(client, alpha.emails["Owner"]), person, alpha.roles["User"]
    )
    headers = _api_sign_in(client, person)
    declined = client.post(f"/api/auth/invitations/{created.json()['id']}/decline", headers=headers)
    assert declined.status_code == 200
    assert client.get("/api/auth/invitations").json() == []
    by_link = client.post(
        "/api/auth/invitations/accept",
        json={"token": _token_of(created.json()["link"])},
        headers=headers,
    )
    assert by_link.status_code == 403
    assert _memberships(client, person) == {"beta": "User"}
    assert _actions(client, alpha.id)[-1] == "invitation.declined"


def test_another_organizations_invitation_ids_are_refused(client):
    """Revoking, accepting or declining an id of another tenant (or person) is a 404."""
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    foreign = _invite(
        client,
        _api_sign_in(client, alpha.emails["Owner"]),
        beta.emails["User"],
        alpha.roles["User"],
    ).json()
    headers = _api_sign_in(client, beta.emails["Owner"])
    assert client.delete(f"/api/invitations/{foreign['id']}", headers=headers).status_code == 404
    # Beta's Owner is not the invited person: the id is not theirs to accept.
    assert (
        client.post(f"/api/auth/invitations/{foreign['id']}/accept", headers=headers).status_code
        == 404
    )
    by_link = client.post(
        "/api/auth/invitations/accept", json={"token": _token_of(foreign["link"])}, headers=headers
    )
    assert by_link.status_code == 403
    page = client.get("/console/members")
    revoke = client.post(
        f"/console/members/invitations/{foreign['id']}/revoke",
        data={"csrf_token": _page_token(page)},
    )
    assert revoke.status_code == 404
    with _db(client).session() as session:
        row = session.get(Invitation, foreign["id"])
        assert (row.revoked_at, row.accepted_at, row.declined_at) == (None, None, None)
    assert "invitation.revoked" not in _actions(client, alpha.id)


def test_weaker_role_cannot_invite_or_revoke_above_itself(client):
    """A Manager cannot invite into Admin (API 403, console 409) nor revoke such an invite."""
    org = make_org(_db(client), "acme", model="enterprise")
    owner = _api_sign_in(client, org.emails["Owner"])
    admin_invite = _invite(client, owner, "boss@outside.example.com", org.roles["Admin"]).json()
    manager = _api_sign_in(client, org.emails["Manager"])
    refused = client.post(
        "/api/invitations",
        json={"email": "x@outside.example.com", "name": "X", "roleId": org.roles["Admin"]},
        headers=manager,
    )
    assert refused.status_code == 403
    assert "above your own" in refused.json()["message"]
    assert (
        client.delete(f"/api/invitations/{admin_invite['id']}", headers=manager).status_code == 403
    )
    assert _invite(client, manager, "helper@outside.example.com", org.roles["User"])
    members = client.get("/console/members")
    page = client.post(
        "/console/members/invite",
        data={
            "csrf_token": _page_token(members),
            "email": "y@outside.example.com",
            "name": "Y",
            "role_id": org.roles["Owner"],
        },
    )
    assert page.status_code == 409
    assert "above your own" in page.text
    viewer = _api_sign_in(client, org.emails["Viewer"])
    assert (
        client.post(
            "/api/invitations",
            json={"email": "z@outside.example.com", "name": "Z", "roleId": org.roles["Viewer"]},
            headers=viewer,
        ).status_code
        == 403
    )


def test_invitation_forms_refuse_a_missing_csrf_token(client):
    """Every invitation form (invite, revoke, accept, decline, create account) needs its token."""
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    headers = _api_sign_in(client, alpha.emails["Owner"])
    new = _invite(client, headers, "new@outside.example.com", alpha.roles["User"]).json()
    existing = _invite(client, headers, beta.emails["User"], alpha.roles["User"]).json()
    client.cookies.clear()
    _api_sign_in(client, alpha.emails["Owner"])
    posts = [
        (
            "/console/members/invite",
            {"email": "n@outside.example.com", "name": "N", "role_id": alpha.roles["User"]},
        ),
        (f"/console/members/invitations/{new['id']}/revoke", {}),
    ]
    for path, data in posts:
        assert client.post(path, data=data).status_code == 403, path
    _api_sign_in(client, beta.emails["User"])
    token = _token_of(existing["link"])
    for path, data in [
        (f"/console/invitations/{existing['id']}/accept", {}),
        (f"/console/invitations/{existing['id']}/decline", {}),
        ("/invitation/accept", {"token": token}),
        ("/invitation/decline", {"token": token}),
    ]:
        assert client.post(path, data=data).status_code == 403, path
    client.cookies.clear()
    client.get(f"/invitation?token={_token_of(new['link'])}")
    created = client.post(
        "/invitation",
        data={
            "token": _token_of(new["link"]),
            "name": "N",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert created.status_code == 403
    assert _memberships(client, beta.emails["User"]) == {"beta": "User"}
    assert _memberships(client, "new@outside.example.com") == {}
    with _db(client).session() as session:
        assert session.get(Invitation, new["id"]).revoked_at is None


def test_new_account_through_the_api_joins_only_that_organization(client):
    """The public accept route creates the account for a new address; once only."""
    alpha = make_org(_db(client), "alpha")
    created = _invite(
        client,
        _api_sign_in(client, alpha.emails["Owner"]),
        "api@outside.example.com",
        alpha.roles["Viewer"],
    ).json()
    client.cookies.clear()
    body = {"token": _token_of(created["link"]), "name": "Api Person", "password": NEW_PASSWORD}
    done = client.post("/api/invitations/accept", json=body)
    assert done.status_code == 200, done.text
    assert _memberships(client, "api@outside.example.com") == {"alpha": "Viewer"}
    assert client.post("/api/invitations/accept", json=body).status_code == 403
    with _db(client).session() as session:
        user_created = session.scalars(
            select(AuditLog).where(AuditLog.action == "user.created")
        ).all()
        assert len(user_created) == 1
        assert session.scalars(select(Membership)).all()


def test_a_new_invitation_replaces_the_pending_one(client):
    """Inviting the same address again revokes the earlier link of that organization."""
    alpha = make_org(_db(client), "alpha")
    headers = _api_sign_in(client, alpha.emails["Owner"])
    first = _invite(client, headers, "twice@outside.example.com", alpha.roles["User"]).json()
    second = _invite(client, headers, "twice@outside.example.com", alpha.roles["Viewer"]).json()
    assert [item["id"] for item in client.get("/api/invitations", headers=headers).json()] == [
        second["id"]
    ]
    client.cookies.clear()
    assert client.get(f"/invitation?token={_token_of(first['link'])}").status_code == 403
    assert client.get(f"/invitation?token={_token_of(second['link'])}").status_code == 200
