"""The one `.env.local` writer: comments and unrelated lines survive, mode 0600, and a write
that fails half-way leaves the old file whole — for every command that changes the file."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from paulyops.core import atomic, envfile
from paulyops.core.envfile import read_env_file, update_env_file
from paulyops.core.security.keyfile import drop_previous_key, rotate_env_file
from paulyops.core.settings import (
    decode_key,
    ensure_secrets,
    key_id,
    load_settings,
    new_encryption_key,
    rotate_signing_secrets,
)
from tests.conftest import fresh_secrets

ORIGINAL = (
    "# Instance secrets. Keep a copy somewhere safe.\n"
    "JWT_SECRET=old-jwt\n"
    "\n"
    "export PORT=8000\n"
    "PORT=8001\n"
    'PAULYOPS_PUBLIC_URL="https://ops.example.com"  \n'
    "# trailing note\n"
)


def test_values_are_set_in_place_and_everything_else_is_kept(tmp_path):
    """A variable changes on its last defining line (export kept); new ones are appended
    below their comment; comments, blank lines and other values stay byte for byte."""
    env = tmp_path / ".env.local"
    env.write_text(ORIGINAL.replace("PORT=8001\n", "export PORT=8001\n"))
    env.chmod(0o644)
    update_env_file(env, {"port": "9000", "REDIS_URL": "redis://x"}, comment="Chosen later.")
    assert env.read_text() == (
        "# Instance secrets. Keep a copy somewhere safe.\n"
        "JWT_SECRET=old-jwt\n"
        "\n"
        "export PORT=8000\n"
        "export PORT=9000\n"
        'PAULYOPS_PUBLIC_URL="https://ops.example.com"  \n'
        "# trailing note\n"
        "# Chosen later.\n"
        "REDIS_URL=redis://x\n"
    )
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = read_env_file(env)
    assert values["PORT"] == "9000"
    assert values["PAULYOPS_PUBLIC_URL"] == "https://ops.example.com"


def test_a_missing_file_is_created_private(tmp_path):
    """Writing to a file that does not exist creates it with mode 0600."""
    env = tmp_path / "new" / ".env.local"
    update_env_file(env, {"JWT_SECRET": "x"})
    assert env.read_text() == "JWT_SECRET=x\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", [{"A B": "1"}, {"": "1"}, {"KEY": "two\nlines"}])
def test_names_and_values_that_would_corrupt_the_file_are_refused(tmp_path, bad):
    """A name that is not a variable, or a value with a line break, changes nothing."""
    env = tmp_path / ".env.local"
    env.write_text(ORIGINAL)
    with pytest.raises(ValueError, match=r"variable name|one line"):
        update_env_file(env, bad)
    assert env.read_text() == ORIGINAL


def _secrets_env(root: Path) -> Path:
    env = root / ".env.local"
    env.write_text(
        "# keep me\n" + "".join(f"{k}={v}\n" for k, v in fresh_secrets().items()) + "PORT=8111\n"
    )
    env.chmod(0o600)
    return env


def _add_previous_key(env: Path) -> str:
    """Give the file a previous key (with a working disk); return its id."""
    old = new_encryption_key()
    update_env_file(env, {"ENCRYPTION_KEYS_PREVIOUS": old})
    return key_id(decode_key(old))


def _drop_jwt_secret(env: Path) -> None:
    text = env.read_text()
    env.write_text("".join(line for line in text.splitlines(True) if "JWT" not in line))


def _ensure(env: Path) -> None:
    settings = load_settings(root=env.parent, environ={"PAULYOPS_ENV": "development"})
    ensure_secrets(settings)


# Each command that changes .env.local: (prepare with a working disk, then change the file).
WRITERS: dict[str, tuple[Callable[[Path], object], Callable[[Path, object], object]]] = {
    "keys rotate": (lambda env: None, lambda env, _: rotate_env_file(env, environ={})),
    "keys retire": (_add_previous_key, lambda env, kid: drop_previous_key(env, str(kid))),
    "keys rotate-signing": (lambda env: None, lambda env, _: rotate_signing_secrets(env)),
    "generated secrets": (_drop_jwt_secret, lambda env, _: _ensure(env)),
}


@pytest.mark.parametrize("unnamed", [True, False], ids=["o_tmpfile", "named-fallback"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_write_failing_half_way_leaves_the_old_file_intact(
    tmp_path, monkeypatch, writer, unnamed
):
    """Every command that changes .env.local goes through the one writer: when the disk
    fails after part of the new content was written, the old file is unchanged (content and
    mode) and no temporary copy of the secrets is left in the folder; with a working disk
    the same command then succeeds and keeps the comments and other values."""
    if not unnamed:
        monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    prepare, change = WRITERS[writer]
    env = _secrets_env(tmp_path)
    prepared = prepare(env)
    before = env.read_bytes()
    real_write = os.write

    def write_half_then_fail(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[: max(1, len(data) // 2)])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        change(env, prepared)
    assert env.read_bytes() == before
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == [".env.local"]

    monkeypatch.setattr(atomic.os, "write", real_write)
    change(env, prepared)
    assert env.read_bytes() != before
    assert env.read_text().startswith("# keep me\n")
    assert "PORT=8111\n" in env.read_text()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == [".env.local"]


def test_the_writer_is_the_only_path_to_the_file(tmp_path, monkeypatch):
    """Each command's write reaches disk through envfile's atomic write of that one file."""
    env = _secrets_env(tmp_path)
    seen: list[Path] = []
    real = envfile.write_atomic

    def spy(target: Path, data: str | bytes, *, mode: int) -> None:
        seen.append(target)
        assert mode == 0o600
        real(target, data, mode=mode)

    monkeypatch.setattr(envfile, "write_atomic", spy)
    for prepare, change in WRITERS.values():
        prepared = prepare(env)
        seen.clear()
        change(env, prepared)
        assert seen == [env]
