"""``paulyops marketplace``: trust add/list/revoke, search and show, on a real database."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.models import INSTANCE_CHAIN, AuditLog
from paulyops.core.db.scoped import OrgScope
from paulyops.core.security.signatures import generate_key, public_key_id, save_public_key
from paulyops.core.settings import write_env_values
from paulyops.services.actor import SYSTEM
from paulyops.services.marketplace import store
from paulyops.services.marketplace.errors import PackageError
from tests.conftest import fresh_secrets
from tests.factories import make_org
from tests.services.marketplace.packages import signed_package


@pytest.fixture
def instance_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An instance root in tmp_path with test secrets in .env.local, on the test database."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    write_env_values(tmp_path / ".env.local", fresh_secrets())
    return tmp_path


def run(*args: str):
    """Invoke ``paulyops marketplace ARGS``."""
    return CliRunner().invoke(app, ["marketplace", *args])


def _key_file(tmp_path: Path, publisher: str | None = "acme"):
    key = generate_key()
    path = tmp_path / f"{public_key_id(key)}.pub"
    save_public_key(key.public_key(), path, publisher=publisher)
    return key, path


def _upload(db, org_id, data):
    with db.write_session() as session:
        return store.upload_package(
            OrgScope(session, org_id), store.UploadPackage(), io.BytesIO(data), actor=SYSTEM
        )[0]


def test_trust_add_list_and_revoke_a_key(instance_root, db, tmp_path):
    """add trusts the key for its namespace, list shows it, revoke stops it validating."""
    org = make_org(db, "acme")
    key, path = _key_file(tmp_path)
    added = run("trust", "add", str(path), "--publisher", "acme")
    assert added.exit_code == 0, added.output
    assert f"Trusted key {public_key_id(key)} for acme.*" in added.output
    again = run("trust", "add", str(path), "--publisher", "acme")
    assert again.exit_code == 7, again.output  # ConflictError
    listed = run("trust", "list", "--json")
    assert listed.exit_code == 0, listed.output
    keys = json.loads(listed.stdout)["keys"]
    assert [(k["keyId"], k["namespace"], k["revoked"]) for k in keys] == [
        (public_key_id(key), "acme.*", False)
    ]
    assert _upload(db, org.id, signed_package(key)).created
    revoked = run("trust", "revoke", public_key_id(key), "--reason", "leaked")
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked key {public_key_id(key)}" in revoked.output
    with pytest.raises(PackageError, match=r"revoked \(leaked\)"):
        _upload(db, org.id, signed_package(key, version="2.0.0"))
    table = run("trust", "list")
    assert "revoked" in table.output
    assert "leaked" in table.output
    with db.session() as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.chain == INSTANCE_CHAIN)
        ).all()
    assert {"marketplace.key_trusted", "marketplace.key_revoked"} <= set(actions)


def test_trust_add_takes_the_publisher_from_the_key_file(instance_root, db, tmp_path):
    """Without --publisher the '# publisher:' line decides; with neither, exit code 4."""
    _key, path = _key_file(tmp_path, publisher="globex")
    result = run("trust", "add", str(path))
    assert result.exit_code == 0, result.output
    assert "globex.*" in result.output
    _key, bare = _key_file(tmp_path, publisher=None)
    refused = run("trust", "add", str(bare))
    assert refused.exit_code == 4
    assert "--publisher" in refused.output
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key\n")
    bad = run("trust", "add", str(garbage), "--publisher", "acme")
    assert bad.exit_code == 3
    assert "not an Ed25519 public key" in bad.output


def test_trust_revoke_a_version_and_refuse_half_a_target(instance_root, db, tmp_path):
    """--agent with --version revokes that version; either alone is a usage error."""
    org = make_org(db, "acme")
    key, path = _key_file(tmp_path)
    assert run("trust", "add", str(path)).exit_code == 0
    half = run("trust", "revoke", "--agent", "acme.hello")
    assert half.exit_code == 3, half.output
    done = run("trust", "revoke", "--agent", "acme.hello", "--version", "1.0.0")
    assert done.exit_code == 0, done.output
    assert "Revoked acme.hello 1.0.0" in done.output
    with pytest.raises(PackageError, match="was revoked"):
        _upload(db, org.id, signed_package(key))
    unknown = run("trust", "revoke", "deadbeef")
    assert unknown.exit_code == 5


def test_search_and_show_list_what_an_organization_sees(instance_root, db, tmp_path):
    """--org shows its own uploads; without it only instance-wide packages are listed."""
    org = make_org(db, "acme")
    key, path = _key_file(tmp_path)
    assert run("trust", "add", str(path)).exit_code == 0
    _upload(db, org.id, signed_package(key))
    assert "No agents match" in run("search", "zebra").output
    assert "acme.hello" not in run("search").output
    found = run("search", "counts words", "--org", "acme", "--json")
    assert found.exit_code == 0, found.output
    assert [a["id"] for a in json.loads(found.stdout)] == ["acme.hello"]
    shown = run("show", "acme.hello", "--org", "acme")
    assert shown.exit_code == 0, shown.output
    assert "Raise alerts that people in the organization are told about." in shown.output
    assert "Uploaded by your organization" in shown.output
    missing = run("show", "acme.hello")
    assert missing.exit_code == 5
    bad = run("search", "--industry", "space")
    assert bad.exit_code == 3


def test_search_and_show_list_the_bundled_agents_without_an_organization(instance_root, db):
    """The bundled agents are instance-wide: `search` and `show` list them with their badge."""
    found = run("search", "--json")
    assert found.exit_code == 0, found.output
    agents = {a["id"]: a for a in json.loads(found.stdout)}
    assert agents["paulyops.file-processor"]["badge"] == "bundled"
    shown = run("show", "paulyops.file-processor")
    assert shown.exit_code == 0, shown.output
    assert "Bundled with PaulyOps" in shown.output
