"""Atomic file writes: all or nothing, private from the start, no temp copies left behind."""

from __future__ import annotations

import os
import stat

import pytest

from paulyops.core import atomic


@pytest.mark.parametrize("unnamed", [True, False], ids=["o_tmpfile", "named-fallback"])
def test_write_atomic_replaces_the_file_with_its_mode(tmp_path, monkeypatch, unnamed):
    """The target gets the content and mode; nothing else is left in the folder."""
    if not unnamed:
        monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    target = tmp_path / ".env.local"
    target.write_text("OLD=1\n")
    atomic.write_atomic(target, "NEW=1\n", mode=0o600)
    assert target.read_text() == "NEW=1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == [".env.local"]


def test_staged_content_has_no_name_until_committed(tmp_path):
    """While staged (O_TMPFILE), no file of it exists: a kill now leaves nothing."""
    target = tmp_path / "secrets.env"
    staged = atomic.StagedFile(target, "JWT_SECRET=x\n", mode=0o600)
    try:
        assert os.listdir(tmp_path) == []
    finally:
        staged.discard()
    assert os.listdir(tmp_path) == []


def test_write_removes_stale_temps_of_that_file_only(tmp_path):
    """Temps of earlier writers of the target go; other files stay."""
    target = tmp_path / "README.md"
    for name in (".README.md.deadbeef.tmp", "README.md.tmp", "other.tmp", ".other.1.tmp"):
        (tmp_path / name).write_text("x")
    atomic.write_atomic(target, "hello", mode=0o644)
    assert sorted(os.listdir(tmp_path)) == [".other.1.tmp", "README.md", "other.tmp"]


def test_a_failed_write_changes_nothing(tmp_path, monkeypatch):
    """If writing fails, the old file stays and no temp file is left."""
    target = tmp_path / "config.json"
    target.write_text("old")
    monkeypatch.setattr(atomic, "_O_TMPFILE", 0)

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        atomic.write_atomic(target, "new", mode=0o644)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.json"]
