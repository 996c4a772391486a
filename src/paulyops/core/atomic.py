"""Write files atomically without leaving temporary copies behind, even under SIGKILL.

The usual "write ``x.tmp``, fsync, rename" leaves ``x.tmp`` behind when the process is
killed before the rename, and for ``.env.local`` that is a full copy of the instance's
secrets. Here the content is written into an *unnamed* file (Linux ``O_TMPFILE``): a
process killed while writing leaves nothing, because the file has no name until it is
complete. It then gets a temporary name and is renamed over the target at once; only a
kill in the microseconds between those two calls can leave a ``.NAME.<8 hex digits>.tmp``
behind, and :func:`remove_stale_temps` (run by the next write) removes those.

Where ``O_TMPFILE`` is not supported (some file systems, other systems) it falls back to
a named temporary file that is deleted on every error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from paulyops.core.files import make_private_dir

# Errors that mean "O_TMPFILE is not available here", not "the write failed".
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def temp_name(target: Path) -> Path:
    """Return a fresh temporary name beside ``target`` (``.NAME.<8 hex digits>.tmp``)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def stale_temps(target: Path) -> list[Path]:
    """Return the temporary files earlier writers of ``target`` left behind.

    Both the pattern of :func:`temp_name` (also used by ``keys rotate``) and the older
    fixed ``NAME.tmp``.
    """
    folder = target.parent
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f".{target.name}.*.tmp") if p.is_file() or p.is_symlink()]
    fixed = target.with_name(target.name + ".tmp")
    if fixed.is_file() or fixed.is_symlink():
        found.append(fixed)
    return found


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete the temporary files earlier, interrupted writers of ``target`` left."""
    removed = []
    for path in stale_temps(target):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


class StagedFile:
    """New content for ``target``, complete on disk but not in place until :meth:`commit`.

    Args:
        target: the file to replace (or create).
        data: the new content.
        mode: the file's permission bits (set before it gets any name).
    """

    def __init__(self, target: Path, data: str | bytes, *, mode: int) -> None:
        self.target = target
        self.mode = mode
        self._fd: int | None = None
        self._named: Path | None = None
        make_private_dir(target.parent)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self._raw = raw
        self._fd, self._named = _open_unnamed_or_named(target, mode)
        try:
            _write_all(self._fd, raw)
            os.fchmod(self._fd, mode)
            os.fsync(self._fd)
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        """Put the content in place atomically (give it a name, rename over the target)."""
        if self._fd is None:
            raise RuntimeError(f"{self.target}: staged file already committed or discarded")
        try:
            if self._named is None:
                self._named = self._name_unnamed()
            os.replace(self._named, self.target)
            self._named = None
        finally:
            self.discard()
        _fsync_dir(self.target.parent)

    def _name_unnamed(self) -> Path:
        assert self._fd is not None
        named = temp_name(self.target)
        try:
            # linkat() through /proc gives the unnamed file its (temporary) name.
            os.link(f"/proc/self/fd/{self._fd}", named, follow_symlinks=True)
        except OSError:
            # /proc refused the link (some sandboxes): write a named copy instead.
            fd = os.open(named, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
            try:
                _write_all(fd, self._raw)
                os.fchmod(fd, self.mode)
                os.fsync(fd)
            except BaseException:
                named.unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)
        return named

    def discard(self) -> None:
        """Drop the staged content (nothing is left on disk)."""
        if self._named is not None:
            with contextlib.suppress(FileNotFoundError):
                self._named.unlink()
            self._named = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_atomic(target: Path, data: str | bytes, *, mode: int) -> None:
    """Replace ``target`` with ``data`` atomically, removing stale temps of earlier runs."""
    remove_stale_temps(target)
    StagedFile(target, data, mode=mode).commit()


def _open_unnamed_or_named(target: Path, mode: int) -> tuple[int, Path | None]:
    if _O_TMPFILE and Path("/proc/self/fd").is_dir():
        try:
            return os.open(target.parent, _O_TMPFILE | os.O_WRONLY, mode), None
        except OSError as err:
            if err.errno not in _NO_TMPFILE:
                raise
    named = temp_name(target)
    return os.open(named, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), named


def _write_all(fd: int, raw: bytes) -> None:
    view = memoryview(raw)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk too.
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["StagedFile", "remove_stale_temps", "stale_temps", "temp_name", "write_atomic"]
