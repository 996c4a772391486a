"""Key management: re-encryption over every encrypted field, retiring keys, and the use
cases behind `paulyops keys`, each writing its own audit row."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select, update

from paulyops.core.db.models import AgentInstallation, AuditLog, Organization, StorageConfig, User
from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.core.instance import Instance
from paulyops.core.security.crypto import DecryptionError, KeyRing
from paulyops.core.security.fields import read_secret, write_secret
from paulyops.core.settings import (
    ENV_FILE_NAME,
    key_id,
    load_settings,
    read_env_file,
    write_env_values,
)
from paulyops.services import keys
from paulyops.services.actor import CLI, Actor
from paulyops.services.commands import CommandError, parse
from paulyops.services.keys import keys_in_use, reencrypt_all, retire_key, rotate_env_file
from tests.conftest import fresh_secrets

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)
RING = KeyRing(KEY_A)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def write_env(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o644)


def new_org(n: int = 0) -> Organization:
    return Organization(
        slug=f"org-{n}",
        name=f"Org {n}",
        industry="general",
        compliance_level="basic",
        size="small",
        rbac_model="simple",
        spec_hash="0" * 64,
    )


def new_storage(org: Organization, n: int) -> StorageConfig:
    return StorageConfig(
        organization_id=org.id,
        name=f"store-{n}",
        provider="s3",
        backup_strategy="local",
        retention_days=30,
    )


# --- mechanisms: reencrypt, keys in use, retire ---------------------------------------------


def seed_secrets(db, ring: KeyRing, count: int = 3) -> dict[str, bytes]:
    """Store `count` secrets in each built-in encrypted field; return plaintext by row id."""
    plain: dict[str, bytes] = {}
    with db.session() as session:
        org = new_org()
        session.add(org)
        session.flush()
        for n in range(count):
            user = User(email=f"u{n}@example.com", name=f"User {n}")
            store = new_storage(org, n)
            inst = AgentInstallation(
                organization_id=org.id, agent_id=f"paulyops.agent{n}", version="1.0.0"
            )
            for obj, attr in ((user, "totp_secret"), (store, "credentials"), (inst, "config")):
                value = f"{attr}-{n}".encode()
                write_secret(obj, attr, value, ring=ring)
                plain[obj.id] = value
                session.add(obj)
    return plain


def read_all(db, ring: KeyRing) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with db.session() as session:
        for model, attr in (
            (User, "totp_secret"),
            (StorageConfig, "credentials"),
            (AgentInstallation, "config"),
        ):
            for obj in session.scalars(select(model)):
                out[obj.id] = read_secret(obj, attr, ring=ring)
    return out


def test_reencrypt_moves_everything_to_the_new_key_and_resumes(db):
    """Stopped after some batches, a second run finishes; every value then uses the new key."""
    old_ring = KeyRing(KEY_A)
    plain = seed_secrets(db, old_ring)
    new_ring = KeyRing(KEY_B, [KEY_A])
    assert keys_in_use(db, new_ring) == {key_id(KEY_B): 0, key_id(KEY_A): 9}

    partial = reencrypt_all(db, new_ring, batch_size=1, max_batches=4)
    assert not partial.complete
    assert partial.reencrypted == 4
    assert keys_in_use(db, new_ring) == {key_id(KEY_B): 4, key_id(KEY_A): 5}

    rest = reencrypt_all(db, new_ring, batch_size=1)
    assert rest.complete
    assert rest.reencrypted == 5
    assert sum(c.skipped for c in rest.fields.values()) == 4
    assert keys_in_use(db, new_ring) == {key_id(KEY_B): 9, key_id(KEY_A): 0}
    assert read_all(db, KeyRing(KEY_B)) == plain

    again = reencrypt_all(db, new_ring, batch_size=2)
    assert again.complete
    assert again.reencrypted == 0


def test_reencrypt_stops_on_a_value_that_does_not_decrypt(db):
    """A value bound to another row stops the run with DecryptionError; earlier batches stay."""
    ring = KeyRing(KEY_A)
    seed_secrets(db, ring, count=2)
    with db.session() as session:
        first, second = session.scalars(select(User).order_by(User.id)).all()
        session.execute(
            update(User).where(User.id == second.id).values(totp_secret=first.totp_secret)
        )
    with pytest.raises(DecryptionError, match=r"users\.totp_secret"):
        reencrypt_all(db, KeyRing(KEY_B, [KEY_A]), batch_size=1)
    assert keys_in_use(db, KeyRing(KEY_B, [KEY_A]))[key_id(KEY_B)] == 1


def test_keys_in_use_counts_malformed_values(db):
    """Values that are not ring ciphertext are counted under 'malformed'."""
    with db.session() as session:
        session.add(User(email="raw@example.com", name="Raw", totp_secret=b"plain"))
    assert keys_in_use(db, RING) == {RING.active_key_id: 0, "malformed": 1}


def test_retire_refuses_while_in_use_then_removes_the_key(db, tmp_path):
    """Retiring a key still in use is a conflict; after reencryption it leaves the file."""
    env = tmp_path / ENV_FILE_NAME
    write_env(env, f"JWT_SECRET=keep\nENCRYPTION_KEY={b64(KEY_A)}\n")
    seed_secrets(db, KeyRing(KEY_A), count=1)
    rotate_env_file(env, environ={})
    ring = KeyRing.from_settings(load_settings(root=tmp_path, environ={}), environ={})

    with pytest.raises(ConflictError, match=rf"{key_id(KEY_A)} still encrypts 3"):
        retire_key(env, db, ring, key_id(KEY_A))
    assert b64(KEY_A) in read_env_file(env)["ENCRYPTION_KEYS_PREVIOUS"]

    reencrypt_all(db, ring)
    result = retire_key(env, db, ring, key_id(KEY_A))
    values = read_env_file(env)
    assert result.previous_key_ids == ()
    assert values["ENCRYPTION_KEYS_PREVIOUS"] == ""
    assert values["PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT"] == ""
    assert values["JWT_SECRET"] == "keep"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert b64(KEY_A) not in repr(result)
    remaining = KeyRing.from_settings(load_settings(root=tmp_path, environ={}), environ={})
    assert read_all(db, remaining)


def test_retire_refuses_the_active_key_and_unknown_ids(db, tmp_path):
    """The active key cannot be retired; an id not in the file is not found."""
    env = tmp_path / ENV_FILE_NAME
    write_env(env, f"ENCRYPTION_KEY={b64(KEY_A)}\n")
    ring = KeyRing(KEY_A)
    with pytest.raises(ConflictError, match="active"):
        retire_key(env, db, ring, key_id(KEY_A))
    with pytest.raises(NotFoundError, match="deadbeef"):
        retire_key(env, db, ring, "deadbeef")


# --- use cases --------------------------------------------------------------------------

ADMIN = Actor("user", "usr_01ADMIN", "203.0.113.9")


@pytest.fixture
def instance(tmp_path, db_url):
    """A started instance whose secrets live in its .env.local (rotation rewrites it)."""
    write_env_values(tmp_path / ENV_FILE_NAME, fresh_secrets())
    settings = load_settings(
        root=tmp_path, environ={"PAULYOPS_ENV": "test", "DATABASE_URL": db_url}
    )
    started = Instance(settings, migrate_on_start=False)
    started.start(background=False)
    yield started
    started.close()


def key_rows(instance: Instance) -> list[AuditLog]:
    with instance.db.session() as session:
        return list(
            session.scalars(
                select(AuditLog).where(AuditLog.action.like("keys.%")).order_by(AuditLog.seq)
            )
        )


def test_each_use_case_writes_its_own_audit_row(instance):
    """rotate, reencrypt, a refused and a done retire, and rotate_signing each append one
    instance-level row with the actor, key ids and counts, and no key material."""
    env = instance.settings.root / ENV_FILE_NAME
    old_key = read_env_file(env)["ENCRYPTION_KEY"]
    old_id = instance.keyring.active_key_id
    with instance.db.write_session() as session:
        user = User(email="a@example.com", name="A")
        session.add(user)
        write_secret(user, "totp_secret", b"JBSWY3DPEHPK3PXP")
    rotated = keys.rotate(instance, ADMIN)
    ring = KeyRing.from_settings(load_settings(root=instance.settings.root, environ={}))
    instance.keyring.adopt(ring)  # what the watcher of a running server does
    with pytest.raises(ConflictError, match="still encrypts 1"):
        keys.retire(instance, keys.RetireKey(key_id=old_id), ADMIN)
    outcome = keys.reencrypt(instance, keys.Reencrypt(batch_size=1), ADMIN)
    assert outcome.result.reencrypted == 1
    assert outcome.retirable_keys == [old_id]
    retired = keys.retire(instance, keys.RetireKey(key_id=old_id), ADMIN)
    assert retired.previous_key_ids == ()
    keys.rotate_signing(instance, CLI)

    rows = key_rows(instance)
    assert [(r.chain, r.action, r.outcome, r.actor_type) for r in rows] == [
        ("instance", "keys.rotated", "success", "user"),
        ("instance", "keys.retired", "failure", "user"),
        ("instance", "keys.reencrypted", "success", "user"),
        ("instance", "keys.retired", "success", "user"),
        ("instance", "keys.signing_rotated", "success", "cli"),
    ]
    assert rows[0].target_id == rotated.new_key_id
    assert rows[0].client_address == "203.0.113.9"
    assert rows[2].changes == {"reencrypted": 1, "changed_concurrently": 0}
    dumped = json.dumps([r.changes for r in rows])
    assert old_id in dumped
    assert old_key not in dumped
    assert read_env_file(env)["ENCRYPTION_KEY"] not in dumped


def test_status_reports_each_key_and_values_it_cannot_open(instance):
    """status lists the ring's keys with their counts, then stored values it cannot open."""
    with instance.db.write_session() as session:
        session.add(User(email="raw@example.com", name="Raw", totp_secret=b"plain"))
    report = keys.status(instance)
    assert [(k.key_id, k.role, k.stored) for k in report.keys] == [
        (instance.keyring.active_key_id, "active", 0),
        ("malformed", "malformed", 1),
    ]
    assert report.strays == [report.keys[1]]
    assert report.unused_keys == []


def test_retire_key_command_refuses_a_pasted_key_without_echoing_it():
    """The key id rule lives in the command: a pasted key fails without appearing in the error."""
    pasted = b64(KEY_A)
    with pytest.raises(CommandError) as info:
        parse(keys.RetireKey, {"keyId": pasted})
    assert "8 hex" in str(info.value)
    assert pasted not in str(info.value)
    assert pasted not in repr(info.value.errors)
    assert parse(keys.RetireKey, {"keyId": " DEADBEEF "}).key_id == "deadbeef"
    with pytest.raises(CommandError, match="batchSize"):
        parse(keys.Reencrypt, {"batchSize": 0})
