"""The sign-in, password and second-factor use cases: one function each, audited.

They are reached here as a front door reaches them: a command model, the scope or session
and the actor; each writes its own audit row.
"""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select, update

from paulyops.core.db.models import AuditLog, SecurityConfig, User
from paulyops.core.errors import AuthenticationError, PermissionDeniedError
from paulyops.services.actor import Actor
from paulyops.services.auth import passwords, second_factor, signin
from paulyops.services.commands import CommandError, parse
from tests.factories import PASSWORD, make_org

NEW_PASSWORD = "an-unusual-and-long-passphrase-77"


@pytest.fixture
def instance(client):
    """The running instance of a test app (its database, hashing, limiter, CSRF store)."""
    return client.app.state.instance


def _sign_in(instance, session, email, password=PASSWORD):
    return signin.sign_in(
        session,
        signin.SignInCommand(email=email, password=password),
        hashing=instance.hashing,
        limiter=instance.limiter,
        csrf=instance.csrf,
        actor=Actor("anonymous", None, "192.0.2.7"),
    )


def _actions(session, action):
    rows = session.scalars(select(AuditLog).where(AuditLog.action == action)).all()
    return [(row.actor_type, row.outcome) for row in rows]


def test_sign_in_command_names_the_field_that_is_too_long():
    """A form's e-mail longer than any address is refused naming ``email``, with its bound."""
    with pytest.raises(CommandError) as caught:
        parse(signin.SignInCommand, {"email": "a" * 400, "password": "x"})
    (error,) = caught.value.errors
    assert error.field == "email"
    assert error.message.startswith("expected at most 320 characters, got 'aaa")


def test_a_refused_password_is_never_echoed():
    """A password breaking a bound is named with the bound, never with its text."""
    secret = "hunter2-" * 200
    with pytest.raises(CommandError) as caught:
        parse(signin.SignInCommand, {"email": "a@b.example", "password": secret})
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("password", "expected at most 1024 characters")
    ]
    assert "hunter2" not in str(caught.value)


def test_sign_in_command_refuses_unknown_fields():
    """A command takes only its own fields (``extra="forbid"``), by wire name."""
    with pytest.raises(CommandError) as caught:
        parse(signin.SignInCommand, {"email": "a@b.example", "password": "x", "remember": "1"})
    assert [e.field for e in caught.value.errors] == ["remember"]
    parsed = parse(
        signin.SignInCommand, {"email": "a@b.example", "password": "x", "organizationId": "o"}
    )
    assert parsed.organization_id == "o"


def test_wrong_password_records_a_failed_sign_in(instance):
    """A refused sign-in raises and leaves one ``failure`` row, written by the use case."""
    org = make_org(instance.db, "usecase")
    with instance.db.write_session() as session:
        with pytest.raises(AuthenticationError):
            _sign_in(instance, session, org.emails["User"], "not-the-password-at-all")
        assert _actions(session, "auth.sign_in") == [("anonymous", "failure")]


def test_sign_in_reports_a_pending_second_factor_enrolment(instance):
    """The use case says when the organization's rule needs this member to enrol first.

    This is the one place the web's sign-in finds it out (it used to check it itself).
    """
    org = make_org(instance.db, "enrolrule")
    with instance.db.write_session() as session:
        session.execute(
            update(SecurityConfig)
            .where(SecurityConfig.organization_id == org.id)
            .values(require_admin_2fa=True)
        )
    with instance.db.write_session() as session:
        admin = _sign_in(instance, session, org.emails["Admin"])
        viewer = _sign_in(instance, session, org.emails["Viewer"])
    assert admin.must_enrol_second_factor is True
    assert viewer.must_enrol_second_factor is False
    assert admin.user.email == org.emails["Admin"]  # a view, not the row


def test_second_factor_enrolment_and_sign_in_through_the_use_cases(instance):
    """Start, confirm (audited), then a sign-in needs and accepts the code."""
    org = make_org(instance.db, "totpuc")
    email = org.emails["User"]
    with instance.db.write_session() as session:
        user = session.get(User, org.members["User"])
        started = second_factor.start_totp(
            session,
            second_factor.RecentPasswordCommand(password=PASSWORD),
            user=user,
            web_session=None,
            keyring=instance.keyring,
            hashing=instance.hashing,
            limiter=instance.limiter,
        )
        code = pyotp.TOTP(started.secret).now()
        codes = second_factor.confirm_second_factor(
            session,
            parse(second_factor.ConfirmTotpCommand, {"code": code, "password": PASSWORD}),
            user=user,
            web_session=None,
            keyring=instance.keyring,
            hashing=instance.hashing,
            limiter=instance.limiter,
            actor=Actor("user", user.id),
        )
        assert len(codes) == 10
        assert _actions(session, "auth.totp_enabled") == [("user", "success")]
    with instance.db.write_session() as session:
        pending = _sign_in(instance, session, email)
        assert pending.needs_second_factor
        with pytest.raises(AuthenticationError):
            signin.complete_second_factor(
                session,
                signin.SecondFactorCommand(code="000000" if code != "000000" else "111111"),
                cookie=pending.cookie,
                keyring=instance.keyring,
                limiter=instance.limiter,
                csrf=instance.csrf,
                address=None,
            )
    with instance.db.write_session() as session:
        done = signin.complete_second_factor(
            session,
            signin.SecondFactorCommand(code=codes[0]),
            cookie=pending.cookie,
            keyring=instance.keyring,
            limiter=instance.limiter,
            csrf=instance.csrf,
            address=None,
        )
        assert done.session.kind == "user"
        assert _actions(session, "auth.second_factor") == [
            ("anonymous", "failure"),
            ("user", "success"),
        ]


def test_set_password_form_requires_the_same_password_twice():
    """The console's form model refuses two different passwords, naming ``confirm``."""
    with pytest.raises(CommandError) as caught:
        parse(passwords.SetPasswordForm, {"token": "t", "password": "a", "confirm": "b"})
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("confirm", "the two passwords are not the same")
    ]


def test_set_password_from_link_refuses_an_unknown_link(instance):
    """An unknown one-time link is a 403 (PermissionDeniedError), whatever the password."""
    with instance.db.write_session() as session, pytest.raises(PermissionDeniedError):
        passwords.set_password_from_link(
            session,
            passwords.SetPasswordCommand(token="not-a-link", password=NEW_PASSWORD),
            hashing=instance.hashing,
            address=None,
        )
