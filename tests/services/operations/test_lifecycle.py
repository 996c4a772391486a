"""Backups, upgrade and reset: real databases at real older revisions, real failures.

The upgrade tests build their starting database from an older migration head in the test
(never a committed binary), and make a migration fail the way a hand-edited database does:
an object already exists where the next migration creates it.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db import migrate
from paulyops.core.db.engine import Database
from paulyops.core.settings import Settings, ensure_secrets, load_settings
from paulyops.services.actor import SYSTEM
from paulyops.services.backups import instance as backups
from paulyops.services.operations import lifecycle
from tests.conftest import NO_PG, PG_URL
from tests.support.pgdb import throwaway_database

OLD_HEAD = "0004"  # the first wave's head: invitations, password links, ... come after it
runner = CliRunner()


def _database_url(kind: str) -> contextlib.AbstractContextManager[str | None]:
    if kind == "sqlite":
        return contextlib.nullcontext(None)
    if not PG_URL:
        pytest.skip(NO_PG)
    return throwaway_database(PG_URL, "lifecycle")


@pytest.fixture(params=["sqlite", "postgresql"])
def instance(request, tmp_path, monkeypatch) -> Iterator[tuple[Settings, Database]]:
    """An instance root with secrets, on SQLite or a throwaway PostgreSQL database."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.delenv(backups.BACKUP_KEY_VAR, raising=False)
    with _database_url(request.param) as url:
        if url:
            monkeypatch.setenv("DATABASE_URL", url)
        settings, _generated = ensure_secrets(load_settings(root=tmp_path))
        db = Database(settings.effective_database_url)
        db.connect(attempts=3)
        try:
            yield settings, db
        finally:
            db.close()


def _rows(db: Database, sql: str) -> list[tuple]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _seed_at_old_head(db: Database) -> None:
    migrate.upgrade(db, OLD_HEAD)
    _seed_org(db)


def test_backup_round_trip_restores_database_and_configuration(instance):
    """A backup restores rows and .env.local exactly; the file is private and encrypted."""
    settings, db = instance
    _seed_at_old_head(db)
    env = settings.root / ".env.local"
    info = backups.create(settings, db, reason="manual", revision=OLD_HEAD)
    assert info.path.stat().st_mode & 0o777 == 0o600
    assert b"Acme" not in info.path.read_bytes()
    saved_env = env.read_text()
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM organizations"))
    env.write_text(saved_env + "EXTRA=1\n")
    restored = backups.restore(settings, db, info.path, config=True)
    assert restored.revision == OLD_HEAD
    fresh = Database(settings.effective_database_url)  # restore closed the old pool
    try:
        assert _rows(fresh, "SELECT slug FROM organizations") == [("acme",)]
    finally:
        fresh.close()
    assert env.read_text() == saved_env


@pytest.mark.parametrize(
    "damage",
    ["flip", "truncate", "extend", "other-key", "not-a-backup"],
)
def test_a_damaged_or_foreign_backup_is_refused_before_anything_changes(instance, damage):
    """Every changed byte, cut, extension or wrong key is named; the database stays."""
    settings, db = instance
    _seed_at_old_head(db)
    info = backups.create(settings, db, reason="manual", revision=OLD_HEAD)
    data = bytearray(info.path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[:-5]
    elif damage == "extend":
        data += b"x"
    elif damage == "not-a-backup":
        data = bytearray(b"PK\x03\x04 a zip file")
    info.path.write_bytes(bytes(data))
    if damage == "other-key":
        os.environ[backups.BACKUP_KEY_VAR] = "A" * 43
    try:
        with pytest.raises(backups.BackupError) as caught:
            backups.restore(settings, db, info.path, config=True)
    finally:
        os.environ.pop(backups.BACKUP_KEY_VAR, None)
    assert info.path.name in caught.value.message
    assert _rows(db, "SELECT slug FROM organizations") == [("acme",)]


def test_encryption_binds_chunk_order_and_the_last_chunk():
    """Swapping two chunks or dropping the last is detected (multi-chunk stream)."""
    key = os.urandom(32)
    plain = os.urandom(backups.CHUNK * 2 + 10)
    sealed = io.BytesIO()
    backups.encrypt_stream(io.BytesIO(plain), sealed, key)
    out = io.BytesIO()
    backups.decrypt_stream(io.BytesIO(sealed.getvalue()), out, key, name="b")
    assert out.getvalue() == plain
    raw = sealed.getvalue()
    header = len(backups.MAGIC) + 16
    size = 4 + backups.CHUNK + 16
    first, second = raw[header : header + size], raw[header + size : header + 2 * size]
    swapped = raw[:header] + second + first + raw[header + 2 * size :]
    with pytest.raises(backups.BackupError, match="chunk 0"):
        backups.decrypt_stream(io.BytesIO(swapped), io.BytesIO(), key, name="b")
    with pytest.raises(backups.BackupError, match="cut short"):
        backups.decrypt_stream(io.BytesIO(raw[: header + 2 * size]), io.BytesIO(), key, name="b")


def test_upgrade_from_an_older_head_keeps_the_data_and_reports_each_step(instance):
    """From the first wave's head to today's: rows kept, each migration named, backup made."""
    settings, db = instance
    _seed_at_old_head(db)
    report = lifecycle.upgrade(settings, db)
    assert report.before == OLD_HEAD
    assert report.after == migrate.head_revision(db)
    assert report.migrations[0].revision == "0005b"
    assert all(m.summary for m in report.migrations)
    assert report.backup is not None
    assert report.backup.path.is_file()
    assert _rows(db, "SELECT slug FROM organizations") == [("acme",)]
    again = lifecycle.upgrade(settings, db)
    assert again.migrations == []
    assert again.backup is None


def test_a_failing_migration_restores_the_backup_and_says_so(instance):
    """A table in the way of 0005b: the upgrade fails, the database is back at 0004."""
    settings, db = instance
    _seed_at_old_head(db)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE invitations (id INTEGER PRIMARY KEY, note TEXT)"))
    with pytest.raises(lifecycle.UpgradeFailedError) as caught:
        lifecycle.upgrade(settings, db)
    assert "restored from" in caught.value.message
    assert f"back at revision {OLD_HEAD}" in caught.value.message
    fresh = Database(settings.effective_database_url)
    fresh.connect(attempts=3)
    try:
        assert migrate.current_revision(fresh) == OLD_HEAD
        tables = set(inspect(fresh.engine).get_table_names())
        assert "password_links" not in tables  # nothing of the failed step remains
        assert "invitations" in tables  # what was there before is there again
        assert _rows(fresh, "SELECT slug FROM organizations") == [("acme",)]
    finally:
        fresh.close()


def test_reset_backs_up_starts_over_and_keeps_the_customers_files(instance, tmp_path):
    """Reset: organizations gone, a new setup token, storage kept; an outside folder untouched."""
    settings, db = instance
    migrate.upgrade(db)
    _seed_org(db)
    storage = settings.data_dir / "storage"
    (storage / "inbox").mkdir(parents=True)
    (storage / "inbox" / "invoice.pdf").write_bytes(b"%PDF")
    report = lifecycle.reset(settings, db, include_files=False, actor=SYSTEM)
    assert report.backup.path.is_file()
    assert report.setup_token
    assert _rows(db, "SELECT count(*) FROM organizations") == [(0,)]
    assert (storage / "inbox" / "invoice.pdf").read_bytes() == b"%PDF"
    assert (settings.root / ".env.local").is_file()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    lifecycle.reset(settings, db, include_files=True, actor=SYSTEM)
    assert not storage.exists()
    assert (outside / "keep.txt").read_text() == "mine"


def _seed_org(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO organizations (id, slug, name, industry, compliance_level, size, "
                "rbac_model, spec_hash, settings, created_at, updated_at) VALUES ('org_1', "
                "'acme', 'Acme', 'retail', 'basic', 'small', 'simple', '', '{}', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )


def test_reset_asks_first_and_changes_nothing_on_no(tmp_path, monkeypatch):
    """Without --yes the command asks; answering no changes nothing (exit 1)."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    result = runner.invoke(
        app,
        [
            "setup",
            "--quick",
            "--org-name",
            "Acme",
            "--owner-email",
            "o@acme.example",
            "--owner-name",
            "O",
        ],
    )
    assert result.exit_code == 0, result.output
    answer = runner.invoke(app, ["reset"], input="n\n")
    assert answer.exit_code == 1
    assert "Nothing changed" in answer.output
    assert not (tmp_path / "backups").exists()
    assert (tmp_path / "configs" / "setup.json").is_file()
