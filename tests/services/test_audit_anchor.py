"""The audit chain's tail is anchored by the server itself: after setup, on an interval, at exit.

Without a checkpoint, someone with database access deletes the newest audit rows and
``audit verify`` still says ok. These tests play that attacker (on PostgreSQL through the
purge switch, on SQLite by dropping the trigger) right after a real setup.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from paulyops.cli.main import app as cli
from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN, AuditCheckpoint, AuditLog, Organization
from paulyops.core.settings import load_settings
from paulyops.services import audit
from paulyops.services.audit_anchor import AuditAnchor
from paulyops.services.onboarding.provision import ProvisionContext, provision
from paulyops.services.onboarding.spec import parse_spec
from tests.conftest import make_settings
from tests.services.test_audit import ORG, add_rows, bypassing_guard

SPEC = {
    "organization": {"name": "Acme", "industry": "other"},
    "owner": {"email": "olga@acme.example", "name": "Olga Owner"},
}
KEY = audit.signing_key(b"\x07" * 32)


def _report(db: Database, chain: str) -> audit.ChainReport:
    [report] = audit.verify(db, KEY.public_key(), chain=chain).chains
    return report


def test_provision_anchors_the_chains_it_wrote(db):
    """A provision signs the heads of its organization's chain and the instance chain."""
    ctx = ProvisionContext(
        actor=audit_actor(),
        jwt_secret="x" * 40,
        public_url="http://x",
        data_dir=Path("/nonexistent"),
        checkpoint_key=KEY,
    )
    result = provision(db, parse_spec(SPEC), ctx)
    for chain in (result.organization_id, INSTANCE_CHAIN):
        report = _report(db, chain)
        assert report.status == "ok"
        assert report.checkpoints_checked == 1
        assert report.unanchored == 0, chain
    assert "checkpoint_key" not in repr(ctx)


def audit_actor():
    """The actor of these provisions."""
    from paulyops.services.actor import SYSTEM

    return SYSTEM


def test_verify_counts_rows_after_the_newest_checkpoint(db):
    """unanchored = rows written after the newest signed head (0 right after signing)."""
    add_rows(db, 3)
    assert _report(db, ORG).unanchored == 3
    audit.checkpoint(db, KEY, ORG)
    assert _report(db, ORG).unanchored == 0
    add_rows(db, 2)
    report = _report(db, ORG)
    assert (report.status, report.unanchored) == ("ok", 2)


def test_anchor_signs_only_chains_with_new_rows(db):
    """One round signs each chain with new rows; an idle round writes nothing."""
    add_rows(db, 2)
    add_rows(db, 1, chain=INSTANCE_CHAIN)
    anchor = AuditAnchor(db, KEY, interval=0)
    assert anchor.run_once() == 2
    assert anchor.run_once() == 0
    add_rows(db, 1)
    anchor.stop()  # shutdown signs what is left
    assert _report(db, ORG).unanchored == 0
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 3


def test_deleting_the_newest_row_is_detected_once_anchored(db):
    """After the anchor ran, deleting the newest row makes verify report truncation."""
    add_rows(db, 4)
    AuditAnchor(db, KEY, interval=0).run_once()
    with bypassing_guard(db) as conn:
        conn.execute(text("DELETE FROM audit_logs WHERE chain = :c AND seq = 4"), {"c": ORG})
    report = _report(db, ORG)
    assert report.status == "broken"
    assert report.problem is not None
    assert report.problem.kind == "truncated"


# --- the server ------------------------------------------------------------------------------


def _server(tmp_path: Path, db_url: str, interval: str) -> TestClient:
    from paulyops.web.app import create_app

    settings = make_settings(
        tmp_path, DATABASE_URL=db_url, PAULYOPS_AUDIT_CHECKPOINT_INTERVAL_S=interval
    )
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def _unanchored(db_url: str, key: audit.Ed25519PrivateKey) -> int:
    database = Database(db_url)
    try:
        return audit.verify(database, key.public_key()).unanchored
    finally:
        database.close()


def test_server_signs_new_rows_on_its_interval(tmp_path, db_url):
    """A running server anchors rows written by anyone within its interval."""
    with _server(tmp_path, db_url, "0.2") as client:
        instance = client.app.state.instance
        assert instance.ready.wait(20)
        key = audit.signing_key(instance.settings)
        add_rows(instance.db, 3)
        deadline = time.monotonic() + 15
        while _unanchored(db_url, key) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _unanchored(db_url, key) == 0


def test_server_signs_new_rows_at_shutdown(tmp_path, db_url):
    """With the interval off, the server still anchors everything when it stops."""
    with _server(tmp_path, db_url, "0") as client:
        instance = client.app.state.instance
        assert instance.ready.wait(20)
        key = audit.signing_key(instance.settings)
        add_rows(instance.db, 3)
        assert _unanchored(db_url, key) > 0
    assert _unanchored(db_url, key) == 0


# --- after a real setup, from the terminal ---------------------------------------------------


@pytest.fixture
def set_up(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance root after `paulyops setup --quick` on the test database."""
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("DATABASE_URL", db_url)
    root = tmp_path / "instance"
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
    monkeypatch.setenv("PAULYOPS_HOME", str(root))
    return root


def test_setup_leaves_nothing_unanchored(set_up):
    """`audit verify` right after setup: ok, and it says no row is unanchored."""
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "Unanchored rows: 0" in result.output


@pytest.mark.parametrize("chain_of", ["organization", "instance"])
def test_deleting_the_newest_row_after_setup_is_detected(set_up, db_url, chain_of):
    """Delete the newest row of a chain straight in the database: verify exits 1."""
    database = Database(db_url)
    try:
        with database.session() as session:
            org_id = session.scalar(select(Organization.id))
            chain = org_id if chain_of == "organization" else INSTANCE_CHAIN
            newest = session.scalar(select(func.max(AuditLog.seq)).where(AuditLog.chain == chain))
        with bypassing_guard(database) as conn:
            conn.execute(
                text("DELETE FROM audit_logs WHERE chain = :c AND seq = :s"),
                {"c": chain, "s": newest},
            )
    finally:
        database.close()
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert "truncated" in result.output


def test_verify_prints_the_unanchored_count(set_up, db_url):
    """Rows written after the newest checkpoint are counted and explained."""
    settings = load_settings(root=set_up)
    database = Database(db_url)
    try:
        add_rows(database, 2, chain=INSTANCE_CHAIN)
    finally:
        database.close()
    assert settings.instance_key is not None
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "2 row(s) follow the newest signed checkpoint" in result.output
