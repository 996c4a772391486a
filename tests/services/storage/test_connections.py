"""Storage connections as use cases: one command, one audit row, secrets never returned."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog, StorageConfig
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.fields import bind_keyring, read_secret_json
from paulyops.core.settings import decode_key, new_encryption_key
from paulyops.core.vocabulary import RETENTION_MAX_DAYS
from paulyops.services.actor import Actor
from paulyops.services.commands import CommandError, parse
from paulyops.services.storage import connections
from paulyops.services.storage.connections import AddStorage
from tests.factories import make_org

OWNER = Actor("user", "usr_test", "127.0.0.1")


@pytest.fixture
def keyring(db: Database) -> KeyRing:
    """Give the database's sessions an encryption key ring, as the app and CLI do at start."""
    ring = KeyRing(decode_key(new_encryption_key()))
    bind_keyring(db, ring)
    return ring


def _errors(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(CommandError) as caught:
        parse(AddStorage, data)
    return {item.field: item.message for item in caught.value.errors}


def test_add_storage_command_names_each_bad_field_on_the_wire():
    """Bad provider settings, retention and backup strategy come back under wire names."""
    assert set(_errors({"provider": "s3", "name": "Bad Name", "bucket": "x"})) == {
        "name",
        "bucket",
    }
    assert set(_errors({"provider": "local", "retentionDays": 0, "backupStrategy": "x"})) == {
        "retentionDays",
        "backupStrategy",
    }
    assert "provider" in _errors({"provider": "ftp"})
    too_long = _errors({"provider": "local", "retention_days": RETENTION_MAX_DAYS + 1})
    assert too_long == {"retentionDays": f"expected at most {RETENTION_MAX_DAYS}, got 36501"}


def test_add_storage_command_reads_only_the_chosen_providers_settings():
    """Settings of other providers are ignored, blank ones count as not given."""
    command = parse(
        AddStorage,
        {
            "provider": "s3",
            "name": "archive",
            "bucket": "acme-archive",
            "appKey": "x",
            "region": "",
        },
    )
    assert command.connection.model_dump(by_alias=True, exclude_none=True) == {
        "type": "s3",
        "name": "archive",
        "bucket": "acme-archive",
    }


def test_add_storage_schema_carries_the_bounds_forms_show():
    """The JSON Schema holds the retention bounds and backup choices the console renders."""
    schema = AddStorage.model_json_schema()
    retention = schema["properties"]["retentionDays"]
    assert (retention["minimum"], retention["maximum"]) == (1, RETENTION_MAX_DAYS)
    assert schema["$defs"]["BackupStrategy"]["enum"] == ["local", "cloud", "hybrid"]


def test_add_check_remove_write_one_audit_row_each(db: Database, keyring: KeyRing, tmp_path: Path):
    """Each use case changes the row and records exactly one audit row; secrets stay out."""
    org = make_org(db, "acme")
    secret = "very-secret-value"
    with db.write_session() as session:
        scope = OrgScope(session, org.id)
        command = parse(
            AddStorage,
            {
                "provider": "s3",
                "name": "archive",
                "bucket": "acme-archive",
                "accessKeyId": "AKIAEXAMPLE",
                "secretAccessKey": secret,
                "retentionDays": "90",
                "backupStrategy": "hybrid",
            },
        )
        view = connections.add_storage(scope, command, actor=OWNER)
        assert view.credentials == ["accessKeyId", "secretAccessKey"]
        assert secret not in repr(view)
        with pytest.raises(ConflictError):
            connections.add_storage(scope, command, actor=OWNER)
        local = connections.add_storage(
            scope, parse(AddStorage, {"provider": "local", "name": "files"}), actor=OWNER
        )
        tested = connections.check_storage(
            scope, storage_id=local.id, data_dir=tmp_path, actor=OWNER
        )
    assert tested.ok is True
    with db.session() as session:
        row = session.get(StorageConfig, view.id)
        assert (row.retention_days, row.backup_strategy) == (90, "hybrid")
        assert read_secret_json(row, "credentials")["secretAccessKey"] == secret
        assert session.get(StorageConfig, local.id).status == "connected"
    with db.write_session() as session:
        removed = connections.remove_storage(
            OrgScope(session, org.id), storage_id=view.id, actor=OWNER
        )
    assert removed.name == "archive"
    with db.session() as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.chain == org.id).order_by(AuditLog.seq)
        ).all()
        changes = session.scalars(select(AuditLog.changes)).all()
    assert [a for a in actions if a.startswith("storage.")] == [
        "storage.created",
        "storage.created",
        "storage.tested",
        "storage.removed",
    ]
    assert secret not in str(changes)


def test_members_cannot_point_a_local_connection_outside_their_storage(db: Database):
    """Absolute paths and '..' are for platform administrators only (field ``path``)."""
    org = make_org(db, "acme")
    with db.write_session() as session:
        scope = OrgScope(session, org.id)
        # '..' never parses; an absolute path parses but is refused for members.
        with pytest.raises(CommandError) as climbing:
            parse(AddStorage, {"provider": "local", "name": "x", "path": "../other-org"})
        absolute = parse(AddStorage, {"provider": "local", "name": "x", "path": "/etc"})
        with pytest.raises(CommandError) as elsewhere:
            connections.add_storage(scope, absolute, actor=OWNER)
        for caught in (climbing, elsewhere):
            assert [item.field for item in caught.value.errors] == ["path"]
        allowed = parse(AddStorage, {"provider": "local", "name": "srv", "path": "/srv/docs"})
        view = connections.add_storage(scope, allowed, actor=OWNER, may_use_server_paths=True)
    assert view.settings == {"path": "/srv/docs"}
