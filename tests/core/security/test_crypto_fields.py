"""Encrypted model fields: declared on the columns, bound to their row, read with the ring
of the instance whose database the row came from (never a process-wide one)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Organization, StorageConfig, User
from paulyops.core.errors import ConfigError
from paulyops.core.instance import Instance
from paulyops.core.security.crypto import DecryptionError, KeyRing
from paulyops.core.security.fields import (
    bind_keyring,
    encrypted_field,
    encrypted_fields,
    read_secret,
    read_secret_json,
    session_keyring,
    write_secret,
    write_secret_json,
)
from tests.conftest import make_settings

RING = KeyRing(os.urandom(32))


@pytest.fixture
def default_ring(db: Database) -> KeyRing:
    """Give the test database's sessions RING, as an Instance does with its own ring."""
    bind_keyring(db, RING)
    return RING


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


def test_the_registry_is_read_from_the_column_declarations():
    """Every column declared with encrypted_column() is a field, in declaration order."""
    assert [entry.name for entry in encrypted_fields()] == [
        "users.totp_secret",
        "storage_configs.credentials",
        "agent_installations.config",
        "wizard_drafts.data",
    ]
    entry = encrypted_field(StorageConfig, "credentials")
    assert entry.pk_attr == "id"
    assert entry.aad("stor_1").encoded == b"paulyops:v1|storage_configs|stor_1|credentials"


def test_helpers_without_a_ring_are_a_config_error(db):
    """Using the helpers with no ring given and none on the session is a ConfigError."""
    with db.session() as session:
        with pytest.raises(ConfigError, match="bind_keyring"):
            session_keyring(session)
        user = User(email="a@example.com", name="A")
        session.add(user)
        with pytest.raises(ConfigError, match="key ring"):
            write_secret(user, "totp_secret", b"x")
    with pytest.raises(ConfigError):
        write_secret(User(email="a@example.com", name="A"), "totp_secret", b"x")


def test_write_secret_assigns_the_id_and_binds_the_row(db, default_ring):
    """A secret written before the row has an id gets one, is stored encrypted and reads back."""
    with db.session() as session:
        org = new_org()
        session.add(org)
        session.flush()
        store = new_storage(org, 1)
        assert store.id is None
        write_secret_json(store, "credentials", {"access_key": "AKIA", "secret": "shh"}, ring=RING)
        assert store.id.startswith("stor_")
        session.add(store)
        store_id = store.id
    with db.session() as session:
        raw = session.scalar(select(StorageConfig.credentials).where(StorageConfig.id == store_id))
        assert b"shh" not in raw
        assert RING.key_id_of(raw) == RING.active_key_id
        loaded = session.get(StorageConfig, store_id)
        assert read_secret_json(loaded, "credentials") == {"access_key": "AKIA", "secret": "shh"}


def test_secret_copied_to_another_row_does_not_decrypt(db, default_ring):
    """Copying a stored ciphertext into another row's column makes it unreadable there."""
    with db.session() as session:
        org = new_org()
        session.add(org)
        session.flush()
        first, second = new_storage(org, 1), new_storage(org, 2)
        write_secret(first, "credentials", b"first-secret", ring=RING)
        write_secret(second, "credentials", b"second-secret", ring=RING)
        session.add_all([first, second])
        session.flush()
        second.credentials = first.credentials
        with pytest.raises(DecryptionError, match=second.id):
            read_secret(second, "credentials")


def test_write_secret_none_clears_and_unregistered_fields_are_refused():
    """None clears a secret; an attribute that is not registered is a ValueError."""
    user = User(email="a@example.com", name="A")
    write_secret(user, "totp_secret", b"JBSWY3DPEHPK3PXP", ring=RING)
    assert read_secret(user, "totp_secret", ring=RING) == b"JBSWY3DPEHPK3PXP"
    write_secret(user, "totp_secret", None, ring=RING)
    assert read_secret(user, "totp_secret", ring=RING) is None
    with pytest.raises(ValueError, match="not a registered encrypted field"):
        write_secret(user, "email", b"x", ring=RING)


def test_each_database_reads_with_its_own_ring(db, db_url, default_ring):
    """Two databases in one process keep their own rings: a value written through one is
    read back there and does not decrypt through a database bound to another key."""
    other = Database(db_url)
    other.connect(attempts=3)
    bind_keyring(other, KeyRing(os.urandom(32)))
    try:
        with db.write_session() as session:  # write sessions carry the ring too
            user = User(email="a@example.com", name="A")
            session.add(user)
            write_secret(user, "totp_secret", b"mine")
            user_id = user.id
        with db.session() as session:
            assert read_secret(session.get(User, user_id), "totp_secret") == b"mine"
        with other.session() as session, pytest.raises(DecryptionError, match=RING.active_key_id):
            read_secret(session.get(User, user_id), "totp_secret")
    finally:
        other.close()


def test_an_instance_hands_its_own_ring_to_its_sessions(tmp_path):
    """Each Instance's sessions carry that instance's ring; building one installs nothing
    that another instance, or code without an instance, would pick up."""
    first = Instance(make_settings(tmp_path / "a"))
    second = Instance(make_settings(tmp_path / "b"))
    try:
        assert first.keyring.active_key_id != second.keyring.active_key_id
        for instance in (first, second):
            with instance.db.sessions() as session:
                assert session_keyring(session) is instance.keyring
        with pytest.raises(ConfigError):
            write_secret(User(email="a@example.com", name="A"), "totp_secret", b"x")
    finally:
        first.close()
        second.close()
