"""Second attack round on invitations, links, reauth and the setup token.

Each test is one attempt an attacker with an account in one of two organizations could
make (any role), and states the defence that must hold. Holes found in this round carry
their regression test here too (named in the docstring).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from paulyops.core.db.models import Invitation
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, invitations
from tests.factories import HASHING, make_org
from tests.web.api.test_invitations import (
    NEW_PASSWORD,
    _api_sign_in,
    _db,
    _invite,
    _memberships,
    _page_token,
    _token_of,
)


def _postgres_only(client) -> None:
    # SQLite serializes every write transaction at BEGIN (see Database.write_session), so
    # two requests never both read a row as pending and then write it; PostgreSQL does.
    if _db(client).engine.dialect.name != "postgresql":
        pytest.skip("the interleaving needs concurrent writers (PostgreSQL)")


def _user_row(session, email):
    user = accounts.find_user(session, email)
    assert user is not None
    return user


# --- races on one invitation ---------------------------------------------------------------


def _meanwhile(monkeypatch, name, action):
    """Run ``action`` (its own committed transaction) right after ``invitations.<name>``.

    That is the moment a concurrent request can commit: this request has read the
    invitation as pending and not written yet.
    """
    original = getattr(invitations, name)

    def interleaved(*args, **kwargs):
        found = original(*args, **kwargs)
        monkeypatch.setattr(invitations, name, original)
        action()
        return found

    monkeypatch.setattr(invitations, name, interleaved)


def _revoke(client, org_id, owner_id, invitation_id):
    from paulyops.core.db.scoped import OrgScope

    def action():
        with _db(client).write_session() as session:
            invitations.revoke_invitation(
                OrgScope(session, org_id),
                grant=None,
                invitation_id=invitation_id,
                actor=Actor("user", owner_id, None),
            )

    return action


def test_accept_after_a_concurrent_revoke_is_refused(client, monkeypatch):
    """An accept that read the invitation as pending loses to a revoke committed meanwhile.

    Regression: accepting wrote over the row it had read, so a revoke committed between
    the read and the write was ignored and the person joined anyway.
    """
    _postgres_only(client)
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    created = _invite(
        client,
        _api_sign_in(client, alpha.emails["Owner"]),
        beta.emails["User"],
        alpha.roles["Admin"],
    ).json()
    headers = _api_sign_in(client, beta.emails["User"])
    _meanwhile(
        monkeypatch, "_for_user", _revoke(client, alpha.id, alpha.members["Owner"], created["id"])
    )
    answer = client.post(f"/api/auth/invitations/{created['id']}/accept", headers=headers)
    assert answer.status_code == 409, answer.text
    assert "revoked" in answer.json()["message"]
    assert _memberships(client, beta.emails["User"]) == {"beta": "User"}
    with _db(client).session() as session:
        row = session.get(Invitation, created["id"])
        assert row.revoked_at is not None
        assert row.accepted_at is None


def test_two_accepts_of_one_invitation_make_one_membership(client, monkeypatch):
    """The same person accepting twice at once (two tabs): one membership, then a 409."""
    _postgres_only(client)
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    created = _invite(
        client,
        _api_sign_in(client, alpha.emails["Owner"]),
        beta.emails["User"],
        alpha.roles["User"],
    ).json()
    headers = _api_sign_in(client, beta.emails["User"])

    def other_tab():
        with _db(client).write_session() as session:
            user = _user_row(session, beta.emails["User"])
            invitations.accept_invitation(
                session, user=user, actor=Actor("user", user.id, None), invitation_id=created["id"]
            )

    _meanwhile(monkeypatch, "_for_user", other_tab)
    answer = client.post(f"/api/auth/invitations/{created['id']}/accept", headers=headers)
    assert answer.status_code == 409, answer.text
    assert _memberships(client, beta.emails["User"]) == {"alpha": "User", "beta": "User"}


def test_decline_after_a_concurrent_accept_keeps_the_accept(client, monkeypatch):
    """Accept and decline of one invitation at once: the first committed is the answer.

    Regression: the decline overwrote an accept committed meanwhile, leaving a member
    whose invitation says declined.
    """
    _postgres_only(client)
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    created = _invite(
        client,
        _api_sign_in(client, alpha.emails["Owner"]),
        beta.emails["User"],
        alpha.roles["User"],
    ).json()
    headers = _api_sign_in(client, beta.emails["User"])

    def accept_elsewhere():
        with _db(client).write_session() as session:
            user = _user_row(session, beta.emails["User"])
            invitations.accept_invitation(
                session, user=user, actor=Actor("user", user.id, None), invitation_id=created["id"]
            )

    _meanwhile(monkeypatch, "_for_user", accept_elsewhere)
    answer = client.post(f"/api/auth/invitations/{created['id']}/decline", headers=headers)
    assert answer.status_code == 409, answer.text
    with _db(client).session() as session:
        row = session.get(Invitation, created["id"])
        assert row.accepted_at is not None
        assert row.declined_at is None


def test_two_uses_of_a_new_address_link_create_one_account(client, monkeypatch):
    """Two requests using one new-address link at once: one account, one membership, a 409."""
    _postgres_only(client)
    alpha = make_org(_db(client), "alpha")
    created = _invite(
        client,
        _api_sign_in(client, alpha.emails["Owner"]),
        "race@outside.example.com",
        alpha.roles["Viewer"],
    ).json()
    token = _token_of(created["link"])

    def first_use():
        with _db(client).write_session() as session:
            invitations.accept_as_new_account(
                session,
                hashing=HASHING,
                command=invitations.AcceptAsNewAccount(
                    token=token, name="First", password=NEW_PASSWORD
                ),
                address=None,
            )

    _meanwhile(monkeypatch, "_by_token", first_use)
    client.cookies.clear()
    body = {"token": token, "name": "Second", "password": NEW_PASSWORD + "x"}
    answer = client.post("/api/invitations/accept", json=body)
    assert answer.status_code == 409, answer.text
    assert _memberships(client, "race@outside.example.com") == {"alpha": "Viewer"}
    with _db(client).session() as session:
        assert _user_row(session, "race@outside.example.com").name == "First"


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Nul\x00Byte"),
        ("name", "Right\u202eto-left override"),
        ("name", "Isolate\u2066x\u2069"),
        ("name", "Bell\x07"),
        ("email", "nul\x00@outside.example.com"),
        ("email", "zero\u200bwidth@outside.example.com"),
        ("email", "bidi\u202e@outside.example.com"),
        ("email", "tab\there@outside.example.com"),
        ("email", "two@at@outside.example.com"),
        ("email", "new\nline@outside.example.com"),
    ],
)
def test_invite_refuses_control_and_invisible_characters(client, field, value):
    """Control, bidi and zero-width characters in a name or address are a 422 naming it.

    Regression: they were stored (a NUL even failed on PostgreSQL with a 500), so a
    member list could show an address that looks like another person's.
    """
    alpha = make_org(_db(client), "alpha")
    headers = _api_sign_in(client, alpha.emails["Owner"])
    body = {"email": "fine@outside.example.com", "name": "Fine", "roleId": alpha.roles["User"]}
    body[field] = value
    answer = client.post("/api/invitations", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == [field]
    assert client.get("/api/invitations", headers=headers).json() == []


def test_html_in_an_invited_name_is_shown_as_text(client):
    """A name with markup is escaped on the members page and on the link's page."""
    alpha = make_org(_db(client), "alpha")
    headers = _api_sign_in(client, alpha.emails["Owner"])
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    created = _invite(
        client, headers, "markup@outside.example.com", alpha.roles["User"], name=hostile
    ).json()
    members = client.get("/console/members")
    assert members.status_code == 200
    assert "<script>alert(1)" not in members.text
    assert "&lt;script&gt;alert(1)" in members.text
    client.cookies.clear()
    page = client.get(f"/invitation?token={_token_of(created['link'])}")
    assert "<script>alert(1)" not in page.text
    assert 'onerror="alert' not in page.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{", 422),
        ("[]", 422),
        ('{"email": 5, "name": [], "roleId": {}}', 422),
        ('{"email": "' + "a" * 400 + '@x.example.com", "name": "N", "roleId": "r"}', 422),
        ('{"email": "a@x.example.com", "name": "' + "n" * 5000 + '", "roleId": "r"}', 422),
        ("[" * 5000 + "]" * 5000, 422),
    ],
)
def test_malformed_invite_bodies_get_the_json_error_shape(client, body, status):
    """Broken, mistyped, oversized or deeply nested JSON is a 4xx in the one error shape."""
    alpha = make_org(_db(client), "alpha")
    headers = {**_api_sign_in(client, alpha.emails["Owner"]), "Content-Type": "application/json"}
    answer = client.post("/api/invitations", content=body, headers=headers)
    assert answer.status_code == status, answer.text[:300]
    assert answer.json()["success"] is False
    assert client.get("/api/invitations", headers=headers).json() == []


def test_a_huge_body_is_refused_before_it_is_read(client):
    """A body above the configured limit is a 413, for the public accept route too."""
    limit = client.app.state.instance.settings.max_body_bytes
    blob = '{"token": "x", "password": "' + "p" * (limit + 10) + '"}'
    answer = client.post(
        "/api/invitations/accept", content=blob, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["success"] is False


# --- rank and permission rules for invitations ----------------------------------------------


def _custom_role(client, owner_headers, name, permissions):
    made = client.post(
        "/api/roles", json={"name": name, "permissions": permissions}, headers=owner_headers
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _user_permissions():
    from paulyops.services.auth.permissions import role_templates

    return sorted(next(t for t in role_templates("enterprise") if t.name == "User").permissions)


def test_nobody_revokes_an_invitation_they_could_not_have_made(client):
    """A Manager-ranked role without ``audit:read`` cannot revoke an invite into one with it.

    Regression: revoking checked the rank only, so a member whose custom role ranked as
    high as the invitation's, but lacked some of its permissions, could cancel it, while
    inviting into that role was refused.
    """
    org = make_org(_db(client), "acme", model="enterprise")
    owner = _api_sign_in(client, org.emails["Owner"])
    narrow = _custom_role(client, owner, "Narrow", [*_user_permissions(), "members:invite"])
    auditor = _custom_role(client, owner, "Auditor", [*_user_permissions(), "audit:read"])
    moved = client.patch(
        f"/api/members/{org.memberships['target']}", json={"roleId": narrow}, headers=owner
    )
    assert moved.status_code == 200, moved.text
    pending = _invite(client, owner, "auditor@outside.example.com", auditor).json()
    target = _api_sign_in(client, f"target@{org.slug}.example.com")
    refused = client.post(
        "/api/invitations",
        json={"email": "other@outside.example.com", "name": "O", "roleId": auditor},
        headers=target,
    )
    assert refused.status_code == 403, refused.text
    revoke = client.delete(f"/api/invitations/{pending['id']}", headers=target)
    assert revoke.status_code == 403, revoke.text
    assert "audit:read" in revoke.json()["message"]
    with _db(client).session() as session:
        assert session.get(Invitation, pending["id"]).revoked_at is None
    # Into its own kind of role it may still invite, and revoke what it made.
    mine = _invite(client, target, "mine@outside.example.com", narrow).json()
    assert client.delete(f"/api/invitations/{mine['id']}", headers=target).status_code == 200


# --- the setup token after setup -----------------------------------------------------------


def _fresh_setup_token(client):
    from paulyops.services.actor import SYSTEM
    from paulyops.services.onboarding.firstrun import ensure_setup_token

    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    assert token is not None
    return token


def test_no_setup_token_provisions_after_setup(client):
    """Once an organization exists, neither the used token nor one minted before it works.

    Both the API (a second organization) and the unlock page (a wizard session) refuse.
    """
    from tests.web.api.test_onboarding_api import BRIEF_BODY

    early = _fresh_setup_token(client)
    used = _fresh_setup_token(client)
    first = client.post(
        "/api/onboarding/setup", json=BRIEF_BODY, headers={"Authorization": f"Bearer {used}"}
    )
    assert first.status_code == 201, first.text
    other = {**BRIEF_BODY, "organization": {**BRIEF_BODY["organization"], "name": "Evil Co"}}
    other["owner"] = {"email": "evil@evil.example.com", "name": "Evil"}
    for token in (used, early):
        again = client.post(
            "/api/onboarding/setup", json=other, headers={"Authorization": f"Bearer {token}"}
        )
        assert again.status_code in (401, 403), again.text
    client.cookies.clear()
    assert client.get("/setup", follow_redirects=False).status_code in (302, 303)
    unlock = client.get("/sign-in")
    for token in (used, early):
        page = client.post(
            "/setup",
            data={"csrf_token": _page_token(unlock), "token": token},
            follow_redirects=False,
        )
        assert page.status_code == 403, page.text[:300]
        assert "already set up" in page.text
    assert client.get("/setup/owner", follow_redirects=False).status_code in (302, 303, 403)
    with _db(client).session() as session:
        from paulyops.core.db.models import Organization

        assert [org.name for org in session.query(Organization).all()] == ["Acme Corp"]


def test_guessing_setup_tokens_is_rate_limited(client):
    """Wrong setup tokens count against the address's sign-in limit: guessing stops (429)."""
    _fresh_setup_token(client)
    statuses = [
        client.post(
            "/api/onboarding/setup",
            json={},
            headers={"Authorization": f"Bearer pos_wrong{attempt:04d}"},
        ).status_code
        for attempt in range(40)
    ]
    assert statuses[0] in (401, 403)
    assert 429 in statuses, statuses


# --- password links --------------------------------------------------------------------------


def test_two_uses_of_one_password_link_set_one_password(client, monkeypatch):
    """A password link used twice at once sets the first password; the second use is a 403.

    Regression: both uses read the link as unused and both wrote, so the later one
    replaced the password the first had just chosen (and its audit row said so twice).
    """
    _postgres_only(client)
    from paulyops.services.auth import passwords
    from tests.web.api.test_onboarding_api import BRIEF_BODY

    made = client.post(
        "/api/onboarding/setup",
        json=BRIEF_BODY,
        headers={"Authorization": f"Bearer {_fresh_setup_token(client)}"},
    )
    assert made.status_code == 201, made.text
    token = _token_of(made.json()["ownerPasswordLink"])
    original = accounts.set_password

    def interleaved(*args, **kwargs):
        # This use checked the link and chose its password; the other use commits now.
        original(*args, **kwargs)
        monkeypatch.setattr(accounts, "set_password", original)
        with _db(client).write_session() as other:
            passwords.set_password_from_link(
                other,
                passwords.SetPasswordCommand(token=token, password=NEW_PASSWORD),
                hashing=HASHING,
                address=None,
            )

    monkeypatch.setattr(accounts, "set_password", interleaved)
    second = client.post(
        "/api/onboarding/set-password", json={"token": token, "password": NEW_PASSWORD + "-b"}
    )
    assert second.status_code == 403, second.text
    signed_in = client.post(
        "/api/auth/sign-in", json={"email": BRIEF_BODY["owner"]["email"], "password": NEW_PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text


# --- lent and scripted members:invite ---------------------------------------------------------


def _lend(client, org, to_email_key, permissions):
    from datetime import UTC, datetime, timedelta

    admin = _api_sign_in(client, org.emails["Admin"])
    lent = client.post(
        "/api/delegations",
        json={
            "toUserId": org.members[to_email_key],
            "permissions": permissions,
            "expiresAt": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        },
        headers=admin,
    )
    assert lent.status_code == 201, lent.text
    return lent.json()["id"]


def test_a_lent_members_invite_never_invites_beyond_the_delegates_own_role(client):
    """A Viewer lent ``members:invite`` invites into Viewer only; never into a role above,
    nor into a role holding the lent permission itself; after revocation, not at all."""
    org = make_org(_db(client), "acme", model="enterprise")
    delegation = _lend(client, org, "Viewer", ["members:invite"])
    viewer = _api_sign_in(client, org.emails["Viewer"])
    for role in ("User", "Manager", "Admin", "Owner"):
        refused = client.post(
            "/api/invitations",
            json={
                "email": f"{role.lower()}@outside.example.com",
                "name": "N",
                "roleId": org.roles[role],
            },
            headers=viewer,
        )
        assert refused.status_code == 403, (role, refused.text)
    owner = _api_sign_in(client, org.emails["Owner"])
    with_invite = _custom_role(client, owner, "Inviter", ["members:invite", "org:read"])
    above = _invite(client, owner, "above@outside.example.com", org.roles["Manager"]).json()
    viewer = _api_sign_in(client, org.emails["Viewer"])
    refused = client.post(
        "/api/invitations",
        json={"email": "i@outside.example.com", "name": "I", "roleId": with_invite},
        headers=viewer,
    )
    assert refused.status_code == 403, refused.text
    assert client.delete(f"/api/invitations/{above['id']}", headers=viewer).status_code == 403
    assert _invite(client, viewer, "peer@outside.example.com", org.roles["Viewer"])
    admin = _api_sign_in(client, org.emails["Admin"])
    assert client.delete(f"/api/delegations/{delegation}", headers=admin).status_code == 200
    viewer = _api_sign_in(client, org.emails["Viewer"])
    after = client.post(
        "/api/invitations",
        json={"email": "late@outside.example.com", "name": "L", "roleId": org.roles["Viewer"]},
        headers=viewer,
    )
    assert after.status_code == 403, after.text


def test_an_api_token_invites_within_its_own_permissions_and_organization(client):
    """An Admin's token with ``members:invite`` cannot invite into Owner, cannot touch the
    other organization's invitations, and cannot accept or decline anything."""
    alpha = make_org(_db(client), "alpha", model="enterprise")
    beta = make_org(_db(client), "beta", model="enterprise")
    foreign = _invite(
        client,
        _api_sign_in(client, beta.emails["Owner"]),
        "f@outside.example.com",
        beta.roles["User"],
    ).json()
    admin = _api_sign_in(client, alpha.emails["Admin"])
    made = client.post(
        "/api/tokens",
        json={"name": "inviter", "permissions": ["members:invite", "members:read"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    into_owner = client.post(
        "/api/invitations",
        json={"email": "a@outside.example.com", "name": "A", "roleId": alpha.roles["Owner"]},
        headers=bearer,
    )
    assert into_owner.status_code == 403, into_owner.text
    into_foreign_role = client.post(
        "/api/invitations",
        json={"email": "b@outside.example.com", "name": "B", "roleId": beta.roles["Viewer"]},
        headers=bearer,
    )
    assert into_foreign_role.status_code == 422, into_foreign_role.text
    assert client.delete(f"/api/invitations/{foreign['id']}", headers=bearer).status_code == 404
    assert [row["id"] for row in client.get("/api/invitations", headers=bearer).json()] == []
    for path in (
        f"/api/auth/invitations/{foreign['id']}/accept",
        f"/api/auth/invitations/{foreign['id']}/decline",
        "/api/auth/invitations/accept",
    ):
        answer = client.post(path, json={"token": _token_of(foreign["link"])}, headers=bearer)
        assert answer.status_code == 403, (path, answer.text)
    with _db(client).session() as session:
        row = session.get(Invitation, foreign["id"])
        assert row.revoked_at is None
        assert row.accepted_at is None
        assert row.declined_at is None


def test_a_replayed_or_foreign_link_grants_nothing_to_a_signed_in_account(client):
    """A used link replayed by its own account, and a live link used by another account
    (even one that is an Owner elsewhere), are refused and change no membership."""
    alpha = make_org(_db(client), "alpha")
    beta = make_org(_db(client), "beta")
    owner = _api_sign_in(client, alpha.emails["Owner"])
    for_user = _invite(client, owner, beta.emails["User"], alpha.roles["Admin"]).json()
    token = _token_of(for_user["link"])
    intruder = _api_sign_in(client, beta.emails["Owner"])
    taken = client.post("/api/auth/invitations/accept", json={"token": token}, headers=intruder)
    assert taken.status_code == 403, taken.text
    assert "another address" in taken.json()["message"]
    assert _memberships(client, beta.emails["Owner"]) == {"beta": "Owner"}
    person = _api_sign_in(client, beta.emails["User"])
    assert (
        client.post(
            "/api/auth/invitations/accept", json={"token": token}, headers=person
        ).status_code
        == 200
    )
    again = client.post("/api/auth/invitations/accept", json={"token": token}, headers=person)
    assert again.status_code == 403, again.text
    declined = client.post("/api/auth/invitations/decline", json={"token": token}, headers=person)
    assert declined.status_code == 403, declined.text
    assert _memberships(client, beta.emails["User"]) == {"alpha": "Admin", "beta": "User"}


# --- the second-factor rule on the invitation routes -----------------------------------------


def test_second_factor_rule_binds_inviting_on_every_credential_and_the_cache(client):
    """A Manager without TOTP, once the rule is on, can neither list nor make invitations:
    not with a session whose principal was cached before, nor with an earlier API token."""
    from sqlalchemy import update

    from paulyops.core.db import generation
    from paulyops.core.db.models import SecurityConfig

    org = make_org(_db(client), "acme", model="enterprise")
    admin = _api_sign_in(client, org.emails["Admin"])
    made = client.post(
        "/api/tokens", json={"name": "inv", "permissions": ["members:invite"]}, headers=admin
    )
    assert made.status_code == 201, made.text
    manager = _api_sign_in(client, org.emails["Manager"])
    assert client.get("/api/invitations").status_code == 200  # cached now
    with _db(client).write_session() as session:
        session.execute(
            update(SecurityConfig)
            .where(SecurityConfig.organization_id == org.id)
            .values(require_admin_2fa=True)
        )
        generation.bump(session.connection())
    assert client.get("/api/invitations").status_code == 403
    body = {"email": "n@outside.example.com", "name": "N", "roleId": org.roles["Viewer"]}
    assert client.post("/api/invitations", json=body, headers=manager).status_code == 403
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    refused = client.post("/api/invitations", json=body, headers=bearer)
    assert refused.status_code == 403, refused.text
    assert "second factor" in refused.json()["message"]
    with _db(client).session() as session:
        assert session.scalars(select(Invitation)).all() == []


# --- an invitation is only as good as its inviter ----------------------------------------------


def test_a_removed_inviters_pending_link_no_longer_joins(client):
    """An Admin invites an alias into Admin, is removed, then uses the link: refused.

    Regression: the link was the inviter's own (no mail server), so a removed Admin kept
    a way back in for seven days; a demoted one kept a link into the rank they lost.
    """
    org = make_org(_db(client), "acme", model="enterprise")
    admin = _api_sign_in(client, org.emails["Admin"])
    backdoor = _invite(client, admin, "alias@outside.example.com", org.roles["Admin"]).json()
    owner = _api_sign_in(client, org.emails["Owner"])
    removed = client.delete(f"/api/members/{org.memberships['Admin']}", headers=owner)
    assert removed.status_code == 200, removed.text
    client.cookies.clear()
    body = {"token": _token_of(backdoor["link"]), "name": "Alias", "password": NEW_PASSWORD}
    answer = client.post("/api/invitations/accept", json=body)
    assert answer.status_code == 403, answer.text
    assert "inviter" in answer.json()["message"]
    assert client.get(f"/invitation?token={_token_of(backdoor['link'])}").status_code == 403
    assert _memberships(client, "alias@outside.example.com") == {}


def test_a_demoted_inviters_link_into_the_lost_rank_no_longer_joins(client):
    """A Manager's invitation into Manager dies when the Manager becomes a User; an existing
    account signed in with its own password is refused too."""
    alpha = make_org(_db(client), "alpha", model="enterprise")
    beta = make_org(_db(client), "beta")
    manager = _api_sign_in(client, alpha.emails["Manager"])
    to_new = _invite(client, manager, "new@outside.example.com", alpha.roles["Manager"]).json()
    to_existing = _invite(client, manager, beta.emails["User"], alpha.roles["Manager"]).json()
    owner = _api_sign_in(client, alpha.emails["Owner"])
    demoted = client.patch(
        f"/api/members/{alpha.memberships['Manager']}",
        json={"roleId": alpha.roles["User"]},
        headers=owner,
    )
    assert demoted.status_code == 200, demoted.text
    client.cookies.clear()
    body = {"token": _token_of(to_new["link"]), "name": "New", "password": NEW_PASSWORD}
    assert client.post("/api/invitations/accept", json=body).status_code == 403
    person = _api_sign_in(client, beta.emails["User"])
    by_id = client.post(f"/api/auth/invitations/{to_existing['id']}/accept", headers=person)
    assert by_id.status_code == 403, by_id.text
    assert _memberships(client, beta.emails["User"]) == {"beta": "User"}
    # Declining a dead offer is still the person's right.
    declined = client.post(f"/api/auth/invitations/{to_existing['id']}/decline", headers=person)
    assert declined.status_code == 200, declined.text


def test_an_invitation_made_with_a_lent_permission_ends_with_the_delegation(client):
    """A Viewer lent ``members:invite`` invites a friend; the delegation is revoked; the
    friend's link no longer joins. An operator's invitation (CLI, no inviter) still does."""
    org = make_org(_db(client), "acme", model="enterprise")
    delegation = _lend(client, org, "Viewer", ["members:invite"])
    viewer = _api_sign_in(client, org.emails["Viewer"])
    friend = _invite(client, viewer, "friend@outside.example.com", org.roles["Viewer"]).json()
    admin = _api_sign_in(client, org.emails["Admin"])
    assert client.delete(f"/api/delegations/{delegation}", headers=admin).status_code == 200
    client.cookies.clear()
    body = {"token": _token_of(friend["link"]), "name": "Friend", "password": NEW_PASSWORD}
    assert client.post("/api/invitations/accept", json=body).status_code == 403
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.actor import SYSTEM

    with _db(client).write_session() as session:
        made = invitations.create_invitation(
            OrgScope(session, org.id),
            grant=None,
            command=invitations.Invite(
                email="operator-made@outside.example.com", name="Op", role_id=org.roles["Admin"]
            ),
            public_url="http://127.0.0.1",
            actor=SYSTEM,
        )
        link = made.link
    body = {"token": _token_of(link), "name": "Op", "password": NEW_PASSWORD}
    assert client.post("/api/invitations/accept", json=body).status_code == 200
    assert _memberships(client, "operator-made@outside.example.com") == {"acme": "Admin"}


@pytest.mark.parametrize(
    ("email", "name"),
    [
        ("jose@outside.example.com", "José Ñúñez-Ålund"),
        ("zoe@exämple.example.com", "Zoë 李小龙"),
        ("amal@outside.example.com", "أمل\u200f الخطيب"),
        ("family@outside.example.com", "Family 👩\u200d👩\u200d👧"),
    ],
)
def test_ordinary_unicode_names_and_addresses_are_still_welcome(client, email, name):
    """Accents, CJK, right-to-left text with its marks, and emoji joiners are fine."""
    alpha = make_org(_db(client), "alpha")
    headers = _api_sign_in(client, alpha.emails["Owner"])
    created = _invite(client, headers, email, alpha.roles["User"], name=name).json()
    assert created["name"] == name
    assert created["email"] == email


def test_a_link_whose_stored_address_is_now_refused_stays_unused(client):
    """An invitation stored before addresses were checked this strictly: using its link is
    a 422 that writes nothing (the invitation is not burnt without an account)."""
    from sqlalchemy import update

    alpha = make_org(_db(client), "alpha")
    created = _invite(
        client,
        _api_sign_in(client, alpha.emails["Owner"]),
        "legacy@outside.example.com",
        alpha.roles["User"],
    ).json()
    with _db(client).write_session() as session:
        session.execute(
            update(Invitation)
            .where(Invitation.id == created["id"])
            .values(email="legacy\u200b@outside.example.com")
        )
    client.cookies.clear()
    body = {"token": _token_of(created["link"]), "name": "Legacy", "password": NEW_PASSWORD}
    answer = client.post("/api/invitations/accept", json=body)
    assert answer.status_code == 422, answer.text
    form = client.get(f"/invitation?token={_token_of(created['link'])}")
    page = client.post(
        "/invitation",
        data={
            "csrf_token": _page_token(form),
            "token": _token_of(created["link"]),
            "name": "Legacy",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert page.status_code == 422, page.text[:300]
    with _db(client).session() as session:
        assert session.get(Invitation, created["id"]).accepted_at is None
