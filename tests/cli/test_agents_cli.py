"""``paulyops agents``: the lifecycle from the command line, on a real database."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.models import AgentInstallation, AgentPackage
from paulyops.core.security.signatures import generate_key
from paulyops.core.settings import write_env_values
from tests.conftest import fresh_secrets
from tests.factories import make_org
from tests.services.agents.helpers import SECRET, audit_text, cache_files, setup_instance, upload


@pytest.fixture
def instance_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    write_env_values(tmp_path / ".env.local", fresh_secrets())
    return tmp_path


@pytest.fixture
def acme(instance_root, db):
    key = generate_key()
    setup_instance(db, key)
    org = make_org(db, "acme")
    upload(db, org.id, key)
    return org, key, instance_root / "data" / "agents" / "cache"


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, ["agents", *args], input=input)


def installed(db) -> list[tuple[str, str]]:
    with db.session() as session:
        return [
            (r.agent_id, r.status)
            for r in session.scalars(select(AgentInstallation).order_by(AgentInstallation.agent_id))
        ]


def test_install_asks_before_granting_and_plan_changes_nothing(acme, db):
    _org, _key, cache = acme
    planned = run("install", "acme.hello", "--plan")
    assert planned.exit_code == 0, planned.output
    assert "Raise alerts that people in the organization are told about." in planned.output
    assert "plan only" in planned.output
    assert installed(db) == []
    refused = run("install", "acme.hello@1.0.0", input="n\n")
    assert refused.exit_code == 1, refused.output
    assert "Receive the secret setting 'apiKey'" in refused.output
    assert "Nothing was granted" in refused.output
    assert installed(db) == []
    assert cache_files(cache) == []
    done = run("install", "acme.hello", input="y\n")
    assert done.exit_code == 0, done.output
    assert "Installed acme.hello 1.0.0" in done.output
    assert installed(db) == [("acme.hello", "enabled")]
    again = run("install", "acme.hello", "--yes")
    assert again.exit_code != 0
    assert "installed already" in again.output
    assert run("install", "paulyops.file-processor").exit_code == 0
    listed = run("list")
    assert listed.exit_code == 0, listed.output
    assert "paulyops.file-processor" in listed.output
    assert "secrets not set: apiKey" in listed.output


def test_configure_show_toggle_and_uninstall(acme, db):
    _org, _key, cache = acme
    assert run("install", "acme.hello", "--yes").exit_code == 0
    configured = run(
        "configure", "acme.hello", "--set", "threshold=7", "--secret", "apiKey", input=SECRET + "\n"
    )
    assert configured.exit_code == 0, configured.output
    assert SECRET not in configured.output
    bad = run("configure", "acme.hello", "--set", "threshold=-3")
    assert bad.exit_code != 0
    assert "settings.threshold" in bad.output
    shown = run("show", "acme.hello")
    assert shown.exit_code == 0, shown.output
    assert "Secret apiKey: set" in shown.output
    assert "Setting threshold = 7" in shown.output
    as_json = run("show", "acme.hello", "--json")
    assert json.loads(as_json.stdout)["secrets"] == {"apiKey": "set"}
    assert SECRET not in as_json.stdout
    assert run("disable", "acme.hello", "--plan").exit_code == 0
    assert installed(db) == [("acme.hello", "enabled")]
    assert run("disable", "acme.hello").exit_code == 0
    assert installed(db) == [("acme.hello", "disabled")]
    assert run("enable", "acme.hello").exit_code == 0
    planned = run("uninstall", "acme.hello", "--plan")
    assert planned.exit_code == 0
    assert "Folder to remove" in planned.output
    assert cache_files(cache) != []
    gone = run("uninstall", "acme.hello", "--yes")
    assert gone.exit_code == 0, gone.output
    assert installed(db) == []
    assert cache_files(cache) == []
    assert SECRET not in audit_text(db)


def test_verify_repair_and_release(acme, db):
    _org, _key, cache = acme
    assert run("install", "acme.hello", "--yes").exit_code == 0
    assert run("install", "paulyops.file-processor").exit_code == 0
    clean = run("verify-installed", "--json")
    assert clean.exit_code == 0, clean.output
    assert [f["problems"] for f in json.loads(clean.stdout)] == [[], []]
    with db.session() as session:
        sha = session.scalars(
            select(AgentInstallation.package_sha256).where(
                AgentInstallation.agent_id == "acme.hello"
            )
        ).one()
    target = cache / sha / "agent.py"
    os.chmod(target.parent, 0o755)
    os.chmod(target, 0o644)
    target.write_text("print('changed')\n")
    found = run("verify-installed")
    assert found.exit_code == 1
    assert "modified: agent.py" in found.output
    fixed = run("repair", "acme.hello")
    assert fixed.exit_code == 0, fixed.output
    assert "fixed modified: agent.py" in fixed.output
    assert run("verify-installed").exit_code == 0
    with db.write_session() as session:
        session.execute(
            update(AgentPackage)
            .where(AgentPackage.agent_id == "acme.hello")
            .values(archive=b"PK not the archive any more")
        )
    damaged = run("verify-installed")
    assert damaged.exit_code == 1
    assert "quarantined" in damaged.output
    assert installed(db) == [("acme.hello", "quarantined"), ("paulyops.file-processor", "enabled")]
    cannot = run("repair")
    assert cannot.exit_code == 1
    assert "install it again" in cannot.output
    refused = run("release", "acme.hello")
    assert refused.exit_code != 0
    assert "damaged" in refused.output


def test_release_after_a_quarantine(acme, db):
    assert run("install", "acme.hello", "--yes").exit_code == 0
    with db.write_session() as session:
        session.execute(
            update(AgentInstallation).values(
                status="quarantined", quarantined_reason="3 failed runs", quarantined_from="enabled"
            )
        )
    assert run("enable", "acme.hello").exit_code != 0
    assert run("release", "acme.hello", "--plan").exit_code == 0
    assert installed(db) == [("acme.hello", "quarantined")]
    released = run("release", "acme.hello", "--reason", "fixed upstream")
    assert released.exit_code == 0, released.output
    assert installed(db) == [("acme.hello", "enabled")]


def test_org_defaults_to_the_only_one(acme, db):
    make_org(db, "other")
    refused = run("list")
    assert refused.exit_code != 0
    assert "--org" in refused.output
    assert run("list", "--org", "other").exit_code == 0
    # The other organization cannot install acme's upload, nor see acme's installation.
    assert run("install", "acme.hello", "--yes").exit_code != 0
    assert run("install", "acme.hello", "--yes", "--org", "acme").exit_code == 0
    assert run("show", "acme.hello", "--org", "other").exit_code != 0
    assert run("uninstall", "acme.hello", "--yes", "--org", "other").exit_code != 0
    assert installed(db) == [("acme.hello", "enabled")]


def test_quick_setup_ends_with_installed_agents(tmp_path, db_url, monkeypatch, db):
    """`setup --quick` installs the bundled defaults for real and says so; they verify clean."""
    root = tmp_path / "instance"
    root.mkdir()
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("DATABASE_URL", db_url)
    result = CliRunner().invoke(
        app,
        [
            "setup",
            "--quick",
            "--org-name",
            "Acme",
            "--dir",
            str(root),
            "--owner-email",
            "owner@acme.example",
            "--owner-name",
            "Olga Owner",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Default agents installed: file-processor" in result.output
    with db.session() as session:
        row = session.scalars(select(AgentInstallation)).one()
    assert (row.agent_id, row.status, row.granted_by) == (
        "paulyops.file-processor",
        "enabled",
        "cli",
    )
    monkeypatch.setenv("PAULYOPS_HOME", str(root))
    listed = run("list")
    assert listed.exit_code == 0, listed.output
    assert "paulyops.file-processor" in listed.output
    verified = run("verify-installed", "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)[0]["problems"] == []
