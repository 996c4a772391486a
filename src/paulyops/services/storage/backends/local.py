"""Folders on this server.

Every path is walked from the connection's root one component at a time, each opened with
``O_NOFOLLOW`` relative to its parent's descriptor (``openat``): no ``..``, absolute path,
NUL byte or symlink planted inside the folder reaches outside it, even if the tree changes
between the check and the use. Writes go to a temporary file in the same folder and are
renamed into place (never a half-written file). Files PaulyOps writes carry the extended
attribute ``user.paulyops.origin=agent``; where the file system has no user xattrs (some
network mounts, tmpfs on older kernels) the ``.paulyops-written`` ledger in the root
records ``path`` and revision instead. The change feed is a snapshot cursor
(:mod:`.snapshot`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat as stat_mod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from paulyops.core.db.models import StorageConfig
from paulyops.core.files import make_private_dir
from paulyops.services.storage.backends.base import (
    CHUNK_BYTES,
    PROBE_PREFIX,
    ChangePage,
    ConnectionCheck,
    Entry,
    StorageError,
)
from paulyops.services.storage.backends.snapshot import MAX_CHANGES, diff_page

ORIGIN_XATTR = "user.paulyops.origin"
LEDGER_NAME = ".paulyops-written"
TEMP_PREFIX = ".paulyops-tmp-"
# Names the backend keeps to itself: never listed, never reported by the feed.
INTERNAL_PREFIXES = (PROBE_PREFIX, LEDGER_NAME, TEMP_PREFIX)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_path(path: str, *, allow_root: bool = False) -> list[str]:
    """Return the components of a relative POSIX path, refusing anything that could escape.

    Raises:
        StorageError: ``invalid_path`` for absolute paths, ``..``, ``.``, empty components,
            NUL bytes and backslashes.
    """
    if not isinstance(path, str):
        raise StorageError("invalid_path", "a path must be text")
    if "\x00" in path:
        raise StorageError("invalid_path", f"the path {path!r} contains a NUL byte")
    if path.startswith("/"):
        raise StorageError("invalid_path", f"the path {path!r} is absolute: expected relative")
    if path == "":
        if allow_root:
            return []
        raise StorageError("invalid_path", "expected a file path, got an empty path")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise StorageError(
                "invalid_path", f"the path {path!r} has a {part or 'empty'!r} component"
            )
    return parts


def local_folder(row: StorageConfig, data_dir: Path) -> Path:
    """Return the folder a local connection uses.

    Relative paths live inside the organization's own storage folder
    (``<data dir>/storage/<org id>``) and may not climb out of it; absolute paths can only
    have been chosen by a platform administrator (see ``services.storage.connections.add_storage``).

    Raises:
        ValueError: a relative path that leaves the organization's storage folder.
    """
    base = data_dir / "storage" / row.organization_id
    raw = row.settings.get("path")
    if not isinstance(raw, str) or not raw:
        return base
    path = Path(raw)
    if path.is_absolute():
        return path
    target = (base / path).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ValueError(f"the folder {raw!r} must stay inside this organization's storage")
    return target


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """A folder on this server; it is created (with its parents) when missing.

    Args:
        folder: the connection's root folder.
        max_changes: changes per page of the change feed.
    """

    folder: Path
    max_changes: int = MAX_CHANGES

    # --- walking -------------------------------------------------------------------

    def _root_fd(self) -> int:
        try:
            return os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as err:
            raise StorageError("not_found", f"the folder {self.folder} does not exist") from err
        except OSError as err:
            raise StorageError(
                "unavailable", f"the folder {self.folder} cannot be opened ({err.strerror})"
            ) from err

    def _open_dir(self, parts: list[str], *, create: bool = False) -> int:
        """Open the folder ``parts`` below the root, component by component, no symlinks."""
        fd = self._root_fd()
        walked: list[str] = []
        try:
            for part in parts:
                walked.append(part)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as err:
            os.close(fd)
            raise self._os_error(err, "/".join(walked)) from err
        return fd

    def _os_error(self, err: OSError, path: str) -> StorageError:
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            return StorageError(
                "invalid_path", f"{path!r} is a symbolic link or not a folder: refused"
            )
        if isinstance(err, FileNotFoundError):
            return StorageError("not_found", f"no file {path!r} in {self.folder}")
        if isinstance(err, PermissionError):
            return StorageError("denied", f"no permission for {path!r} in {self.folder}")
        if err.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
            return StorageError("too_large", f"no room to write {path!r} ({err.strerror})")
        return StorageError("unavailable", f"{path!r} in {self.folder}: {err.strerror}")

    def _entry(self, path: str, st: os.stat_result, *, marked: bool) -> Entry:
        return Entry(
            path=path,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
            revision=f"{st.st_mtime_ns}-{st.st_size}",
            written_by_paulyops=marked,
        )

    # --- the ledger (file systems without user xattrs) ----------------------------

    def _record_in_ledger(self, path: str, revision: str) -> None:
        root = self._root_fd()
        try:
            fd = os.open(
                LEDGER_NAME,
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=root,
            )
        finally:
            os.close(root)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(json.dumps({"path": path, "revision": revision}) + "\n")

    # --- the interface ----------------------------------------------------------------

    def list(self, folder: str = "", *, recursive: bool = True) -> Iterator[Entry]:
        """Yield the files under ``folder``; symlinks and PaulyOps's own files are skipped."""
        parts = split_path(folder, allow_root=True)
        fd = self._open_dir(parts)
        yield from self._walk(fd, "/".join(parts), recursive=recursive)

    def _walk(self, fd: int, prefix: str, *, recursive: bool) -> Iterator[Entry]:
        try:
            with os.scandir(fd) as items:
                names = sorted((item.name for item in items), key=str)
            ledger: dict[str, str] | None = None
            for name in names:
                if name.startswith(INTERNAL_PREFIXES):
                    continue
                path = f"{prefix}/{name}" if prefix else name
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while we looked
                if stat_mod.S_ISDIR(st.st_mode):
                    if recursive:
                        try:
                            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                        except OSError:
                            continue  # replaced by a symlink or removed meanwhile
                        yield from self._walk(child, path, recursive=True)
                    continue
                if not stat_mod.S_ISREG(st.st_mode):
                    continue  # symlinks, sockets, devices: never followed, never listed
                marked = self._marked_at(fd, name)
                if marked is None:
                    if ledger is None:
                        ledger = self._ledger_now()
                    marked = ledger.get(path) == f"{st.st_mtime_ns}-{st.st_size}"
                yield self._entry(path, st, marked=marked)
        finally:
            os.close(fd)

    def _marked_at(self, dir_fd: int, name: str) -> bool | None:
        """Return whether the xattr marks the file; ``None`` if xattrs are unsupported."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return False
        try:
            return os.getxattr(fd, ORIGIN_XATTR) == b"agent"
        except OSError as err:
            if err.errno == errno.ENODATA:
                return False
            return None
        finally:
            os.close(fd)

    def _ledger_now(self) -> dict[str, str]:
        root = self._root_fd()
        try:
            fd = os.open(LEDGER_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
        except OSError:
            return {}
        finally:
            os.close(root)
        result: dict[str, str] = {}
        with os.fdopen(fd, "r", encoding="utf-8") as handle:
            for line in handle:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    item = json.loads(line)
                    result[str(item["path"])] = str(item["revision"])
        return result

    def _open_file(self, path: str, flags: int) -> tuple[int, os.stat_result]:
        parts = split_path(path)
        dir_fd = self._open_dir(parts[:-1])
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as err:
            raise self._os_error(err, path) from err
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            raise StorageError("invalid_path", f"{path!r} is not a file")
        return fd, st

    def stat(self, path: str) -> Entry:
        """Return one file's entry (never through a symlink)."""
        fd, st = self._open_file(path, os.O_RDONLY)
        try:
            try:
                marked = os.getxattr(fd, ORIGIN_XATTR) == b"agent"
            except OSError as err:
                marked = (
                    False
                    if err.errno == errno.ENODATA
                    else self._ledger_now().get(path) == f"{st.st_mtime_ns}-{st.st_size}"
                )
        finally:
            os.close(fd)
        return self._entry(path, st, marked=marked)

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        """Open a file for a streamed read (never through a symlink)."""
        fd, _ = self._open_file(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            yield handle

    def write(
        self,
        path: str,
        data: BinaryIO,
        *,
        media_type: str | None = None,
        written_by_paulyops: bool = True,
    ) -> Entry:
        """Write to a temporary file in the same folder, fsync it, then rename it into place."""
        parts = split_path(path)
        if parts[-1].startswith(INTERNAL_PREFIXES):
            raise StorageError("invalid_path", f"the name {parts[-1]!r} is reserved for PaulyOps")
        dir_fd = self._open_dir(parts[:-1], create=True)
        temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            try:
                fd = os.open(
                    temp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dir_fd,
                )
                with os.fdopen(fd, "wb") as out:
                    while chunk := data.read(CHUNK_BYTES):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                    marked_by_xattr = False
                    if written_by_paulyops:
                        try:
                            os.setxattr(out.fileno(), ORIGIN_XATTR, b"agent")
                            marked_by_xattr = True
                        except OSError:
                            marked_by_xattr = False
                    st = os.fstat(out.fileno())
                target = _lstat_or_none(parts[-1], dir_fd)
                if target is not None and not stat_mod.S_ISREG(target.st_mode):
                    raise StorageError(
                        "invalid_path", f"{path!r} exists and is not a file (a link or folder)"
                    )
                os.rename(temp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as err:
                raise self._os_error(err, path) from err
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        entry = self._entry(path, st, marked=written_by_paulyops)
        if written_by_paulyops and not marked_by_xattr:
            self._record_in_ledger(path, entry.revision)
        return entry

    def delete(self, path: str) -> None:
        """Delete a file; a missing file is fine, a symlink or folder is refused."""
        parts = split_path(path)
        try:
            dir_fd = self._open_dir(parts[:-1])
        except StorageError as err:
            if err.kind == "not_found":
                return
            raise
        try:
            st = _lstat_or_none(parts[-1], dir_fd)
            if st is None:
                return
            if not stat_mod.S_ISREG(st.st_mode):
                raise StorageError("invalid_path", f"{path!r} is not a file: refused")
            try:
                os.unlink(parts[-1], dir_fd=dir_fd)
            except FileNotFoundError:
                return
            except OSError as err:
                raise self._os_error(err, path) from err
        finally:
            os.close(dir_fd)

    def changes(self, folder: str, cursor: str | None) -> ChangePage:
        """Return what changed under ``folder`` since ``cursor`` (a snapshot cursor)."""
        return diff_page(folder, self.list(folder), cursor, max_changes=self.max_changes)

    def test_connection(self) -> ConnectionCheck:
        """Create the folder if needed, then write and remove a small probe file in it."""
        folder = self.folder
        details: dict[str, object] = {"path": str(folder)}
        if folder.exists() and not folder.is_dir():
            return ConnectionCheck(False, f"{folder} exists but is not a folder", details)
        created = False
        if not folder.exists():
            try:
                make_private_dir(folder)
            except OSError as err:
                return ConnectionCheck(
                    False,
                    f"the folder {folder} does not exist and cannot be created ({err.strerror})",
                    details,
                )
            created = True
        probe = folder / f"{PROBE_PREFIX}-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as err:
            return ConnectionCheck(
                False, f"the folder {folder} is not writable ({err.strerror})", details
            )
        if not os.access(folder, os.R_OK | os.X_OK):
            return ConnectionCheck(False, f"the folder {folder} is not readable", details)
        done = "was created and is writable" if created else "exists and is writable"
        return ConnectionCheck(True, f"the folder {folder} {done}", {**details, "created": created})


def _lstat_or_none(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


__all__ = ["LEDGER_NAME", "ORIGIN_XATTR", "LocalBackend", "local_folder", "split_path"]
