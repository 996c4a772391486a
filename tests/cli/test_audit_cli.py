"""``paulyops audit``: verify, export, checkpoint and purge from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from paulyops.cli.audit import app
from paulyops.core.db.engine import Database
from paulyops.services import audit
from tests.conftest import fresh_secrets
from tests.factories import make_org
from tests.services.test_audit import ORG, add_rows, bypassing_guard, clear_audit_rows


@pytest.fixture
def audit_db(db: Database) -> Iterator[Database]:
    """The ``db`` fixture, with audit rows cleared afterwards (PostgreSQL refuses TRUNCATE)."""
    yield db
    clear_audit_rows(db)


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    """The environment of a CLI run: an instance root in tmp_path on the test database."""
    return {
        **fresh_secrets(),
        "PAULYOPS_HOME": str(tmp_path),
        "PAULYOPS_ENV": "test",
        "DATABASE_URL": db_url,
    }


def run(env: dict[str, str], *args: str):
    """Invoke ``paulyops audit ARGS`` with ``env``."""
    return CliRunner().invoke(app, list(args), env=env)


def test_verify_exits_0_on_an_intact_log(audit_db, env):
    """verify prints each chain as ok and exits 0."""
    add_rows(audit_db, 3)
    result = run(env, "verify")
    assert result.exit_code == 0, result.output
    assert ORG in result.output
    assert "ok" in result.output


def test_verify_exits_1_naming_the_first_broken_row(audit_db, env):
    """After a row is edited, verify exits 1 and names its seq, id and what happened."""
    rows = add_rows(audit_db, 4)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("UPDATE audit_logs SET action = 'forged' WHERE seq = 2"))
    result = run(env, "verify", "--org", ORG)
    assert result.exit_code == 1, result.output
    assert "broken" in result.output
    assert f"edited at seq 2 ({rows[1].id})" in result.output


def test_verify_exits_1_on_truncation_after_a_checkpoint(audit_db, env):
    """checkpoint, then deleting the newest rows, makes verify report the truncation."""
    add_rows(audit_db, 5)
    assert run(env, "checkpoint").exit_code == 0
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("DELETE FROM audit_logs WHERE seq > 3"))
    result = run(env, "verify")
    assert result.exit_code == 1
    assert "truncated after seq 3" in result.output


def test_verify_without_the_instance_key_fails_with_config_error(audit_db, env):
    """Without PAULYOPS_INSTANCE_KEY, verify exits 4 naming the variable."""
    env = {**env, "PAULYOPS_INSTANCE_KEY": ""}
    result = run(env, "verify")
    assert result.exit_code == 4
    assert "PAULYOPS_INSTANCE_KEY" in result.output


def test_checkpoint_signs_each_chain(audit_db, env):
    """checkpoint lists every chain with its signed seq; verify then counts it."""
    add_rows(audit_db, 2)
    add_rows(audit_db, 1, chain="instance")
    result = run(env, "checkpoint")
    assert result.exit_code == 0, result.output
    assert ORG in result.output
    assert "instance" in result.output
    public = audit.verifying_key(env["PAULYOPS_INSTANCE_KEY"])
    report = audit.verify(audit_db, public)
    assert [c.checkpoints_checked for c in report.chains] == [1, 1]


def test_export_writes_jsonl_to_a_file(audit_db, env, tmp_path):
    """export --output writes one JSON line per row of the chain."""
    rows = add_rows(audit_db, 3)
    target = tmp_path / "audit.jsonl"
    result = run(env, "export", "--org", ORG, "--output", str(target))
    assert result.exit_code == 0, result.output
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [r.id for r in rows]


def test_export_writes_csv_to_stdout(audit_db, env):
    """export --format csv without --output writes CSV to stdout."""
    add_rows(audit_db, 2)
    result = run(env, "export", "--format", "csv", "--since", "2000-01-01")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == ",".join(audit.EXPORT_COLUMNS)
    assert len(result.stdout.splitlines()) == 3


def test_export_rejects_a_malformed_date(audit_db, env):
    """--since that is not a date is a usage error (exit 2) naming the option."""
    result = run(env, "export", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since" in result.output


def test_purge_needs_confirmation_and_keeps_the_log_verifiable(audit_db, env):
    """purge without --yes asks first; with --yes it purges and verify still passes."""
    add_rows(audit_db, 3)
    refused = run(env, "purge", "--org", ORG, "--before", "2999-01-01")
    assert refused.exit_code == 1
    assert "Aborted" in refused.output
    result = run(env, "purge", "--org", ORG, "--before", "2999-01-01", "--yes")
    assert result.exit_code == 0, result.output
    assert "Purged 3 rows" in result.output
    assert run(env, "verify").exit_code == 0


def test_org_option_accepts_the_organization_slug(audit_db, env):
    """--org takes an organization's slug as well as its id."""
    org = make_org(audit_db, "acme-audit")
    add_rows(audit_db, 2, chain=org.id)
    add_rows(audit_db, 1)
    result = run(env, "export", "--org", "acme-audit")
    assert result.exit_code == 0, result.output
    chains = {json.loads(line)["chain"] for line in result.stdout.splitlines()}
    assert chains == {org.id}
