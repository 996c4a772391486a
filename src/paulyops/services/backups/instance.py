"""Instance backups: the whole database and the configuration, in one encrypted file.

A backup is ``<root>/backups/paulyops-<UTC time>-<reason>.pobak``: a tar of

* ``manifest.json`` — format, PaulyOps version, schema revision, database kind, time,
  reason, and the sha256 and size of every other member;
* ``database/paulyops.sqlite`` (SQLite's online backup: consistent while servers run) or
  ``database/paulyops.pgdump`` (``pg_dump --format=custom``);
* ``config/.env.local`` and ``config/configs/...`` (the instance's secrets and generated
  settings),

gzip-compressed and encrypted with ``PAULYOPS_BACKUP_KEY`` (AES-256-GCM in 1 MiB chunks;
each chunk's nonce and associated data bind its position and whether it is the last, so a
reordered, cut or extended file is refused). The key is generated into ``.env.local`` the
first time it is needed; since the backup holds ``.env.local`` itself, keep a copy of the
key off the machine — without it the backup cannot be read.

:func:`restore` checks every member against the manifest before it replaces anything.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

from paulyops import __version__
from paulyops.core.db.engine import Database
from paulyops.core.errors import ConfigError, ExternalServiceError, SpecValidationError
from paulyops.core.files import make_private_dir
from paulyops.core.settings import ENV_FILE_NAME, Settings, read_env_file, write_env_values

BACKUP_KEY_VAR = "PAULYOPS_BACKUP_KEY"
MAGIC = b"PAULYOPS-BACKUP\x01"
CHUNK = 1024 * 1024
SUFFIX = ".pobak"
FORMAT = 1
_NONCE_PREFIX = 8
_DB_SQLITE = "database/paulyops.sqlite"
_DB_PG = "database/paulyops.pgdump"
_PG_TIMEOUT_S = 3600


class BackupError(SpecValidationError):
    """A backup file is not a PaulyOps backup, is damaged, or needs another key."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """One backup file and what its manifest says."""

    path: Path
    created_at: datetime
    reason: str
    revision: str | None
    dialect: str
    version: str
    size: int


# --- the key -------------------------------------------------------------------------------


def backup_key(settings: Settings, *, create: bool) -> bytes:
    """Return the backup key from the environment or ``.env.local``; generate it if asked.

    Raises:
        ConfigError: no key and ``create`` is false, or the value is not 32 base64url bytes.
    """
    env_path = settings.root / ENV_FILE_NAME
    value = os.environ.get(BACKUP_KEY_VAR) or (
        read_env_file(env_path).get(BACKUP_KEY_VAR) if env_path.is_file() else None
    )
    if not value:
        if not create:
            raise ConfigError(
                f"{BACKUP_KEY_VAR} is not set: the backup cannot be decrypted without the key "
                "it was made with (set it in .env.local or the environment)"
            )
        raw = secrets.token_bytes(32)
        write_env_values(env_path, {BACKUP_KEY_VAR: _b64(raw)})
        return raw
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{BACKUP_KEY_VAR}: expected base64url of 32 random bytes")
    return raw


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"paulyops backup key\n" + key).hexdigest()[:8].encode()


# --- encryption ------------------------------------------------------------------------------


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">Q?", index, last)


def encrypt_stream(source: IO[bytes], target: IO[bytes], key: bytes) -> None:
    """Encrypt ``source`` into ``target`` (see the module docstring for the format)."""
    aead = AESGCM(key)
    prefix = secrets.token_bytes(_NONCE_PREFIX)
    header = MAGIC + _key_id(key) + prefix
    target.write(header)
    index = 0
    block = source.read(CHUNK)
    while True:
        following = source.read(CHUNK)
        last = not following
        nonce = prefix + struct.pack(">I", index)
        sealed = aead.encrypt(nonce, block, _aad(header, index, last))
        target.write(struct.pack(">I", len(sealed)) + sealed)
        if last:
            return
        index += 1
        block = following


def decrypt_stream(source: IO[bytes], target: IO[bytes], key: bytes, *, name: str) -> None:
    """Decrypt what :func:`encrypt_stream` wrote; refuse anything changed, cut or extended.

    Raises:
        BackupError: not a backup, another key, or damaged (naming the file).
    """
    header = source.read(len(MAGIC) + 8 + _NONCE_PREFIX)
    if not header.startswith(MAGIC) or len(header) != len(MAGIC) + 8 + _NONCE_PREFIX:
        raise BackupError(f"{name}: not a PaulyOps backup file")
    if header[len(MAGIC) : len(MAGIC) + 8] != _key_id(key):
        raise BackupError(
            f"{name}: made with another {BACKUP_KEY_VAR} (key id "
            f"{header[len(MAGIC) : len(MAGIC) + 8].decode(errors='replace')})"
        )
    prefix = header[-_NONCE_PREFIX:]
    aead = AESGCM(key)
    index = 0
    while True:
        size_bytes = source.read(4)
        if len(size_bytes) != 4:
            raise BackupError(f"{name}: cut short (chunk {index} missing)")
        (size,) = struct.unpack(">I", size_bytes)
        if size > CHUNK + 16:
            raise BackupError(f"{name}: damaged (chunk {index} too large)")
        sealed = source.read(size)
        nonce = prefix + struct.pack(">I", index)
        for last in (False, True):
            try:
                target.write(aead.decrypt(nonce, sealed, _aad(header, index, last)))
            except InvalidTag:
                continue
            break
        else:
            raise BackupError(f"{name}: damaged or changed (chunk {index} does not verify)")
        if last:
            if source.read(1):
                raise BackupError(f"{name}: extra data after the last chunk")
            return
        index += 1


# --- create ------------------------------------------------------------------------------------


def backup_dir(settings: Settings) -> Path:
    """Where instance backups go: ``<root>/backups``."""
    return settings.root / "backups"


def _dump_database(db: Database, settings: Settings, folder: Path) -> tuple[str, Path]:
    if db.dialect == "sqlite":
        source = Path(make_url(settings.effective_database_url).database or "")
        target = folder / "db.sqlite"
        with (
            contextlib.closing(sqlite3.connect(source)) as src,
            contextlib.closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)  # an online, consistent copy (WAL included)
        return _DB_SQLITE, target
    target = folder / "db.pgdump"
    _pg(
        "pg_dump",
        settings,
        ["--format=custom", "--no-owner", "--no-privileges", "--file", str(target)],
    )
    return _DB_PG, target


def _pg(program: str, settings: Settings, args: list[str]) -> None:
    """Run a PostgreSQL client with the connection from DATABASE_URL (password via env)."""
    url = make_url(settings.effective_database_url)
    exe = shutil.which(program)
    if exe is None:
        raise ConfigError(
            f"{program} is not installed: install the PostgreSQL client "
            "(`apt install postgresql-client`)"
        )
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    conninfo = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    try:
        result = subprocess.run(  # noqa: S603  # fixed program and arguments, no shell
            [exe, *args, "--dbname", conninfo],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=_PG_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ExternalServiceError(f"{program} could not run: {type(err).__name__}") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [""])[-1]
        raise ExternalServiceError(f"{program} failed (exit {result.returncode}): {last}")


def _config_members(settings: Settings) -> Iterator[tuple[str, Path]]:
    env = settings.root / ENV_FILE_NAME
    if env.is_file():
        yield f"config/{ENV_FILE_NAME}", env
    configs = settings.root / "configs"
    if configs.is_dir():
        for path in sorted(configs.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield f"config/configs/{path.relative_to(configs).as_posix()}", path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def create(settings: Settings, db: Database, *, reason: str, revision: str | None) -> BackupInfo:
    """Back up the database and the configuration into a new encrypted file.

    Args:
        settings: the instance.
        db: its database (SQLite is copied online; PostgreSQL through ``pg_dump``).
        reason: a word for the file name and manifest (``manual``, ``upgrade``, ``reset``).
        revision: the schema revision the database is at (recorded in the manifest).
    """
    key = backup_key(settings, create=True)
    now = datetime.now(UTC)
    folder = backup_dir(settings)
    make_private_dir(folder)
    name = f"paulyops-{now.strftime('%Y%m%dT%H%M%SZ')}-{reason}{SUFFIX}"
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=folder) as scratch:
        work = Path(scratch)
        db_name, db_file = _dump_database(db, settings, work)
        members = [(db_name, db_file), *_config_members(settings)]
        manifest = {
            "format": FORMAT,
            "version": __version__,
            "revision": revision,
            "dialect": db.dialect,
            "createdAt": now.isoformat().replace("+00:00", "Z"),
            "reason": reason,
            "members": {
                member: {"sha256": _sha256(path), "size": path.stat().st_size}
                for member, path in members
            },
        }
        plain = work / "backup.tar.gz"
        with (
            plain.open("wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w") as tar,
        ):
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode, info.mtime = len(data), 0o600, int(now.timestamp())
            tar.addfile(info, io.BytesIO(data))
            for member, path in members:
                info = tar.gettarinfo(str(path), arcname=member)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
        partial = work / "backup.enc"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with plain.open("rb") as source, os.fdopen(fd, "wb") as target:
            encrypt_stream(source, target, key)
            target.flush()
            os.fsync(target.fileno())
        final = folder / name
        os.replace(partial, final)
    return BackupInfo(final, now, reason, revision, db.dialect, __version__, final.stat().st_size)


# --- read and restore ------------------------------------------------------------------------


@contextlib.contextmanager
def _opened(settings: Settings, path: Path) -> Iterator[tuple[dict[str, Any], tarfile.TarFile]]:
    key = backup_key(settings, create=False)
    with tempfile.TemporaryDirectory(prefix=".restore-") as scratch:
        plain = Path(scratch) / "backup.tar.gz"
        with path.open("rb") as source, plain.open("wb") as target:
            decrypt_stream(source, target, key, name=path.name)
        with tarfile.open(plain, mode="r:gz") as tar:
            try:
                manifest = json.loads(_member_bytes(tar, "manifest.json"))
            except (KeyError, ValueError):
                raise BackupError(f"{path.name}: no readable manifest.json") from None
            if manifest.get("format") != FORMAT:
                raise BackupError(f"{path.name}: backup format {manifest.get('format')!r} unknown")
            yield manifest, tar


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.getmember(name)
    if not member.isfile():
        raise BackupError(f"{name}: not a regular file in the backup")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file always has content
    return handle.read()


def _checked_members(
    manifest: dict[str, Any], tar: tarfile.TarFile, folder: Path
) -> dict[str, Path]:
    """Write every listed member into ``folder`` and check it against the manifest."""
    out = {}
    for index, (name, expected) in enumerate(sorted(manifest["members"].items())):
        member = tar.getmember(name)
        if not member.isfile():
            raise BackupError(f"{name}: not a regular file in the backup")
        target = folder / f"{index:04d}"
        source = tar.extractfile(member)
        assert source is not None
        with source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK)
        if _sha256(target) != expected["sha256"]:
            raise BackupError(f"{name}: does not match the backup's manifest")
        out[name] = target
    return out


def read_info(settings: Settings, path: Path) -> BackupInfo:
    """Decrypt ``path`` and return what its manifest says (checks the whole file)."""
    with _opened(settings, path) as (manifest, _tar):
        return _info(path, manifest)


def _info(path: Path, manifest: dict[str, Any]) -> BackupInfo:
    return BackupInfo(
        path=path,
        created_at=datetime.fromisoformat(manifest["createdAt"].replace("Z", "+00:00")),
        reason=str(manifest.get("reason", "")),
        revision=manifest.get("revision"),
        dialect=str(manifest.get("dialect", "")),
        version=str(manifest.get("version", "")),
        size=path.stat().st_size,
    )


def list_backups(settings: Settings) -> list[Path]:
    """The backup files in the instance's backup folder, newest first."""
    folder = backup_dir(settings)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"paulyops-*{SUFFIX}"), reverse=True)


def restore(settings: Settings, db: Database, path: Path, *, config: bool) -> BackupInfo:
    """Replace the database (and, with ``config``, ``.env.local`` and ``configs/``).

    Every member is decrypted and checked before anything is replaced. The database's
    connections are closed first (``db`` is disposed; open a new one afterwards).

    Raises:
        BackupError: the file is damaged, made with another key, or for another database.
    """
    with (
        _opened(settings, path) as (manifest, tar),
        tempfile.TemporaryDirectory(prefix=".restore-", dir=backup_dir(settings)) as scratch,
    ):
        if manifest.get("dialect") != db.dialect:
            raise BackupError(
                f"{path.name}: a {manifest.get('dialect')} backup cannot restore a "
                f"{db.dialect} database"
            )
        files = _checked_members(manifest, tar, Path(scratch))
        db.close()
        if db.dialect == "sqlite":
            _restore_sqlite(settings, files[_DB_SQLITE])
        else:
            _restore_postgres(settings, db.url, files[_DB_PG])
        if config:
            for name, staged in files.items():
                if name.startswith("config/"):
                    _put_file(settings.root / name.removeprefix("config/"), staged)
        return _info(path, manifest)


def _put_file(target: Path, staged: Path) -> None:
    make_private_dir(target.parent)
    temp = target.with_name(f".{target.name}.restore")
    shutil.copyfile(staged, temp)
    os.chmod(temp, 0o600)
    os.replace(temp, target)


def _restore_sqlite(settings: Settings, staged: Path) -> None:
    target = Path(make_url(settings.effective_database_url).database or "")
    temp = target.with_name(f".{target.name}.restore")
    shutil.copyfile(staged, temp)
    os.chmod(temp, 0o600)
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(temp, target)


def _restore_postgres(settings: Settings, url: str, staged: Path) -> None:
    """Empty the schema, then load the dump: tables a failed migration made are gone too."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    _pg("pg_restore", settings, ["--no-owner", "--no-privileges", "--exit-on-error", str(staged)])


__all__ = [
    "BACKUP_KEY_VAR",
    "BackupError",
    "BackupInfo",
    "backup_dir",
    "backup_key",
    "create",
    "decrypt_stream",
    "encrypt_stream",
    "list_backups",
    "read_info",
    "restore",
]
