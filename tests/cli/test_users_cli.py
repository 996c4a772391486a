"""``paulyops user``: create, list and reset-password against a real database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog, WebSession
from paulyops.core.errors import AuthenticationError
from paulyops.core.settings import write_env_values
from paulyops.services.auth import accounts, rbac, sessions
from tests.conftest import fresh_secrets
from tests.factories import HASHING, PASSWORD, make_org

GOOD = "plenty-of-words-for-a-passphrase-7"


@pytest.fixture
def instance_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance root in tmp_path with test secrets in .env.local, on the test database."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")  # wide tables: no e-mail split across lines
    write_env_values(tmp_path / ".env.local", fresh_secrets())
    return tmp_path


def run(*args: str, stdin: str | None = None):
    """Invoke ``paulyops ARGS`` with ``stdin`` as standard input."""
    return CliRunner().invoke(app, list(args), input=stdin)


def test_create_then_sign_in_with_the_password(instance_root, db):
    """A user created with --password-stdin can sign in with that password."""
    result = run(
        "user",
        "create",
        "--email",
        "Ada@Example.com",
        "--name",
        "Ada",
        "--password-stdin",
        stdin=GOOD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "ada@example.com" in result.output
    with db.session() as session:
        checked = accounts.check_credentials(
            session, HASHING, email="ada@example.com", password=GOOD
        )
        assert not checked.user.is_platform_admin
        actions = session.scalars(select(AuditLog.action)).all()
    assert "user.created" in actions


def test_create_at_the_prompt_asks_again_after_a_weak_password(instance_root, db):
    """At the hidden prompt a weak password is refused with the reason and asked again."""
    answers = ["short", "short", GOOD, GOOD]
    result = run(
        "user",
        "create",
        "--email",
        "bo@example.com",
        "--name",
        "Bo",
        "--platform-admin",
        stdin="\n".join(answers) + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "password:" in result.output
    assert "short" not in result.output  # hidden input is not echoed
    with db.session() as session:
        user = accounts.check_credentials(
            session, HASHING, email="bo@example.com", password=GOOD
        ).user
        assert user.is_platform_admin


def test_create_refuses_a_weak_password_naming_the_field(instance_root, db):
    """A password that breaks the policy exits 3 with a message naming 'password'."""
    result = run(
        "user",
        "create",
        "--email",
        "cy@example.com",
        "--name",
        "Cy",
        "--password-stdin",
        stdin="abc\n",
    )
    assert result.exit_code == 3
    assert "password" in result.output
    with db.session() as session:
        assert accounts.find_user(session, "cy@example.com") is None


def test_create_refuses_a_duplicate_email_with_exit_7(instance_root, db):
    """A second account for the same address (any case) exits 7."""
    assert (
        run(
            "user",
            "create",
            "--email",
            "di@example.com",
            "--name",
            "Di",
            "--password-stdin",
            stdin=GOOD,
        ).exit_code
        == 0
    )
    result = run(
        "user",
        "create",
        "--email",
        "DI@example.com",
        "--name",
        "Di 2",
        "--password-stdin",
        stdin=GOOD,
    )
    assert result.exit_code == 7
    assert "already exists" in result.output


def test_create_with_org_and_role_adds_an_audited_membership(instance_root, db):
    """--org SLUG --role admin makes the new user an Admin there, audited in the org chain."""
    org = make_org(db, "acme")
    result = run(
        "user",
        "create",
        "--email",
        "ed@example.com",
        "--name",
        "Ed",
        "--password-stdin",
        "--org",
        "acme",
        "--role",
        "admin",
        stdin=GOOD,
    )
    assert result.exit_code == 0, result.output
    with db.session() as session:
        user = accounts.find_user(session, "ed@example.com")
        grant = rbac.grant_for(session, org.id, user.id)
        assert grant is not None
        assert grant.role_name == "Admin"
        chain = session.scalars(select(AuditLog.action).where(AuditLog.chain == org.id)).all()
    assert "member.added" in chain


def test_create_with_an_unknown_role_lists_the_roles_and_creates_nobody(instance_root, db):
    """An unknown --role exits 3 naming the allowed roles; no account is left behind."""
    org = make_org(db, "acme")
    result = run(
        "user",
        "create",
        "--email",
        "fi@example.com",
        "--name",
        "Fi",
        "--password-stdin",
        "--org",
        org.id,
        "--role",
        "boss",
        stdin=GOOD,
    )
    assert result.exit_code == 3
    assert "Owner" in result.output
    assert "boss" in result.output
    with db.session() as session:
        assert accounts.find_user(session, "fi@example.com") is None


def test_list_shows_people_but_no_password_hashes(instance_root, db):
    """user list shows every e-mail and role, and no hash or secret."""
    make_org(db, "acme")
    with db.session() as session:
        hashes = [u.password_hash for u in accounts.list_users(session)]
    result = run("user", "list")
    assert result.exit_code == 0, result.output
    assert "owner@acme.example.com" in result.output
    assert "acme (Owner)" in result.output
    assert "$argon2" not in result.output
    assert not any(h and h in result.output for h in hashes)


def test_reset_password_signs_the_user_out_everywhere(instance_root, db):
    """reset-password sets the new password, revokes every session and says how many."""
    org = make_org(db, "acme")
    user_id = org.members["User"]
    with db.session() as session:
        for _ in range(2):
            sessions.create_session(session, user_id=user_id, organization_id=org.id)
    result = run(
        "user", "reset-password", "user@acme.example.com", "--password-stdin", stdin=GOOD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "2 sessions" in result.output
    with db.session() as session:
        live = session.scalars(
            select(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        ).all()
        assert live == []
        accounts.check_credentials(session, HASHING, email="user@acme.example.com", password=GOOD)
        with pytest.raises(AuthenticationError):
            accounts.check_credentials(
                session, HASHING, email="user@acme.example.com", password=PASSWORD
            )


def test_reset_password_revokes_the_accounts_api_tokens(instance_root, db):
    """An operator's reset ends every API token of the account and says how many."""
    from paulyops.core.db.models import ApiToken
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.auth import tokens

    org = make_org(db, "acme")
    with db.write_session() as session:
        grant = rbac.grant_for(session, org.id, org.members["Admin"])
        tokens.create_api_token(
            OrgScope(session, org.id),
            user_id=grant.user_id,
            name="script",
            permissions=["org:read"],
            holder_permissions=grant.grantable,
        )
    result = run(
        "user", "reset-password", "admin@acme.example.com", "--password-stdin", stdin=GOOD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "revoked 1 API token" in result.output
    with db.session() as session:
        assert session.scalars(select(ApiToken.revoked_at)).one() is not None


def test_reset_password_of_an_unknown_address_exits_5(instance_root, db):
    """reset-password for an address without an account exits 5 before asking anything."""
    result = run("user", "reset-password", "nobody@example.com")
    assert result.exit_code == 5
    assert "nobody@example.com" in result.output
    assert "Password" not in result.output


def test_commands_without_instance_secrets_explain_the_fix(tmp_path, db_url, monkeypatch):
    """Without ENCRYPTION_KEY the command exits 4 naming the variable, no stack trace."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", db_url)
    result = run("user", "list")
    assert result.exit_code == 4
    assert "ENCRYPTION_KEY" in result.output
    assert "Traceback" not in result.output


def test_database_is_untouched_by_a_refused_create(instance_root, db: Database):
    """A refused create (unknown organization) writes neither a user nor an audit row."""
    result = run(
        "user",
        "create",
        "--email",
        "gi@example.com",
        "--name",
        "Gi",
        "--password-stdin",
        "--org",
        "nope",
        stdin=GOOD,
    )
    assert result.exit_code == 5
    assert "--org" in result.output
    with db.session() as session:
        assert accounts.find_user(session, "gi@example.com") is None
        assert session.scalars(select(AuditLog)).all() == []


def test_invite_prints_a_link_that_joins_that_organization_only(instance_root, db):
    """``user invite`` prints an opaque invitation link; list shows it; revoke ends it."""
    org = make_org(db, "acme")
    other = make_org(db, "beta")
    result = run("user", "invite", "new@outside.example.com", "--name", "New", "--org", "acme")
    assert result.exit_code == 0, result.output
    assert "/invitation?token=" in result.output
    existing = run("user", "invite", other.emails["User"], "--name", "New", "--org", "acme")
    assert existing.exit_code == 0, existing.output

    def shape(output: str, email: str) -> str:
        masked = re.sub(r"inv_\w+", "ID", output.replace(email, "EMAIL"))
        return re.sub(r"token=[\w\-]+", "token=T", masked)

    # The operator is told the same thing whether or not the address has an account.
    assert shape(result.output, "new@outside.example.com") == shape(
        existing.output, other.emails["User"]
    )
    listed = run("user", "invitations", "--org", "acme")
    assert "new@outside.example.com" in listed.output
    assert "token=" not in listed.output
    with db.session() as session:
        assert rbac.grant_for(session, org.id, other.members["User"]) is None
    invitation_id = result.output.split("Invitation ", 1)[1].split(" ", 1)[0]
    revoked = run("user", "revoke-invitation", invitation_id, "--org", "acme")
    assert revoked.exit_code == 0, revoked.output
    assert run("user", "revoke-invitation", invitation_id, "--org", "acme").exit_code != 0
    assert run("user", "revoke-invitation", invitation_id, "--org", "beta").exit_code != 0
    with db.session() as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.chain == org.id).order_by(AuditLog.seq)
        ).all()
    assert actions[-3:] == ["invitation.created", "invitation.created", "invitation.revoked"]
