"""Setup survives interruption: a rerun issues the lost owner link and leaves no temp files.

A SIGKILL after the organization commits but before the owner's one-time link is shown
left an owner without a password, every retry said "already set up; nothing changed"
with no link, and the killed run left ``*.tmp`` files behind (one a full copy of the
secrets in ``.env.local``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.engine import Database
from paulyops.core.db.models import Membership, Organization, User
from paulyops.core.db.scoped import OrgScope
from paulyops.services.actor import SYSTEM
from paulyops.services.auth import accounts
from paulyops.services.onboarding.provision import ProvisionContext, provision
from paulyops.services.onboarding.spec import parse_spec
from tests.factories import HASHING, PASSWORD, make_org

OWNER = ("--owner-email", "olga@acme.example", "--owner-name", "Olga Owner")
QUICK = ("setup", "--quick", "--org-name", "Acme", *OWNER)
# Runs the real CLI, but SIGKILLs itself at the first fsync after provision() returned:
# the organization is committed, the artifacts are being written, no link was shown.
KILL_AFTER_COMMIT = """
import os, signal, sys
from paulyops.services.onboarding import provision as provisioning
real = provisioning.provision
def provision_then_arm(*args, **kwargs):
    result = real(*args, **kwargs)
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    return result
provisioning.provision = provision_then_arm
from paulyops.cli.main import app
sys.argv = ["paulyops", *sys.argv[1:]]
app()
"""


@pytest.fixture
def root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty instance root on the test database."""
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("DATABASE_URL", db_url)
    path = tmp_path / "instance"
    path.mkdir()
    return path


def temps(root: Path) -> list[str]:
    """Every temporary file under the instance root."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


def owner(db_url: str) -> User | None:
    """The owner account of the set-up instance."""
    database = Database(db_url)
    try:
        with database.session() as session:
            return session.scalars(select(User).where(User.email == "olga@acme.example")).first()
    finally:
        database.close()


def test_rerun_after_sigkill_between_commit_and_link_issues_a_fresh_link(root, db_url):
    """SIGKILL after the commit: no temp file stays, and the rerun prints a new link."""
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_COMMIT, *QUICK, "--dir", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "/set-password?token=" not in killed.stdout
    user = owner(db_url)
    assert user is not None
    assert user.password_hash is None  # the half-finished state
    assert temps(root) == []  # not even a copy of .env.local's secrets

    rerun = CliRunner().invoke(app, [*QUICK, "--dir", str(root)])
    assert rerun.exit_code == 0, rerun.output
    assert "already set up" in rerun.output
    assert "never set a password" in rerun.output
    assert "/set-password?token=" in rerun.output
    assert (root / "README.md").is_file()
    assert temps(root) == []


def test_rerun_removes_temp_files_of_earlier_runs(root):
    """Temp files an earlier, killed run left (the old fixed name too) are removed."""
    assert CliRunner().invoke(app, [*QUICK, "--dir", str(root)]).exit_code == 0
    (root / "configs").mkdir(exist_ok=True)
    stale = [
        root / ".env.local.tmp",
        root / "..env.local.0badf00d.tmp",
        root / ".README.md.12345678.tmp",
        root / "configs" / ".setup.json.cafebabe.tmp",
    ]
    for path in stale:
        path.write_text("JWT_SECRET=leaked\n", encoding="utf-8")
    unrelated = root / "notes.tmp"
    unrelated.write_text("mine", encoding="utf-8")
    rerun = CliRunner().invoke(app, [*QUICK, "--dir", str(root)])
    assert rerun.exit_code == 0, rerun.output
    assert temps(root) == ["notes.tmp"]


def test_rerun_after_the_owner_set_a_password_gives_no_link(root, db_url):
    """Once the owner has a password, a repeated setup hands out nothing."""
    assert CliRunner().invoke(app, [*QUICK, "--dir", str(root)]).exit_code == 0
    database = Database(db_url)
    try:
        with database.write_session() as session:
            user = session.scalars(select(User)).one()
            accounts.set_password(session, HASHING, user, "a-long-and-unusual-passphrase-91")
    finally:
        database.close()
    rerun = CliRunner().invoke(app, [*QUICK, "--dir", str(root)])
    assert rerun.exit_code == 0, rerun.output
    assert "nothing changed" in rerun.output
    assert "/set-password" not in rerun.output


SPEC = {
    "organization": {"name": "Beta", "industry": "other"},
    "owner": {"email": "bea@beta.example", "name": "Bea"},
}


def _ctx(data_dir: Path) -> ProvisionContext:
    return ProvisionContext(
        actor=SYSTEM, jwt_secret="j" * 40, public_url="http://x", data_dir=data_dir
    )


def test_service_gives_no_link_for_an_owner_who_is_a_member_elsewhere(db, tmp_path):
    """An owner who also belongs to another organization never gets a link this way."""
    spec = parse_spec(SPEC)
    first = provision(db, spec, _ctx(tmp_path))
    assert first.owner_password_link
    again = provision(db, spec, _ctx(tmp_path))
    assert again.created is False
    assert again.owner_password_link
    other = make_org(db, "gamma")
    with db.write_session() as session:
        user = session.scalars(select(User).where(User.email == "bea@beta.example")).one()
        OrgScope(session, other.id).add(Membership(user_id=user.id, role_id=other.roles["Viewer"]))
    third = provision(db, spec, _ctx(tmp_path))
    assert third.created is False
    assert third.owner_password_link is None


def test_api_repeat_by_a_platform_admin_returns_a_fresh_link(client):
    """The idempotent 200 carries a new link for an owner without password (admins only)."""
    instance = client.app.state.instance
    admin_org = make_org(instance.db, "home")
    with instance.db.write_session() as session:
        admin = session.get(User, admin_org.members["Owner"])
        assert admin is not None
        admin.is_platform_admin = True
    signed_in = client.post(
        "/api/auth/sign-in", json={"email": admin_org.emails["Owner"], "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    headers = {"X-CSRF-Token": signed_in.json()["csrfToken"]}
    first = client.post("/api/onboarding/setup", json=SPEC, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/api/onboarding/setup", json=SPEC, headers=headers)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["created"] is False
    assert "/set-password?token=" in body["ownerPasswordLink"]
    assert "not set a password" in body["message"]
    with instance.db.session() as session:
        assert len(session.scalars(select(Organization)).all()) == 2


def test_api_repeat_by_another_platform_admin_gets_no_link(client):
    """Only the admin who provisioned recovers the link; another admin gets a plain 200."""
    instance = client.app.state.instance
    first_org, second_org = make_org(instance.db, "home"), make_org(instance.db, "away")
    with instance.db.write_session() as session:
        for fixture in (first_org, second_org):
            admin = session.get(User, fixture.members["Owner"])
            assert admin is not None
            admin.is_platform_admin = True

    def sign_in(fixture) -> dict[str, str]:
        response = client.post(
            "/api/auth/sign-in", json={"email": fixture.emails["Owner"], "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return {"X-CSRF-Token": response.json()["csrfToken"]}

    created = client.post("/api/onboarding/setup", json=SPEC, headers=sign_in(first_org))
    assert created.status_code == 201, created.text
    again = client.post("/api/onboarding/setup", json=SPEC, headers=sign_in(second_org))
    assert again.status_code == 200, again.text
    assert "ownerPasswordLink" not in again.json()
    assert again.json()["message"].endswith("nothing changed")
