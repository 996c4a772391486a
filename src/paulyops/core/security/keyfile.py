"""The key ring's variables in ``.env.local``: reading them, rotating in a key, dropping one.

``ENCRYPTION_KEY`` is the active key and ``ENCRYPTION_KEYS_PREVIOUS`` (comma-separated,
newest first) the older ones that still decrypt. ``paulyops keys rotate`` records when each
old key was rotated out in ``PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT`` (``<key id>@<ISO
time>``, comma-separated); such a key keeps decrypting for
``PAULYOPS_ENCRYPTION_GRACE_DAYS`` (default 30) after that. Neither of the last two holds
a secret.

:func:`rotate_env_file` and :func:`drop_previous_key` change only those lines, through the
one ``.env.local`` writer (:func:`paulyops.core.envfile.update_env_file`). They touch no
database and write no audit row: the use cases in :mod:`paulyops.services.keys` do that.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from paulyops.core.envfile import read_env_file, update_env_file
from paulyops.core.errors import ConfigError, NotFoundError
from paulyops.core.logging import get_logger, security_event
from paulyops.core.settings import (
    ENV_FILE_NAME,
    Settings,
    decode_key,
    key_id,
    new_encryption_key,
)

log = get_logger("paulyops.crypto")

DEFAULT_GRACE_DAYS = 30
ROTATED_AT_VAR = "PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT"
GRACE_DAYS_VAR = "PAULYOPS_ENCRYPTION_GRACE_DAYS"
ACTIVE_KEY_VAR = "ENCRYPTION_KEY"
PREVIOUS_KEYS_VAR = "ENCRYPTION_KEYS_PREVIOUS"


# --- the rotation variables ------------------------------------------------------------


def rotation_values(env_path: Path, environ: Mapping[str, str] | None) -> dict[str, str]:
    """Return the two rotation variables: ``environ`` (default ``os.environ``) over the file."""
    file_values = read_env_file(env_path) if env_path.is_file() else {}
    env = os.environ if environ is None else environ
    merged = {**file_values, **env}
    return {
        k.upper(): v for k, v in merged.items() if k.upper() in (ROTATED_AT_VAR, GRACE_DAYS_VAR)
    }


def check_rotation_values(values: Mapping[str, str]) -> None:
    """Parse the rotation variables in ``values`` (upper-case names) and discard them.

    Raises:
        ConfigError: ``PAULYOPS_ENCRYPTION_GRACE_DAYS`` or
            ``PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT`` is malformed (the message names it).
    """
    grace_days(values.get(GRACE_DAYS_VAR))
    parse_rotated_at(values.get(ROTATED_AT_VAR, ""))


def grace_days(text: str | None) -> int:
    """Return the grace period in days (the default when unset).

    Raises:
        ConfigError: not a whole number >= 0.
    """
    if text is None or text.strip() == "":
        return DEFAULT_GRACE_DAYS
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise ConfigError(f"{GRACE_DAYS_VAR}: expected a whole number of days >= 0, got {text!r}")
    return days


def parse_rotated_at(text: str) -> dict[str, datetime]:
    """Return the rotation time of each key id in a ``PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT`` value.

    Raises:
        ConfigError: an entry is not ``<8 hex key id>@<ISO time>``.
    """
    rotated: dict[str, datetime] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        kid, sep, when = entry.partition("@")
        try:
            if not sep or len(kid) != 8:
                raise ValueError(entry)
            bytes.fromhex(kid)
            moment = datetime.fromisoformat(when)
        except ValueError:
            raise ConfigError(
                f"{ROTATED_AT_VAR}: expected '<8 hex key id>@<ISO time>', got {entry!r}"
            ) from None
        rotated[kid] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return rotated


def format_rotated_at(rotated: Mapping[str, datetime]) -> str:
    """Return the ``PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT`` value for ``rotated``."""
    return ",".join(f"{kid}@{when.astimezone(UTC).isoformat()}" for kid, when in rotated.items())


def active_key_since(
    settings: Settings, *, environ: Mapping[str, str] | None = None
) -> datetime | None:
    """Return when the active ``ENCRYPTION_KEY`` came into use, if known.

    That is the newest rotation time recorded for a previous key, or else
    ``PAULYOPS_ENCRYPTION_KEY_CREATED_AT`` (written when the key was generated).
    """
    values = rotation_values(settings.root / ENV_FILE_NAME, environ)
    rotated = parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
    if rotated:
        return max(rotated.values())
    return settings.encryption_key_created_at


# --- rotate and drop --------------------------------------------------------------------


@dataclass(frozen=True)
class RotationResult:
    """What ``paulyops keys rotate`` changed and what other machines need.

    ``copy_values`` holds secrets; it is left out of ``repr`` and only
    :meth:`copy_lines` reveals it, for the operator's terminal, never a log.
    """

    env_path: Path
    new_key_id: str
    previous_key_ids: tuple[str, ...]
    rotated_at: datetime
    retire_after: datetime
    shadowed_by_environment: tuple[str, ...]
    copy_values: Mapping[str, SecretStr] = dataclasses.field(repr=False)

    def copy_lines(self) -> list[str]:
        """Return the ``KEY=value`` lines to copy into every other machine's ``.env.local``."""
        return _copy_lines(self.copy_values)


@dataclass(frozen=True)
class RetireResult:
    """What ``paulyops keys retire`` removed and what other machines need."""

    env_path: Path
    key_id: str
    previous_key_ids: tuple[str, ...]
    copy_values: Mapping[str, SecretStr] = dataclasses.field(repr=False)

    def copy_lines(self) -> list[str]:
        """Return the ``KEY=value`` lines to copy into every other machine's ``.env.local``."""
        return _copy_lines(self.copy_values)


def _copy_lines(values: Mapping[str, SecretStr]) -> list[str]:
    return [f"{name}={value.get_secret_value()}" for name, value in values.items()]


def rotate_env_file(
    env_path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> RotationResult:
    """Generate a new ``ENCRYPTION_KEY`` and move the old one into the previous keys.

    Only three lines change (``ENCRYPTION_KEY``, ``ENCRYPTION_KEYS_PREVIOUS`` and
    ``PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT``); every other line, comment and value stays.
    The file is replaced atomically with mode 0600.

    Args:
        env_path: the instance's ``.env.local``.
        environ: the environment, to report variables that shadow the file (default
            ``os.environ``).
        now: the rotation time (default: now).

    Raises:
        ConfigError: the file does not exist or holds no valid ``ENCRYPTION_KEY``.
    """
    values = _read_existing(env_path)
    old_text = values.get(ACTIVE_KEY_VAR, "")
    if not old_text:
        raise ConfigError(
            f"{env_path}: expected an {ACTIVE_KEY_VAR} line to rotate, got none "
            "(a key set only in the environment must be rotated there)"
        )
    old_raw = _decode_var(ACTIVE_KEY_VAR, old_text)
    old_id = key_id(old_raw)
    previous = previous_keys(values)
    taken = {old_id, *(kid for kid, _ in previous)}
    new_text = new_encryption_key()
    while (new_id := key_id(decode_key(new_text))) in taken:  # a 1-in-2**32 id clash
        new_text = new_encryption_key()
    kept = [(kid, text) for kid, text in previous if kid != old_id]
    new_previous = [(old_id, old_text), *kept]
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    old_rotated = parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
    rotated = {old_id: moment} | {k: old_rotated[k] for k, _ in kept if k in old_rotated}
    updates = {
        ACTIVE_KEY_VAR: new_text,
        PREVIOUS_KEYS_VAR: ",".join(text for _, text in new_previous),
        ROTATED_AT_VAR: format_rotated_at(rotated),
    }
    update_env_file(env_path, updates)
    env = _upper(environ)
    grace = grace_days({**values, **env}.get(GRACE_DAYS_VAR))
    shadowed = tuple(name for name in updates if name in env)
    previous_ids = tuple(kid for kid, _ in new_previous)
    log.info("encryption_key_rotated", new_key_id=new_id, previous_key_ids=list(previous_ids))
    security_event("crypto.key_rotated", severity="info", new_key_id=new_id, old_key_id=old_id)
    return RotationResult(
        env_path=env_path,
        new_key_id=new_id,
        previous_key_ids=previous_ids,
        rotated_at=moment,
        retire_after=moment + timedelta(days=grace),
        shadowed_by_environment=shadowed,
        copy_values={name: SecretStr(value) for name, value in updates.items()},
    )


def drop_previous_key(env_path: Path, kid: str) -> RetireResult:
    """Remove the key ``kid`` from ``ENCRYPTION_KEYS_PREVIOUS`` (and its rotation time).

    It does not check whether stored values still use the key: the retire use case
    (:func:`paulyops.services.keys.retire`) does, before calling this.

    Raises:
        NotFoundError: the file's ``ENCRYPTION_KEYS_PREVIOUS`` has no such key.
        ConfigError: the file is missing or malformed.
    """
    values = _read_existing(env_path)
    previous = previous_keys(values)
    if kid not in {k for k, _ in previous}:
        known = ", ".join(k for k, _ in previous) or "none"
        raise NotFoundError(
            f"{PREVIOUS_KEYS_VAR} in {env_path}: expected one of {known}, got {kid!r}"
        )
    kept = [(k, text) for k, text in previous if k != kid]
    rotated = parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
    updates = {
        PREVIOUS_KEYS_VAR: ",".join(text for _, text in kept),
        ROTATED_AT_VAR: format_rotated_at({k: rotated[k] for k, _ in kept if k in rotated}),
    }
    update_env_file(env_path, updates)
    security_event("crypto.key_retired", severity="info", key_id=kid)
    return RetireResult(
        env_path=env_path,
        key_id=kid,
        previous_key_ids=tuple(k for k, _ in kept),
        copy_values={name: SecretStr(value) for name, value in updates.items()},
    )


def previous_keys(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Return ``(key id, key text)`` of each ``ENCRYPTION_KEYS_PREVIOUS`` entry in ``values``.

    Raises:
        ConfigError: an entry is not a valid key.
    """
    texts = [t.strip() for t in values.get(PREVIOUS_KEYS_VAR, "").split(",") if t.strip()]
    return [(key_id(_decode_var(PREVIOUS_KEYS_VAR, text)), text) for text in texts]


def _upper(environ: Mapping[str, str] | None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k.upper(): v for k, v in env.items()}


def _read_existing(env_path: Path) -> dict[str, str]:
    if not env_path.is_file():
        raise ConfigError(f"{env_path}: expected an existing {ENV_FILE_NAME}, got no file")
    return {k.upper(): v for k, v in read_env_file(env_path).items()}


def _decode_var(name: str, text: str) -> bytes:
    try:
        return decode_key(text)
    except ValueError as err:
        raise ConfigError(f"{name}: {err}") from None


__all__ = [
    "ACTIVE_KEY_VAR",
    "DEFAULT_GRACE_DAYS",
    "GRACE_DAYS_VAR",
    "PREVIOUS_KEYS_VAR",
    "ROTATED_AT_VAR",
    "RetireResult",
    "RotationResult",
    "active_key_since",
    "check_rotation_values",
    "drop_previous_key",
    "format_rotated_at",
    "grace_days",
    "parse_rotated_at",
    "previous_keys",
    "rotate_env_file",
    "rotation_values",
]
