"""LocalBackend: the full storage interface on a real folder, and every escape refused."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from paulyops.services.storage.backends import LocalBackend
from paulyops.services.storage.backends.base import StorageError


def _write(backend: LocalBackend, path: str, data: bytes, **kw) -> None:
    backend.write(path, io.BytesIO(data), **kw)


def test_write_read_stat_list_delete_round_trip(tmp_path: Path):
    """A written file is listed, stat-able, readable as written, then deleted."""
    backend = LocalBackend(tmp_path)
    entry = backend.write("a/b/report.txt", io.BytesIO(b"hello"))
    assert entry.size == 5
    assert entry.written_by_paulyops
    assert [e.path for e in backend.list()] == ["a/b/report.txt"]
    assert [e.path for e in backend.list("a", recursive=False)] == []
    assert backend.stat("a/b/report.txt").revision == entry.revision
    with backend.open_read("a/b/report.txt") as handle:
        assert handle.read() == b"hello"
    backend.delete("a/b/report.txt")
    backend.delete("a/b/report.txt")  # missing is fine
    assert list(backend.list()) == []


def test_customer_files_are_not_marked_and_no_temp_files_remain(tmp_path: Path):
    """A file written by someone else is not marked; atomic writes leave no temp files."""
    (tmp_path / "in.pdf").write_bytes(b"%PDF")
    backend = LocalBackend(tmp_path)
    assert backend.stat("in.pdf").written_by_paulyops is False
    backend.write("out.txt", io.BytesIO(b"x" * 3_000_000))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names in (["in.pdf", "out.txt"], [".paulyops-written", "in.pdf", "out.txt"])
    assert backend.stat("out.txt").written_by_paulyops is True


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "/etc/passwd", "a\x00b", "", "a//b", "./a", "a/."]
)
def test_hostile_paths_are_refused(tmp_path: Path, path: str):
    """'..', absolute paths, NUL, empty and '.' components are refused before any access."""
    backend = LocalBackend(tmp_path / "root")
    (tmp_path / "root").mkdir()
    for call in (
        lambda: backend.stat(path),
        lambda: backend.write(path, io.BytesIO(b"x")),
        lambda: backend.delete(path),
    ):
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.kind == "invalid_path"


def test_planted_symlinks_are_never_followed(tmp_path: Path):
    """Symlinks planted inside the folder (to a file or a folder outside) are refused and
    not listed; writing through a linked folder is refused; the outside stays untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linkdir")
    backend = LocalBackend(root)
    assert list(backend.list()) == []
    for call in (
        lambda: backend.stat("link.txt"),
        lambda: backend.open_read("link.txt").__enter__(),
        lambda: backend.stat("linkdir/secret.txt"),
        lambda: backend.write("linkdir/new.txt", io.BytesIO(b"x")),
        lambda: backend.write("link.txt", io.BytesIO(b"x")),
        lambda: backend.delete("link.txt"),
    ):
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.kind == "invalid_path", info.value.message
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"


def test_missing_file_is_not_found(tmp_path: Path):
    """stat and open_read of a missing file raise not_found naming the path."""
    backend = LocalBackend(tmp_path)
    with pytest.raises(StorageError) as info:
        backend.stat("nope.txt")
    assert info.value.kind == "not_found"
    assert "nope.txt" in info.value.message


def test_change_feed_reports_added_modified_deleted_once(tmp_path: Path):
    """The feed reports every file once as added, then only real changes; an unchanged
    file is never reported twice with the stored cursor."""
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.txt").write_text("a")
    (tmp_path / "inbox" / "b.txt").write_text("b")
    backend = LocalBackend(tmp_path)
    first = backend.changes("inbox", None)
    assert sorted((c.kind, c.entry.path) for c in first.changes) == [
        ("added", "inbox/a.txt"),
        ("added", "inbox/b.txt"),
    ]
    again = backend.changes("inbox", first.cursor)
    assert again.changes == []
    (tmp_path / "inbox" / "a.txt").write_text("a changed")
    (tmp_path / "inbox" / "b.txt").unlink()
    (tmp_path / "inbox" / "c.txt").write_text("c")
    page = backend.changes("inbox", again.cursor)
    assert sorted((c.kind, c.entry.path) for c in page.changes) == [
        ("added", "inbox/c.txt"),
        ("deleted", "inbox/b.txt"),
        ("modified", "inbox/a.txt"),
    ]
    assert backend.changes("inbox", page.cursor).changes == []


def test_change_feed_pages_and_refuses_another_folders_cursor(tmp_path: Path):
    """With a small page size the feed pages (has_more) without repeating a file; a cursor
    of another folder is 'invalid'."""
    (tmp_path / "inbox").mkdir()
    for i in range(7):
        (tmp_path / "inbox" / f"{i}.txt").write_text(str(i))
    backend = LocalBackend(tmp_path, max_changes=3)
    seen: list[str] = []
    cursor = None
    while True:
        page = backend.changes("inbox", cursor)
        seen += [c.entry.path for c in page.changes]
        cursor = page.cursor
        if not page.has_more:
            break
    assert sorted(seen) == sorted(f"inbox/{i}.txt" for i in range(7))
    with pytest.raises(StorageError) as info:
        backend.changes("other", cursor)
    assert info.value.kind == "invalid"
