"""Run folders under the sandbox root: staged inputs (0444), scratch, outputs, the runtime."""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path

from paulyops.core.errors import SandboxError
from paulyops.core.security.sanitize import safe_filename

_HERE = Path(__file__).resolve().parent
BOOTSTRAP_NAME = "_paulyops_bootstrap.py"
_PAULYOPS_STUB = b'"""PaulyOps inside an agent sandbox: only paulyops.sdk is here."""\n'


def _sdk_source() -> Path:
    return _HERE.parents[2] / "sdk" / "__init__.py"


def make_root(root: Path, *, is_root: bool) -> None:
    """Create the sandbox root (0755 as root: slot uids must traverse it, 0700 otherwise)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o755 if is_root else 0o700)
    (root / "runs").mkdir(exist_ok=True, mode=0o755 if is_root else 0o700)


def check_traversable(path: Path, uid: int) -> None:
    """Raise when ``uid`` cannot reach ``path`` (bubblewrap binds as the slot uid).

    Raises:
        SandboxError: a parent folder is closed to other users (e.g. 0700).
    """
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid == uid or st.st_mode & stat.S_IXOTH:
            continue
        if st.st_gid == uid and st.st_mode & stat.S_IXGRP:
            continue
        raise SandboxError(
            f"sandbox: {parent} (mode {stat.S_IMODE(st.st_mode):o}) is closed to the slot uid "
            f"{uid}; put PAULYOPS_SANDBOX_ROOT under a folder others may traverse"
        )


def _is_reachable(path: Path, uid: int) -> bool:
    try:
        check_traversable(path, uid)
    except (SandboxError, OSError):
        return False
    return True


@functools.cache
def _runtime_files() -> tuple[dict[str, bytes], str]:
    files = {
        BOOTSTRAP_NAME: (_HERE / "bootstrap.py").read_bytes(),
        "paulyops/__init__.py": _PAULYOPS_STUB,
        "paulyops/sdk/__init__.py": _sdk_source().read_bytes(),
    }
    digest = hashlib.sha256(b"\0".join(k.encode() + b"\0" + v for k, v in files.items()))
    return files, digest.hexdigest()[:24]


def runtime_dir(root: Path) -> Path:
    """Return ``<root>/runtime/<digest>``: the bootstrap and ``paulyops.sdk``, read-only.

    Written once per content (renamed into place), so every run of every process binds
    the same folder.
    """
    files, digest = _runtime_files()
    dest = root / "runtime" / digest
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fresh = dest.parent / f".{secrets.token_hex(6)}.tmp"
    for rel, data in files.items():
        target = fresh / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.write_bytes(data)
        target.chmod(0o444)
    for folder in (fresh / "paulyops" / "sdk", fresh / "paulyops", fresh):
        folder.chmod(0o555)
    try:
        fresh.rename(dest)
    except OSError:
        remove_tree(fresh)  # another process was first: its copy is identical
    return dest


def new_run_dir(root: Path, uid: int | None, items: int, *, network: bool) -> Path:
    """Create a run folder: ``inputs/`` (read-only), ``scratch/`` and ``outputs/<i>/``.

    As root the folder is ``root:<slot gid>`` 0750, so no other slot uid can enter it.
    """
    run = root / "runs" / secrets.token_hex(12)
    run.mkdir(mode=0o700)
    (run / "inputs").mkdir(mode=0o755)
    (run / "scratch").mkdir(mode=0o700)
    (run / "outputs").mkdir(mode=0o755)
    for index in range(items):
        (run / "outputs" / str(index)).mkdir(mode=0o700)
    if network:
        (run / "etc").mkdir(mode=0o755)
        (run / "etc" / "resolv.conf").write_text("nameserver 10.0.2.3\n")
        (run / "etc" / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    if uid is not None:
        os.chown(run, 0, uid)
        run.chmod(0o750)
        for owned in [run / "scratch", *(run / "outputs").iterdir()]:
            os.chown(owned, uid, uid)
    return run


def stage_input(run: Path, index: int, source: Path, name: str) -> Path:
    """Copy one input to ``inputs/<index>/<safe name>`` (0444); return its path."""
    folder = run / "inputs" / str(index)
    folder.mkdir(mode=0o755)
    target = folder / safe_filename(name, default="input")
    with source.open("rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
    target.chmod(0o444)
    folder.chmod(0o555)
    return target


def stage_package(run: Path, package: Path, uid: int | None) -> Path:
    """Return the package folder to bind: itself when the slot uid can read it, else a
    read-only copy in the run folder (e.g. an unpack cache under a 0700 data dir)."""
    if uid is None or _is_reachable(package, uid):
        return package
    copy = run / "package"
    shutil.copytree(package, copy, symlinks=False, copy_function=shutil.copyfile)
    for path in sorted(copy.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    copy.chmod(0o555)
    return copy


def remove_tree(folder: Path) -> None:
    """Remove a run folder, whatever modes the agent left in it (links are not followed)."""
    if not folder.exists():
        return
    for top, dirs, _files in os.walk(folder):
        for name in dirs:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    os.chmod(folder, 0o700)
    shutil.rmtree(folder, ignore_errors=True)


def read_output(run: Path, index: int, rel: str, *, cap: int) -> bytes:
    """Read ``outputs/<index>/<rel>`` without following links, at most ``cap`` bytes.

    Raises:
        SandboxError: missing, not a regular file, a link, or larger than ``cap``.
    """
    base = run / "outputs" / str(index)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in rel.split("/")[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        try:
            file_fd = os.open(rel.split("/")[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as err:
            raise SandboxError(f"files: {rel!r} cannot be read ({err.strerror})") from None
    except OSError as err:
        raise SandboxError(f"files: {rel!r} cannot be read ({err.strerror})") from None
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise SandboxError(f"files: {rel!r} is not a regular file")
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise SandboxError(f"files: {rel!r} is larger than {cap} bytes")
    return data
