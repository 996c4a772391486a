"""The input rules of member, role, delegation and token use cases live in their commands."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from paulyops.services.auth import delegations, invitations, members, roles, tokens
from paulyops.services.auth.permissions import MAX_DELEGATION_DAYS
from paulyops.services.commands import CommandError, parse


def _fields(err: CommandError) -> list[str]:
    return [item.field for item in err.errors]


def test_token_expiry_in_the_past_is_refused_naming_the_field():
    """A token that would be expired at creation is refused, naming ``expiresAt``."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(CommandError) as caught:
        parse(tokens.CreateToken, {"name": "old", "permissions": ["org:read"], "expiresAt": past})
    assert _fields(caught.value) == ["expiresAt"]
    assert "in the future" in caught.value.errors[0].message


@pytest.mark.parametrize("name", ["", "   ", "x" * (tokens.TOKEN_NAME_MAX + 1)])
def test_token_name_length_is_the_commands(name):
    """A blank or over-long token name is refused by the command; its bound is in the schema."""
    with pytest.raises(CommandError) as caught:
        parse(tokens.CreateToken, {"name": name, "permissions": ["org:read"]})
    assert _fields(caught.value) == ["name"]
    schema = tokens.CreateToken.model_json_schema()["properties"]["name"]
    assert schema["maxLength"] == tokens.TOKEN_NAME_MAX


def test_unknown_permission_is_refused_the_same_way_everywhere():
    """Tokens, roles and delegations refuse an unknown permission with one message."""
    soon = datetime.now(UTC) + timedelta(days=1)
    bodies = [
        (tokens.CreateToken, {"name": "t", "permissions": ["no:such"]}),
        (roles.CreateRole, {"name": "r", "permissions": ["no:such"]}),
        (roles.UpdateRolePermissions, {"permissions": ["no:such"]}),
        (delegations.Delegate, {"toUserId": "u", "permissions": ["no:such"], "expiresAt": soon}),
    ]
    messages = set()
    for model, body in bodies:
        with pytest.raises(CommandError) as caught:
            parse(model, body)
        assert _fields(caught.value) == ["permissions"]
        messages.add(caught.value.errors[0].message)
    assert len(messages) == 1
    assert "no:such" in messages.pop()


@pytest.mark.parametrize("days", [-1, MAX_DELEGATION_DAYS + 1])
def test_delegation_expiry_bounds(days):
    """A delegation ends in the future and within the longest allowed."""
    when = datetime.now(UTC) + timedelta(days=days)
    with pytest.raises(CommandError) as caught:
        parse(
            delegations.Delegate,
            {"toUserId": "u", "permissions": ["audit:read"], "expiresAt": when},
        )
    assert _fields(caught.value) == ["expiresAt"]
    assert f"within the next {MAX_DELEGATION_DAYS} days" in caught.value.errors[0].message


def test_a_last_day_means_its_end_capped_at_the_longest_delegation():
    """The console's last day becomes 23:59:59 UTC that day, never past the limit."""
    soon = date.today() + timedelta(days=2)
    command = parse(
        delegations.Delegate,
        {"toUserId": "u", "permissions": ["audit:read"], "expiresAt": soon.isoformat()},
    )
    assert command.expires_at == datetime(soon.year, soon.month, soon.day, 23, 59, 59, tzinfo=UTC)
    far = (date.today() + timedelta(days=10 * MAX_DELEGATION_DAYS)).isoformat()
    capped = parse(
        delegations.Delegate, {"toUserId": "u", "permissions": ["audit:read"], "expiresAt": far}
    )
    assert capped.expires_at <= datetime.now(UTC) + timedelta(days=MAX_DELEGATION_DAYS)


def test_invite_and_new_user_share_the_account_rules():
    """An invitation and the operator's new user refuse the same bad address the same way."""
    errors = []
    for model in (invitations.Invite, members.NewUser):
        body = {"email": "two@at@example.com", "name": "X"}
        if model is invitations.Invite:
            body["roleId"] = "role_x"
        with pytest.raises(CommandError) as caught:
            parse(model, body)
        errors.append([(item.field, item.message) for item in caught.value.errors])
    assert errors[0] == errors[1]
    assert errors[0][0][0] == "email"


def test_a_form_day_is_the_end_of_that_day_and_blank_is_never():
    """A token form's date means its last second (UTC); an empty date means no expiry."""
    soon = date.today() + timedelta(days=3)
    dated = parse(
        tokens.CreateToken,
        {"name": "t", "permissions": ["org:read"], "expiresAt": soon.isoformat()},
    )
    assert dated.expires_at == datetime(soon.year, soon.month, soon.day, 23, 59, 59, tzinfo=UTC)
    never = parse(tokens.CreateToken, {"name": "t", "permissions": ["org:read"], "expiresAt": ""})
    assert never.expires_at is None
    with pytest.raises(CommandError) as caught:
        parse(
            tokens.CreateToken,
            {"name": "t", "permissions": ["org:read"], "expiresAt": "2026-13-45"},
        )
    assert _fields(caught.value) == ["expiresAt"]
