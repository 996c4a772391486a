"""A setup token dies when the instance is set up, through any front door; guessing is limited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from paulyops.cli.main import app as cli
from paulyops.core.db.models import Organization, SetupToken, utcnow
from paulyops.services.actor import SYSTEM
from paulyops.services.auth import tokens
from paulyops.services.onboarding.firstrun import ensure_setup_token
from tests.conftest import make_settings

BODY = {
    "organization": {"name": "Second Corp", "industry": "other"},
    "owner": {"email": "mallory@second.example", "name": "Mallory"},
}


@pytest.fixture
def server_token(client) -> str:
    """The token a running server printed at its first start."""
    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    assert token is not None
    return token


@pytest.fixture
def cli_setup(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``paulyops setup --quick`` from the terminal against the server's database."""
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    root = tmp_path / "terminal"
    root.mkdir()
    result = CliRunner().invoke(
        cli,
        [
            "setup",
            "--quick",
            "--dir",
            str(root),
            "--org-name",
            "Acme",
            "--owner-email",
            "olga@acme.example",
            "--owner-name",
            "Olga Owner",
        ],
    )
    assert result.exit_code == 0, result.output


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _api_setup(client: TestClient, token: str):
    return client.post(
        "/api/onboarding/setup", json=BODY, headers={"Authorization": f"Bearer {token}"}
    )


def _orgs(client: TestClient) -> int:
    with client.app.state.instance.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Organization)) or 0)


def test_terminal_setup_kills_the_servers_token_for_the_api(client, server_token, cli_setup):
    """After `setup --quick`, the token the server printed provisions nothing (403, clear)."""
    response = _api_setup(client, server_token)
    assert response.status_code == 403, response.text
    assert "already set up" in response.json()["message"]
    assert _orgs(client) == 1
    with client.app.state.instance.db.session() as session:
        row = session.scalars(
            select(SetupToken).where(SetupToken.token_hash == tokens.hash_token(server_token))
        ).one()
        assert row.consumed_at is not None
        assert row.consumed_by_org_id is not None


def test_terminal_setup_kills_the_servers_token_for_the_unlock_page(
    client, server_token, cli_setup
):
    """The web unlock page refuses the old token with the same clear message."""
    page = client.get("/setup")  # redirects to sign-in: the instance is set up
    assert page.status_code == 200
    response = client.post("/setup", data={"token": server_token, "csrf_token": _csrf(page.text)})
    assert response.status_code == 403
    assert "already set up" in response.text


def test_a_fresh_token_of_a_set_up_instance_is_refused(client, server_token):
    """Even a token issued after setup (by hand, in the database) is refused by the API."""
    assert _api_setup(client, server_token).status_code == 201
    instance = client.app.state.instance
    with instance.db.write_session() as session:
        late = tokens.issue_setup_token(session, instance.settings.data_dir)
    response = _api_setup(client, late)
    assert response.status_code == 403
    assert "already set up" in response.json()["message"]


def test_start_retires_tokens_left_by_an_older_version(client, server_token):
    """A set-up instance consumes leftover tokens at start and deletes the token file."""
    assert _api_setup(client, server_token).status_code == 201
    instance = client.app.state.instance
    data_dir = instance.settings.data_dir
    with instance.db.write_session() as session:
        tokens.issue_setup_token(session, data_dir)
    assert (data_dir / tokens.SETUP_TOKEN_FILE).is_file()
    assert ensure_setup_token(instance.db, data_dir, actor=SYSTEM) is None
    with instance.db.session() as session:
        left = session.scalars(
            select(SetupToken).where(
                SetupToken.consumed_at.is_(None), SetupToken.expires_at > utcnow()
            )
        ).all()
    assert left == []
    assert not (data_dir / tokens.SETUP_TOKEN_FILE).exists()


@pytest.fixture
def limited_client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """A server whose sign-in limit is 3 per minute."""
    from paulyops.web.app import create_app

    settings = make_settings(tmp_path, DATABASE_URL=db_url, PAULYOPS_RATE_LIMITS="signin=3/minute")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        yield client


def test_wrong_setup_tokens_are_rate_limited_on_the_api(limited_client):
    """Three wrong tokens are 403; the fourth attempt is 429, even with the right token."""
    instance = limited_client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    assert token is not None
    for _ in range(3):
        assert _api_setup(limited_client, "pos_wrong-guess").status_code == 403
    blocked = _api_setup(limited_client, "pos_another-guess")
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert _api_setup(limited_client, token).status_code == 429
    assert _orgs(limited_client) == 0


def test_api_and_unlock_page_share_the_limit(limited_client):
    """Wrong tokens on the API count on the unlock page too (one budget per address)."""
    instance = limited_client.app.state.instance
    ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    for _ in range(3):
        assert _api_setup(limited_client, "pos_wrong-guess").status_code == 403
    page = limited_client.get("/setup")
    response = limited_client.post(
        "/setup", data={"token": "pos_guess", "csrf_token": _csrf(page.text)}
    )
    assert response.status_code == 429
