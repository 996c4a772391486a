"""``paulyops token``: create, list and revoke API tokens against a real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.models import ApiToken, AuditLog
from paulyops.core.settings import write_env_values
from paulyops.services.auth.tokens import resolve_api_token
from tests.conftest import fresh_secrets
from tests.factories import make_org


@pytest.fixture
def instance_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance root in tmp_path with test secrets in .env.local, on the test database."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    write_env_values(tmp_path / ".env.local", fresh_secrets())
    return tmp_path


def run(*args: str):
    """Invoke ``paulyops ARGS``."""
    return CliRunner().invoke(app, list(args))


def create_token(org_ref: str, email: str, *perms: str, extra: tuple[str, ...] = ()):
    """Run ``token create`` for ``email`` in ``org_ref`` with ``perms``."""
    args = ["token", "create", "--org", org_ref, "--user", email, "--name", "backup script"]
    for perm in perms:
        args += ["--permission", perm]
    return run(*args, *extra)


def test_create_prints_the_secret_once_and_list_never_shows_it(instance_root, db):
    """The pot_ secret appears exactly once, on stdout; list shows only its prefix."""
    org = make_org(db, "acme")
    result = create_token(
        org.id,
        "admin@acme.example.com",
        "storage:read",
        "agents:read",
        extra=("--expires-days", "30"),
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("pot_")
    assert result.output.count(secret) == 1
    assert "Store it now" in result.output
    with db.session() as session:
        row = resolve_api_token(session, secret)
        assert row is not None
        assert row.permissions == ["agents:read", "storage:read"]
        assert row.expires_at is not None
    listed = run("token", "list", "--org", "acme")
    assert listed.exit_code == 0, listed.output
    assert row.id in listed.output
    assert row.prefix in listed.output
    assert secret not in listed.output
    assert secret[len(row.prefix) :] not in listed.output


def test_list_in_a_narrow_terminal_keeps_ids_whole(instance_root, db, monkeypatch):
    """In 80 columns list prints one block per token with the id and prefix unbroken."""
    org = make_org(db, "acme")
    secret = create_token(org.id, "owner@acme.example.com", "org:read", extra=("-q",)).stdout
    monkeypatch.setenv("COLUMNS", "80")
    listed = run("token", "list", "--org", org.id)
    assert listed.exit_code == 0, listed.output
    with db.session() as session:
        row = resolve_api_token(session, secret.strip())
    assert row.id in listed.output
    assert f"{row.prefix}…" in listed.output
    assert secret.strip() not in listed.output


def test_quiet_prints_only_the_secret_for_scripts(instance_root, db):
    """--quiet writes the secret alone on stdout and nothing else anywhere."""
    org = make_org(db, "acme")
    result = create_token(org.slug, "user@acme.example.com", "agents:run", extra=("--quiet",))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("pot_")
    assert result.stdout.count("\n") == 1
    assert result.output == result.stdout


def test_create_refuses_a_permission_the_holder_lacks(instance_root, db):
    """A Viewer's token cannot hold tokens:manage: exit 6, naming the person, no token made."""
    org = make_org(db, "acme")
    result = create_token(org.id, "viewer@acme.example.com", "org:read", "tokens:manage")
    assert result.exit_code == 6
    assert "tokens:manage" in result.output
    assert "viewer@acme.example.com" in result.output
    assert "pot_" not in result.output
    with db.session() as session:
        assert session.scalars(select(ApiToken)).all() == []


def test_create_refuses_a_delegated_permission(instance_root, db):
    """A User holding audit:export only by delegation gets no token with it: exit 6, saying
    a token holds only what the holder's role gives."""
    from datetime import timedelta

    from paulyops.core.db.models import Delegation, utcnow

    org = make_org(db, "acme", model="enterprise")
    with db.write_session() as session:
        session.add(
            Delegation(
                organization_id=org.id,
                from_user_id=org.members["Admin"],
                to_user_id=org.members["User"],
                permissions=["audit:export"],
                expires_at=utcnow() + timedelta(days=3),
            )
        )
    result = create_token(org.id, "user@acme.example.com", "audit:export")
    assert result.exit_code == 6, result.output
    assert "delegated" in result.output
    with db.session() as session:
        assert session.scalars(select(ApiToken)).all() == []


def test_create_for_a_non_member_exits_5(instance_root, db):
    """A user of another organization cannot get a token here."""
    org = make_org(db, "acme")
    make_org(db, "other")
    result = create_token(org.id, "owner@other.example.com", "org:read")
    assert result.exit_code == 5
    assert "not a member" in result.output


def test_create_rejects_an_unknown_permission_naming_it(instance_root, db):
    """An unknown permission exits 3 and names it."""
    org = make_org(db, "acme")
    result = create_token(org.id, "owner@acme.example.com", "files:everything")
    assert result.exit_code == 3
    assert "files:everything" in result.output


def test_revoke_stops_the_token_and_is_audited(instance_root, db):
    """After revoke the secret no longer resolves, list omits it, and both steps are audited."""
    org = make_org(db, "acme")
    secret = create_token(
        org.id, "owner@acme.example.com", "org:read", extra=("-q",)
    ).stdout.strip()
    with db.session() as session:
        token_id = resolve_api_token(session, secret).id
    result = run("token", "revoke", token_id, "--org", org.id)
    assert result.exit_code == 0, result.output
    assert token_id in result.output
    with db.session() as session:
        assert resolve_api_token(session, secret) is None
        actions = session.scalars(select(AuditLog.action).where(AuditLog.chain == org.id)).all()
    assert actions == ["token.created", "token.revoked"]
    listed = run("token", "list", "--org", org.id)
    assert token_id not in listed.output
    assert "no API tokens" in listed.output


def test_revoke_in_another_organization_is_not_found(instance_root, db):
    """A token id of one organization is not found through another one (exit 5)."""
    acme = make_org(db, "acme")
    other = make_org(db, "other")
    secret = create_token(
        acme.id, "owner@acme.example.com", "org:read", extra=("-q",)
    ).stdout.strip()
    with db.session() as session:
        token_id = resolve_api_token(session, secret).id
    result = run("token", "revoke", token_id, "--org", other.id)
    assert result.exit_code == 5
    with db.session() as session:
        assert resolve_api_token(session, secret) is not None
