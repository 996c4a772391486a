"""The per-machine unpack cache: a stored archive extracted once into a folder named by its sha256.

The database holds the truth (``agent_packages.archive``); a folder here is only a cache,
so any server or worker can rebuild it. Every load re-checks the folder against the
archive's ``CHECKSUMS``: a modified, missing or extra file in the cache is re-extracted
from the stored archive (DESIGN.md, "Package integrity"), while an archive whose own
sha256 no longer matches its row is refused (the caller quarantines that installation).

Folders are created beside their final name and renamed into place, so a reader never
sees half an extraction, and two processes unpacking the same archive both end with the
same complete folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import shutil
from pathlib import Path

from paulyops.services.marketplace.build import read_files
from paulyops.services.marketplace.errors import ArchiveError
from paulyops.services.marketplace.integrity import CHECKSUMS_NAME, checksums_text

FILE_MODE = 0o444
DIR_MODE = 0o555


class ArchiveMismatchError(ArchiveError):
    """The stored archive's bytes no longer match the sha256 recorded for it."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_problems(folder: Path, files: dict[str, bytes]) -> list[str]:
    """Return what differs between an unpacked folder and the archive's files.

    Each entry is ``"missing: PATH"``, ``"modified: PATH"`` or ``"extra: PATH"``.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink() or (not path.is_dir() and not path.is_file()):
            problems.append(f"extra: {rel}")
            continue
        if path.is_dir():
            continue
        seen.add(rel)
        if rel == CHECKSUMS_NAME:
            if path.read_bytes() != checksums_text(files):
                problems.append(f"modified: {rel}")
            continue
        if rel not in files:
            problems.append(f"extra: {rel}")
        elif _digest(path.read_bytes()) != _digest(files[rel]):
            problems.append(f"modified: {rel}")
    for rel in sorted(set(files) - seen):
        problems.append(f"missing: {rel}")
    if CHECKSUMS_NAME not in seen:
        problems.append(f"missing: {CHECKSUMS_NAME}")
    return problems


def archive_files(archive: bytes, sha256: str) -> dict[str, bytes]:
    """Return the files of a stored archive after checking its sha256 and CHECKSUMS.

    Raises:
        ArchiveMismatchError: the bytes are not the archive that was stored.
        ArchiveError: the archive is unsafe or its CHECKSUMS do not match.
    """
    if _digest(archive) != sha256:
        raise ArchiveMismatchError(
            "archive", "no longer matches the sha256 recorded when it was verified"
        )
    return read_files(io.BytesIO(archive))


def _write_tree(dest: Path, files: dict[str, bytes]) -> None:
    dest.mkdir(mode=0o700)
    everything = dict(files)
    everything[CHECKSUMS_NAME] = checksums_text(files)
    for rel, data in sorted(everything.items()):
        target = dest.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        target.chmod(FILE_MODE)
    for path in sorted(dest.rglob("*"), reverse=True):
        if path.is_dir():
            path.chmod(DIR_MODE)
    dest.chmod(DIR_MODE)


def remove_tree(folder: Path) -> None:
    """Remove an unpacked folder (its read-only modes included); a missing one is fine."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
        return
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)
    shutil.rmtree(folder)


def unpack(archive: bytes, sha256: str, root: Path) -> Path:
    """Return ``root/<sha256>`` holding the package's files, extracting or repairing it.

    Raises:
        ArchiveMismatchError: the stored bytes no longer match ``sha256``.
        ArchiveError: the archive is unsafe or its CHECKSUMS do not match.
    """
    files = archive_files(archive, sha256)
    dest = root / sha256
    if dest.is_dir() and not dest.is_symlink() and not cache_problems(dest, files):
        return dest
    root.mkdir(parents=True, exist_ok=True)
    fresh = root / f".{sha256[:16]}.{secrets.token_hex(4)}.tmp"
    try:
        _write_tree(fresh, files)
        stale = root / f".{sha256[:16]}.{secrets.token_hex(4)}.old"
        with contextlib.suppress(FileNotFoundError):
            dest.rename(stale)
            remove_tree(stale)
        try:
            fresh.rename(dest)
        except OSError:
            # Another process put a complete folder there first: keep theirs if it is good.
            if dest.is_dir() and not cache_problems(dest, files):
                return dest
            raise
    finally:
        remove_tree(fresh)
    return dest


__all__ = ["ArchiveMismatchError", "archive_files", "cache_problems", "remove_tree", "unpack"]
