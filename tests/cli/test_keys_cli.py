"""``paulyops keys``: status, rotate, reencrypt and retire on a real instance root."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog, User
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.fields import read_secret
from paulyops.core.settings import (
    decode_key,
    key_id,
    load_settings,
    read_env_file,
    write_env_values,
)
from paulyops.services.auth import accounts
from tests.conftest import fresh_secrets
from tests.factories import make_org


@pytest.fixture
def instance_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance root whose secrets live in .env.local (rotation rewrites that file)."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    write_env_values(tmp_path / ".env.local", fresh_secrets())
    return tmp_path


def run(*args: str):
    """Invoke ``paulyops ARGS``."""
    return CliRunner().invoke(app, list(args))


def ring_of(root: Path) -> KeyRing:
    """The key ring the instance at ``root`` would build now."""
    return KeyRing.from_settings(load_settings(root=root))


def env_values(root: Path) -> dict[str, str]:
    """The instance's .env.local as a dict."""
    return read_env_file(root / ".env.local")


@pytest.fixture
def totp_user(instance_root: Path, db: Database) -> tuple[str, str]:
    """A user with a TOTP secret encrypted under the current key: (user id, plaintext)."""
    org = make_org(db, "acme")
    ring = ring_of(instance_root)
    with db.session() as session:
        user = session.get(User, org.members["Owner"])
        enrollment = accounts.start_totp(user, ring)
    return user.id, enrollment.secret


def stored_totp(db: Database, user_id: str) -> bytes:
    """The raw ciphertext of the user's TOTP secret."""
    with db.session() as session:
        return bytes(session.get(User, user_id).totp_secret)


def decrypt_totp(db: Database, user_id: str, ring: KeyRing) -> str:
    """Decrypt the user's TOTP secret with ``ring``."""
    with db.session() as session:
        return read_secret(session.get(User, user_id), "totp_secret", ring=ring).decode()


def test_rotate_moves_the_key_and_old_values_still_decrypt(instance_root, db, totp_user):
    """rotate writes a new ENCRYPTION_KEY, keeps the old one previous, and prints the copy lines."""
    user_id, plaintext = totp_user
    before = env_values(instance_root)
    old_id = key_id(decode_key(before["ENCRYPTION_KEY"]))
    result = run("keys", "rotate")
    assert result.exit_code == 0, result.output
    after = env_values(instance_root)
    assert after["ENCRYPTION_KEY"] != before["ENCRYPTION_KEY"]
    assert after["ENCRYPTION_KEYS_PREVIOUS"] == before["ENCRYPTION_KEY"]
    assert after["JWT_SECRET"] == before["JWT_SECRET"]
    new_id = key_id(decode_key(after["ENCRYPTION_KEY"]))
    assert new_id in result.output
    assert f"ENCRYPTION_KEY={after['ENCRYPTION_KEY']}" in result.stdout.splitlines()
    assert "paulyops keys reencrypt" in result.output
    ring = ring_of(instance_root)
    assert ring.active_key_id == new_id
    assert KeyRing.key_id_of(stored_totp(db, user_id)) == old_id
    assert decrypt_totp(db, user_id, ring) == plaintext


def test_reencrypt_moves_values_to_the_new_key_and_retire_waits_for_it(
    instance_root, db, totp_user
):
    """retire refuses while a value uses the old key; after reencrypt it removes the key."""
    user_id, plaintext = totp_user
    assert run("keys", "rotate").exit_code == 0
    ring = ring_of(instance_root)
    old_id = ring.key_ids[1]

    refused = run("keys", "retire", old_id)
    assert refused.exit_code == 7
    assert "still encrypts 1 stored value" in refused.output
    assert "paulyops keys reencrypt" in refused.output
    assert old_id in ring_of(instance_root).key_ids

    status = run("keys", "status")
    assert status.exit_code == 0, status.output
    assert old_id in status.output
    assert "previous" in status.output

    moved = run("keys", "reencrypt", "--batch-size", "1")
    assert moved.exit_code == 0, moved.output
    assert "users.totp_secret" in moved.output
    assert "1 value(s) re-encrypted" in moved.output
    assert KeyRing.key_id_of(stored_totp(db, user_id)) == ring.active_key_id
    assert decrypt_totp(db, user_id, ring) == plaintext

    again = run("keys", "reencrypt")
    assert again.exit_code == 0
    assert "0 value(s) re-encrypted" in again.output

    retired = run("keys", "retire", old_id)
    assert retired.exit_code == 0, retired.output
    assert env_values(instance_root)["ENCRYPTION_KEYS_PREVIOUS"] == ""
    assert ring_of(instance_root).key_ids == (ring.active_key_id,)
    assert decrypt_totp(db, user_id, ring_of(instance_root)) == plaintext


def test_key_commands_are_audited_without_key_material(instance_root, db, totp_user):
    """rotate, reencrypt and retire each write an instance-level row naming key ids only."""
    old_key = env_values(instance_root)["ENCRYPTION_KEY"]
    assert run("keys", "rotate").exit_code == 0
    old_id = ring_of(instance_root).key_ids[1]
    assert run("keys", "retire", old_id).exit_code == 7
    assert run("keys", "reencrypt").exit_code == 0
    assert run("keys", "retire", old_id).exit_code == 0
    new_key = env_values(instance_root)["ENCRYPTION_KEY"]
    with db.session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.action.like("keys.%")).order_by(AuditLog.seq)
        ).all()
        assert [(r.chain, r.action, r.outcome) for r in rows] == [
            ("instance", "keys.rotated", "success"),
            ("instance", "keys.retired", "failure"),
            ("instance", "keys.reencrypted", "success"),
            ("instance", "keys.retired", "success"),
        ]
        dumped = json.dumps([r.changes for r in rows])
    assert old_id in dumped
    assert old_key not in dumped
    assert new_key not in dumped


def test_retire_refuses_the_active_key_and_never_echoes_a_pasted_key(instance_root, db):
    """The active key id is refused (exit 7); a pasted key is refused without echoing it."""
    active = ring_of(instance_root).active_key_id
    result = run("keys", "retire", active)
    assert result.exit_code == 7
    assert "active" in result.output
    pasted = env_values(instance_root)["ENCRYPTION_KEY"]
    result = run("keys", "retire", pasted)
    assert result.exit_code == 2
    assert pasted not in result.output
    assert "8 hex" in result.output


def test_status_counts_values_per_key(instance_root, db, totp_user):
    """status lists the active key with the number of values it encrypts."""
    result = run("keys", "status")
    assert result.exit_code == 0, result.output
    active = ring_of(instance_root).active_key_id
    line = next(line for line in result.output.splitlines() if active in line)
    assert "active" in line
    assert line.rstrip(" │").endswith("1")


def test_rotate_without_a_key_in_env_local_explains_why(tmp_path, db_url, monkeypatch):
    """A key set only in the environment cannot be rotated in the file: exit 4, no change."""
    secrets = fresh_secrets()
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    write_env_values(tmp_path / ".env.local", {"PAULYOPS_ENV": "test"})
    result = run("keys", "rotate")
    assert result.exit_code == 4
    assert "ENCRYPTION_KEY" in result.output
    assert secrets["ENCRYPTION_KEY"] not in result.output
    assert "ENCRYPTION_KEY" not in env_values(tmp_path)


# --- rotation while servers run ---------------------------------------------------------


def _live(db: Database) -> list:
    from paulyops.core.processes import live_processes

    return live_processes(db)


def _sign_in(http, email: str) -> dict:
    from tests.factories import PASSWORD

    response = http.post("/api/auth/sign-in", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


def _pretend_process(db: Database, *, key: str, age_s: float) -> str:
    """Insert a process row of another machine whose last heartbeat was ``age_s`` ago."""
    from datetime import timedelta

    from paulyops.core.db.models import LiveProcess, utcnow

    moment = utcnow() - timedelta(seconds=age_s)
    row = LiveProcess(
        host="worker-b.example",
        pid=4242,
        kind="server",
        key_id=key,
        key_ids=[key],
        started_at=moment,
        heartbeat_at=moment,
    )
    with db.write_session() as session:
        session.add(row)
        session.flush()
        return row.id


def test_a_running_server_follows_rotation_and_reencrypt_waits_for_stale_ones(
    instance_root, db, db_url
):
    """A server picks up `keys rotate` by itself: it encrypts with the new key and still
    decrypts old and re-encrypted values; reencrypt and retire refuse, naming host, pid
    and key, while another live process still writes with the old key, and go ahead once
    that process is gone."""
    from datetime import timedelta

    import httpx
    import pyotp

    from paulyops.core.db.models import LiveProcess
    from tests.support.server import start_server

    org = make_org(db, "acme")
    owner_secret = _enroll_totp(db, instance_root, org.members["Owner"])
    admin_secret = _enroll_totp(db, instance_root, org.members["Admin"])
    old_id = ring_of(instance_root).active_key_id
    # A generous start-up wait: on a loaded machine the server's imports alone take long.
    server = start_server(instance_root, env={"DATABASE_URL": db_url})
    try:
        server.wait_for(
            lambda: [p.key_id for p in _live(db)] == [old_id], timeout=30, what="heartbeat"
        )
        assert run("keys", "rotate").exit_code == 0
        new_id = ring_of(instance_root).active_key_id
        server.wait_for(
            lambda: [p.key_id for p in _live(db)] == [new_id], timeout=10, what="reload"
        )
        assert "keyring_reloaded" in server.event_names()

        with httpx.Client(base_url=server.url, timeout=10) as http:
            csrf = _sign_in(http, org.emails["User"])["csrfToken"]
            started = http.post("/api/auth/totp/start", headers={"X-CSRF-Token": csrf})
            assert started.status_code == 200, started.text
        assert KeyRing.key_id_of(stored_totp(db, org.members["User"])) == new_id
        with httpx.Client(base_url=server.url, timeout=10) as http:  # old-key value
            assert _sign_in(http, org.emails["Admin"])["needsSecondFactor"] is True
            code = pyotp.TOTP(admin_secret).now()
            finished = http.post("/api/auth/second-factor", json={"code": code})
            assert finished.status_code == 200, finished.text

        other = _pretend_process(db, key=old_id, age_s=2)
        refused = run("keys", "reencrypt")
        assert refused.exit_code == 7, refused.output
        assert "worker-b.example pid 4242 writes with key " + old_id in refused.output
        assert KeyRing.key_id_of(stored_totp(db, org.members["Owner"])) == old_id
        refused = run("keys", "retire", old_id)
        assert refused.exit_code == 7
        assert "worker-b.example pid 4242" in refused.output

        with db.write_session() as session:  # the other machine stopped: no more heartbeats
            session.get(LiveProcess, other).heartbeat_at -= timedelta(seconds=60)
        moved = run("keys", "reencrypt")
        assert moved.exit_code == 0, moved.output
        assert f"Key {old_id} encrypts nothing now" in moved.output
        assert KeyRing.key_id_of(stored_totp(db, org.members["Owner"])) == new_id

        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert _sign_in(http, org.emails["Owner"])["needsSecondFactor"] is True
            finished = http.post(
                "/api/auth/second-factor", json={"code": pyotp.TOTP(owner_secret).now()}
            )
            assert finished.status_code == 200, finished.text + server.output[-3000:]

        assert run("keys", "retire", old_id).exit_code == 0
        server.wait_for(
            lambda: _live_key_ids(db) == [[new_id]], timeout=10, what="reload after retire"
        )

        server.proc.send_signal(signal.SIGHUP)  # the default action would end the process
        server.wait_for(
            lambda: "keyring_reload_requested" in server.event_names(), timeout=10, what="HUP"
        )
        assert server.get("/api/livez").status_code == 200
        assert server.terminate() == 0
    finally:
        server.kill()
    assert _live_key_ids(db) == [], "a server that shut down deletes its process row"


def _live_key_ids(db: Database) -> list[list[str]]:
    """The key ids of the ring of every process row of this machine (not the pretend one)."""
    from paulyops.core.db.models import LiveProcess

    with db.session() as session:
        rows = session.scalars(select(LiveProcess).where(LiveProcess.pid != 4242)).all()
        return [list(r.key_ids) for r in rows]


def _enroll_totp(db: Database, root: Path, user_id: str) -> str:
    """Turn on TOTP for ``user_id`` with the instance's current key; return the secret."""
    with db.write_session() as session:
        user = session.get(User, user_id)
        enrollment = accounts.start_totp(user, ring_of(root))
        user.totp_enabled = True
    return enrollment.secret


def test_status_lists_running_processes_and_flags_old_keys(instance_root, db):
    """keys status names each live process with the key it writes with."""
    old_id = ring_of(instance_root).active_key_id
    assert run("keys", "rotate").exit_code == 0
    _pretend_process(db, key=old_id, age_s=1)
    result = run("keys", "status")
    assert result.exit_code == 0, result.output
    assert f"worker-b.example pid 4242 (server) writes with key {old_id} (older key)" in (
        result.output
    )


@pytest.mark.parametrize("size", ["0", "10001"])
def test_reencrypt_batch_size_bounds_come_from_the_command(instance_root, db, size):
    """An out-of-range --batch-size is a usage error (exit 2) with the command model's bound,
    and nothing is re-encrypted or audited."""
    result = run("keys", "reencrypt", "--batch-size", size)
    assert result.exit_code == 2, result.output
    assert "--batch-size" in result.output
    assert ("expected at least 1" if size == "0" else "expected at most 10000") in result.output
    with db.session() as session:
        assert not session.scalars(select(AuditLog).where(AuditLog.action.like("keys.%"))).all()
