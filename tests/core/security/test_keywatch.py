"""A running process's key ring follows `.env.local`: rotation, bad files, SIGHUP requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from paulyops.core.security.crypto import Aad, KeyRing, rotate_env_file
from paulyops.core.security.keywatch import KeyRingWatcher
from paulyops.core.settings import load_settings, write_env_values
from tests.conftest import fresh_secrets

AAD = Aad("users", "usr_1", "totp_secret")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An instance root whose secrets live in .env.local."""
    write_env_values(tmp_path / ".env.local", {"PAULYOPS_ENV": "test", **fresh_secrets()})
    return tmp_path


def watcher_for(root: Path, clock: Clock) -> tuple[KeyRing, KeyRingWatcher]:
    """The ring a process built at start, and its watcher."""
    ring = KeyRing.from_settings(load_settings(root=root, environ={}))
    return ring, KeyRingWatcher(ring, root, environ={}, clock=clock)


def test_a_rotated_file_swaps_the_keys_into_the_same_ring(root):
    """After rotate, the ring object already in use encrypts with the new key and still
    decrypts what the old key wrote."""
    clock = Clock()
    ring, watcher = watcher_for(root, clock)
    old_blob = ring.encrypt(b"seed", aad=AAD)
    result = rotate_env_file(root / ".env.local", environ={})
    clock.now += 1.0
    assert watcher.maybe_reload() is True
    assert ring.active_key_id == result.new_key_id
    assert KeyRing.key_id_of(ring.encrypt(b"x", aad=AAD)) == result.new_key_id
    assert ring.decrypt(old_blob, aad=AAD) == b"seed"
    clock.now += 1.0
    assert watcher.maybe_reload() is False, "an unchanged file is not reloaded again"


def test_the_file_is_checked_at_most_once_per_interval(root):
    """Within a second of the last check nothing is read; a request (SIGHUP) skips the wait."""
    clock = Clock()
    ring, watcher = watcher_for(root, clock)
    result = rotate_env_file(root / ".env.local", environ={})
    clock.now += 0.2
    assert watcher.maybe_reload() is False
    assert ring.active_key_id != result.new_key_id
    watcher.request_reload()
    assert watcher.maybe_reload() is True
    assert ring.active_key_id == result.new_key_id


def test_a_malformed_file_keeps_the_old_ring_and_is_retried(root):
    """A half-written file leaves the ring alone; once the file is whole it is picked up."""
    clock = Clock()
    ring, watcher = watcher_for(root, clock)
    before = ring.active_key_id
    good = (root / ".env.local").read_text()
    (root / ".env.local").write_text(good + "NOT A LINE\n")
    clock.now += 1.0
    assert watcher.maybe_reload() is False
    assert ring.active_key_id == before
    (root / ".env.local").write_text(good)
    result = rotate_env_file(root / ".env.local", environ={})
    clock.now += 1.0
    assert watcher.maybe_reload() is True
    assert ring.active_key_id == result.new_key_id
