"""``paulyops ingest scan`` and ``paulyops documents list | show`` against a real local folder."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.models import StorageConfig
from paulyops.core.db.scoped import OrgScope
from tests.conftest import fresh_secrets
from tests.factories import make_org


@pytest.fixture
def env(tmp_path, db_url):
    return {
        **fresh_secrets(),
        "PAULYOPS_HOME": str(tmp_path),
        "PAULYOPS_ENV": "test",
        "DATABASE_URL": db_url,
    }


def test_scan_then_list_and_show_the_journey(env, db, tmp_path):
    """A file in inbox is picked up by a scan, listed, and shown with its events."""
    org = make_org(db, "acme")
    store = tmp_path / "store"
    (store / "inbox").mkdir(parents=True)
    (store / "inbox" / "a\u202etxt.exe").write_bytes(b"%PDF-1.4 invoice")
    with db.write_session() as session:
        OrgScope(session, org.id).add(
            StorageConfig(
                name="files",
                provider="local",
                settings={"path": str(store)},
                backup_strategy="local",
                retention_days=30,
                status="connected",
            )
        )
    scan = CliRunner().invoke(app, ["ingest", "scan", "--settle", "0"], env=env)
    assert scan.exit_code == 0, scan.output
    assert "files" in scan.output
    listed = CliRunner().invoke(app, ["documents", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["total"] == 1
    [doc] = data["items"]
    assert doc["mediaType"] == "application/pdf"
    shown = CliRunner().invoke(app, ["documents", "show", doc["id"]], env=env)
    assert shown.exit_code == 0, shown.output
    assert "found" in shown.output
    assert "\u202e" not in shown.output  # the name cannot steer the terminal
    other = make_org(db, "other")
    missing = CliRunner().invoke(
        app, ["documents", "show", doc["id"], "--org", other.slug], env=env
    )
    assert missing.exit_code != 0
