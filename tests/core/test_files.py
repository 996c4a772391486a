"""Private folders and files: 0700 and 0600 at creation, whatever the umask."""

from __future__ import annotations

import os
import stat

import pytest

from paulyops.core.db.engine import Database
from paulyops.core.files import create_private_file, make_private_dir


@pytest.fixture
def loose_umask():
    """Run with a umask that would leave everything world-readable and writable."""
    old = os.umask(0o000)
    yield
    os.umask(old)


def test_missing_parents_are_created_private_too(tmp_path, loose_umask):
    """Each folder make_private_dir creates is 0700; the folders that existed keep theirs."""
    tmp_path.chmod(0o755)
    make_private_dir(tmp_path / "a" / "b" / "c")
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_a_new_sqlite_database_is_private_from_the_start(tmp_path, loose_umask):
    """The SQLite file (and its folder) exist with 0600/0700 before SQLite opens them."""
    path = tmp_path / "data" / "paulyops.db"
    db = Database(f"sqlite:///{path}")
    db.connect(attempts=1)
    db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_existing_file_is_left_alone(tmp_path):
    """create_private_file never truncates or re-modes a file that is there."""
    path = tmp_path / "db"
    path.write_bytes(b"data")
    path.chmod(0o640)
    assert create_private_file(path) is False
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
