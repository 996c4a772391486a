"""``paulyops marketplace sources | catalog | publish``, as a publisher and an operator run them.

The commands are mounted through :func:`paulyops.cli.catalog.register` on a
``marketplace`` group of their own, the way the full marketplace group mounts them.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner, Result

from paulyops.cli.catalog import register
from paulyops.cli.context import CommandGroup
from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog
from paulyops.core.security.signatures import generate_key, save_private_key, save_public_key
from paulyops.core.settings import write_env_values
from paulyops.services.marketplace.build import assemble
from tests.conftest import fresh_secrets
from tests.services.marketplace.packages import agent_files, signed_package

root_app = typer.Typer(cls=CommandGroup)
marketplace = typer.Typer(cls=CommandGroup, no_args_is_help=True)
register(marketplace)
root_app.add_typer(marketplace, name="marketplace")


@root_app.callback()
def _root() -> None:
    """The test's ``paulyops``."""


@pytest.fixture
def instance_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An instance root with test secrets, on the test database; the working directory."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    write_env_values(tmp_path / ".env.local", fresh_secrets())
    return tmp_path


def run(*args: str) -> Result:
    """Invoke ``paulyops marketplace ARGS``."""
    return CliRunner().invoke(root_app, ["marketplace", *args])


@pytest.fixture
def author(instance_root: Path) -> Path:
    """An author key pair (acme.key, acme.key.pub) and a signed package acme.hello 1.0.0."""
    key = generate_key()
    save_private_key(key, instance_root / "acme.key")
    save_public_key(key.public_key(), instance_root / "acme.key.pub", publisher="acme")
    for version in ("1.0.0", "1.1.0"):
        (instance_root / f"acme.hello-{version}.pauly").write_bytes(
            signed_package(key, version=version)
        )
    return instance_root / "acme.key.pub"


def _audit(db: Database) -> list[str]:
    with db.session() as session:
        return [row.action for row in session.scalars(select(AuditLog).order_by(AuditLog.seq))]


def test_publish_pin_refresh_and_list(instance_root: Path, author: Path, db: Database) -> None:
    """A catalog made and published with the CLI is pinned by fingerprint and refreshed."""
    result = run("catalog", "init", "cat")
    assert result.exit_code == 0, result.output
    assert (instance_root / "cat-keys").is_dir()
    result = run("publish", "acme.hello-1.0.0.pauly", "--to", "cat", "--trust", str(author))
    assert result.exit_code == 0, result.output
    assert "new delegation acme.*" in result.output
    result = run("publish", "acme.hello-1.0.0.pauly", "--to", "cat")
    assert "in the catalog already" in result.output
    result = run("sources", "add", "cat")
    assert result.exit_code == 4
    match = re.search(r"--fingerprint ([0-9a-f]{64})", " ".join(result.output.split()))
    assert match is not None, result.output
    result = run("sources", "add", "cat", "--fingerprint", match[1])
    assert result.exit_code == 0, result.output
    result = run("catalog", "refresh")
    assert result.exit_code == 0, result.output
    assert "Catalog cat: updated, 1 package version(s)" in result.output
    assert run("publish", "acme.hello-1.1.0.pauly", "--to", "cat").exit_code == 0
    assert run("catalog", "yank", "cat", "acme.hello", "1.0.0", "--reason", "bug").exit_code == 0
    assert run("catalog", "renew", "cat").exit_code == 0
    result = run("catalog", "refresh", "cat")
    assert "Catalog cat: updated, 2 package version(s)" in result.output
    result = run("sources", "list")
    assert result.exit_code == 0, result.output
    assert "acme=" in result.output
    assert "timestamp=" in result.output
    assert "catalog_source.added" in _audit(db)
    assert run("sources", "remove", "cat").exit_code == 0
    assert "No catalog sources" in run("sources", "list").output


def test_refused_refresh_then_audited_repin(
    instance_root: Path, author: Path, db: Database
) -> None:
    """A rolled-back catalog is refused (exit 8) until `sources repin` accepts it, audited."""
    assert run("catalog", "init", "cat").exit_code == 0
    shutil.copytree(instance_root / "cat", instance_root / "old")
    assert run("publish", "acme.hello-1.0.0.pauly", "--to", "cat").exit_code == 0
    root = str(instance_root / "cat" / "metadata" / "1.root.json")
    assert run("sources", "add", "cat", "--root", root, "--name", "main").exit_code == 0
    assert run("catalog", "refresh", "main").exit_code == 0
    shutil.rmtree(instance_root / "cat")
    shutil.copytree(instance_root / "old", instance_root / "cat")
    result = run("catalog", "refresh")
    assert result.exit_code == 8
    assert "refused rolled-back metadata" in result.output
    assert "sources repin main" in " ".join(result.output.split())
    result = run("sources", "repin", "main", "--root", root)
    assert result.exit_code == 0, result.output
    assert "catalog_source.repinned" in _audit(db)
    result = run("catalog", "refresh", "main")
    assert result.exit_code == 0, result.output
    assert "0 package version(s)" in result.output


def test_expired_catalog_then_repin_accepting_it(
    instance_root: Path, author: Path, db: Database
) -> None:
    """An expired catalog is refused until `repin --accept-expired`; refreshes then warn."""
    from paulyops.services.marketplace.publish import renew

    assert run("catalog", "init", "cat").exit_code == 0
    assert run("publish", "acme.hello-1.0.0.pauly", "--to", "cat").exit_code == 0
    root = str(instance_root / "cat" / "metadata" / "1.root.json")
    assert run("sources", "add", "cat", "--root", root, "--name", "main").exit_code == 0
    renew(instance_root / "cat", expiry_days={"timestamp": -1, "snapshot": -1, "targets": -1})
    result = run("catalog", "refresh", "main")
    assert result.exit_code == 8
    assert "refused expired metadata" in result.output
    assert "--accept-expired" in result.output
    result = run("sources", "repin", "main", "--root", root, "--accept-expired")
    assert result.exit_code == 0, result.output
    assert "accepted expired metadata: acme v2, snapshot v3, targets v3, timestamp v3" in (
        " ".join(result.output.split())
    )
    assert "catalog_source.repinned" in _audit(db)
    result = run("catalog", "refresh", "main")
    assert result.exit_code == 0, result.output
    assert "1 package version(s)" in result.output
    assert "in use although expired (accepted by a repin): acme v2" in result.output
    assert "timestamp=3 (expired, accepted)" in run("sources", "list").output


def test_publish_refuses_unsigned_packages(instance_root: Path) -> None:
    """A catalog carries signed packages only."""
    assert run("catalog", "init", "cat").exit_code == 0
    (instance_root / "plain.pauly").write_bytes(assemble(agent_files()))
    result = run("publish", "plain.pauly", "--to", "cat")
    assert result.exit_code == 3
    assert "not signed" in result.output


def test_revoke_and_rotate_root(instance_root: Path, author: Path) -> None:
    """Revocations need ID==VERSION or a key id; a rotated root gets a new fingerprint."""
    assert run("catalog", "init", "cat", "--root-keys", "2", "--root-threshold", "2").exit_code == 0
    result = run("catalog", "revoke", "cat", "--version", "acme.hello")
    assert result.exit_code == 4
    assert "expected ID==VERSION" in result.output
    assert run("catalog", "revoke", "cat", "--version", "acme.hello==1.0.0").exit_code == 0
    result = run("catalog", "rotate-root", "cat", "--root-keys", "1")
    assert result.exit_code == 0, result.output
    assert (instance_root / "cat" / "metadata" / "2.root.json").is_file()
    result = run("catalog", "init", "cat")
    assert result.exit_code == 7
    assert "already holds a catalog" in result.output
