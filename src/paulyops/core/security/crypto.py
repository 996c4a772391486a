"""Secrets at rest: an AES-256-GCM key ring, encrypted model fields and key rotation.

Ciphertext format (every stored secret, whatever the table)::

    0x01 | key id (4 bytes) | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)

The key id is :func:`paulyops.core.settings.key_id` of the raw key (8 hex characters)
stored as its 4 raw bytes, so any blob names the key that can open it. The associated
data binds a blob to one place: ``b"paulyops:v1|<table>|<row id>|<field>"`` (see
:class:`Aad`); a blob copied to another row, table or field fails to decrypt.

The key ring (:class:`KeyRing`) encrypts with ``ENCRYPTION_KEY`` and decrypts with it or
any key of ``ENCRYPTION_KEYS_PREVIOUS``. ``paulyops keys rotate`` records when each old key
was rotated out in ``PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT`` (``<key id>@<ISO time>``,
comma-separated); such a key keeps decrypting for ``PAULYOPS_ENCRYPTION_GRACE_DAYS``
(default 30) and is refused afterwards with :class:`RetiredKeyError`. A previous key
without a rotation time has no deadline. Neither variable holds a secret.

Encrypted model fields. A SQLAlchemy type cannot see the row id, so encryption happens at
the ORM level, eagerly: :func:`write_secret` assigns the row's id if it has none yet (from
the column default, ``new_id(prefix)``), encrypts with the table, id and field as
associated data and stores the blob in the ``LargeBinary`` column; :func:`read_secret`
decrypts it. Plaintext never sits on the object waiting for a flush, and no session event
is needed. Fields are declared once with :func:`register_encrypted_field`; the built-in
ones (``users.totp_secret``, ``storage_configs.credentials``,
``agent_installations.config``) are registered when this module is imported. Assigning to
the column directly stores raw bytes: always go through the helpers.

Wiring: the app factory, the CLI root and the worker entry point each build one ring at
start and install it::

    set_default_keyring(KeyRing.from_settings(settings))

The helpers use that ring unless a ``ring=`` argument is passed (tests pass their own).

Key management services behind ``paulyops keys rotate | reencrypt | retire``:
:func:`rotate_env_file`, :func:`reencrypt_all`, :func:`keys_in_use` and :func:`retire_key`.

Errors (subclasses of :class:`paulyops.core.errors.PaulyOpsError`)::

    DecryptionError      malformed blob, unknown key, wrong place or tampered data
    └── RetiredKeyError  the blob's key is past its grace period

Messages name key ids, tables, rows and fields; never key material or plaintext.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy import Column, LargeBinary, Table, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AgentInstallation, Base, StorageConfig, User, WizardDraft
from paulyops.core.errors import ConfigError, ConflictError, NotFoundError, PaulyOpsError
from paulyops.core.logging import get_logger, security_event
from paulyops.core.settings import (
    ENV_FILE_NAME,
    Settings,
    decode_key,
    key_id,
    new_encryption_key,
    read_env_file,
)

log = get_logger("paulyops.crypto")

FORMAT_VERSION = 0x01
KEY_ID_BYTES = 4
# 96-bit random nonces are GCM's native size; with one key they stay safe for about 2**32
# encryptions (NIST SP 800-38D), far beyond what one instance stores before a rotation.
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES
AAD_PREFIX = b"paulyops:v1"
AAD_SEPARATOR = "|"

DEFAULT_GRACE_DAYS = 30
ROTATED_AT_VAR = "PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT"
GRACE_DAYS_VAR = "PAULYOPS_ENCRYPTION_GRACE_DAYS"
ACTIVE_KEY_VAR = "ENCRYPTION_KEY"
PREVIOUS_KEYS_VAR = "ENCRYPTION_KEYS_PREVIOUS"
# Key id reported by keys_in_use for stored values that are not ring ciphertext at all.
MALFORMED = "malformed"


# --- errors ------------------------------------------------------------------------------


class DecryptionError(PaulyOpsError):
    """A blob could not be decrypted; ``key_id`` names its key when the header was readable."""

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class RetiredKeyError(DecryptionError):
    """The blob's key is past its grace period and no longer decrypts."""


# --- associated data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Aad:
    """The place a ciphertext belongs to; its bytes are the GCM associated data.

    Args:
        table: the table name, e.g. ``storage_configs``.
        row_id: the row's primary key, e.g. ``stor_01J9...``.
        field: the column or logical field, e.g. ``credentials``.

    Raises:
        ValueError: a part is empty or contains ``|`` (it would make the bytes ambiguous).
    """

    table: str
    row_id: str
    field: str
    encoded: bytes = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("table", "row_id", "field"):
            value = getattr(self, name)
            if not value or AAD_SEPARATOR in value:
                raise ValueError(
                    f"Aad.{name}: expected a non-empty text without '|', got {value!r}"
                )
        parts = (AAD_PREFIX, self.table.encode(), self.row_id.encode(), self.field.encode())
        # Built once: the bytes are used on every encrypt and decrypt of this place.
        object.__setattr__(self, "encoded", AAD_SEPARATOR.encode().join(parts))


# --- the key ring ------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviousKey:
    """An older key that still decrypts, until ``retired_after`` when that is set."""

    raw: bytes = dataclasses.field(repr=False)
    retired_after: datetime | None = None

    @property
    def key_id(self) -> str:
        """The key's id (first 8 hex characters of its sha256)."""
        return key_id(self.raw)


@dataclass(frozen=True)
class _RingKey:
    key_id: str
    aead: AESGCM = dataclasses.field(repr=False)
    retired_after: datetime | None


@dataclass(frozen=True)
class _RingState:
    """The keys of a ring at one moment; replaced whole when the ring reloads."""

    active: _RingKey
    header: bytes
    keys: Mapping[str, _RingKey]

    @classmethod
    def build(cls, active: bytes, previous: Iterable[bytes | PreviousKey]) -> _RingState:
        active_key = _ring_key(active, None)
        keys: dict[str, _RingKey] = {active_key.key_id: active_key}
        for item in previous:
            prev = item if isinstance(item, PreviousKey) else PreviousKey(item)
            ring_key = _ring_key(prev.raw, prev.retired_after)
            # A key listed twice (or the active key listed again) counts once; the first
            # entry wins. rotate_env_file never creates two keys with one id.
            keys.setdefault(ring_key.key_id, ring_key)
        header = bytes([FORMAT_VERSION]) + bytes.fromhex(active_key.key_id)
        return cls(active_key, header, keys)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyRing:
    """Encrypt with the active key; decrypt with it or any previous key still in grace.

    Args:
        active: the raw 32-byte active key (``ENCRYPTION_KEY``).
        previous: older keys, raw bytes (no deadline) or :class:`PreviousKey`.
        clock: returns the current aware time; tests pass a fixed one.

    Raises:
        ValueError: a key is not 32 bytes.
    """

    def __init__(
        self,
        active: bytes,
        previous: Iterable[bytes | PreviousKey] = (),
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._clock = clock
        self._state = _RingState.build(active, previous)

    def adopt(self, other: KeyRing) -> None:
        """Take over ``other``'s keys in place (a reloaded ``.env.local``).

        Everything holding this ring (the instance, the default ring of the field helpers)
        sees the new keys at once. The swap is one attribute assignment: a concurrent
        :meth:`encrypt` uses either the old keys or the new ones, never a mix.
        """
        self._state = other._state

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> KeyRing:
        """Build the ring from ``ENCRYPTION_KEY`` and ``ENCRYPTION_KEYS_PREVIOUS``.

        Rotation times and the grace period are read from ``environ`` (default
        ``os.environ``), then from ``<root>/.env.local``, like every other setting.

        Raises:
            ConfigError: ``ENCRYPTION_KEY`` is missing, or the rotation variables are
                malformed (the message names the variable).
        """
        if settings.encryption_key is None:
            raise ConfigError(
                f"{ACTIVE_KEY_VAR}: expected base64url of 32 random bytes, got nothing "
                "(run `paulyops setup` to generate one)"
            )
        values = _rotation_values(settings.root / ENV_FILE_NAME, environ)
        grace = _grace_days(values.get(GRACE_DAYS_VAR))
        rotated = _parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
        previous = []
        for secret in settings.encryption_keys_previous:
            raw = decode_key(secret.get_secret_value())
            when = rotated.get(key_id(raw))
            retired_after = when + timedelta(days=grace) if when is not None else None
            previous.append(PreviousKey(raw, retired_after))
        active = decode_key(settings.encryption_key.get_secret_value())
        return cls(active, previous, clock=clock)

    @property
    def active_key_id(self) -> str:
        """The id of the key new ciphertexts use."""
        return self._state.active.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id in the ring, the active one first."""
        return tuple(self._state.keys)

    def retired_after(self, kid: str) -> datetime | None:
        """Return when ``kid`` stops decrypting (``None``: no deadline).

        Raises:
            NotFoundError: the ring has no key ``kid``.
        """
        keys = self._state.keys
        ring_key = keys.get(kid)
        if ring_key is None:
            raise NotFoundError(f"key id: expected one of {', '.join(keys)}, got {kid!r}")
        return ring_key.retired_after

    def encrypt(self, plaintext: bytes, *, aad: Aad) -> bytes:
        """Encrypt ``plaintext`` for the place ``aad`` with the active key."""
        state = self._state  # one read: header and key always belong together
        nonce = os.urandom(NONCE_BYTES)
        return state.header + nonce + state.active.aead.encrypt(nonce, plaintext, aad.encoded)

    def decrypt(self, blob: bytes, *, aad: Aad) -> bytes:
        """Decrypt a blob made by :meth:`encrypt` for the same place.

        Raises:
            DecryptionError: malformed blob, unknown key, other place or tampered data.
            RetiredKeyError: the blob's key is past its grace period.
        """
        kid = self.key_id_of(blob)
        keys = self._state.keys
        ring_key = keys.get(kid)
        if ring_key is None:
            raise DecryptionError(
                f"{_where(aad)}: encrypted with key {kid}, which is neither {ACTIVE_KEY_VAR} "
                f"nor in {PREVIOUS_KEYS_VAR} (known: {', '.join(keys)})",
                key_id=kid,
            )
        if ring_key.retired_after is not None and self._clock() >= ring_key.retired_after:
            security_event(
                "crypto.retired_key_used",
                key_id=kid,
                table=aad.table,
                row_id=aad.row_id,
                field=aad.field,
            )
            raise RetiredKeyError(
                f"{_where(aad)}: key {kid} was retired on {ring_key.retired_after.isoformat()} "
                f"(grace period over); raise {GRACE_DAYS_VAR} and run `paulyops keys reencrypt`",
                key_id=kid,
            )
        nonce = blob[1 + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return ring_key.aead.decrypt(nonce, blob[HEADER_BYTES:], aad.encoded)
        except InvalidTag:
            security_event(
                "crypto.decrypt_failed",
                key_id=kid,
                table=aad.table,
                row_id=aad.row_id,
                field=aad.field,
            )
            raise DecryptionError(
                f"{_where(aad)}: authentication failed with key {kid} "
                "(the value was altered or belongs to another row or field)",
                key_id=kid,
            ) from None

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        """Return the key id a blob names, without decrypting it.

        Raises:
            DecryptionError: the blob is too short or not format version 1.
        """
        if len(blob) < HEADER_BYTES + TAG_BYTES:
            raise DecryptionError(
                f"ciphertext: expected at least {HEADER_BYTES + TAG_BYTES} bytes, got {len(blob)}"
            )
        if blob[0] != FORMAT_VERSION:
            raise DecryptionError(
                f"ciphertext: expected format version {FORMAT_VERSION}, got {blob[0]}"
            )
        return blob[1 : 1 + KEY_ID_BYTES].hex()

    def is_active(self, blob: bytes) -> bool:
        """Whether ``blob`` already uses the active key (reencryption can skip it)."""
        return blob[: 1 + KEY_ID_BYTES] == self._state.header

    def __repr__(self) -> str:
        return f"KeyRing(active={self.active_key_id!r}, keys={list(self.key_ids)!r})"


def _ring_key(raw: bytes, retired_after: datetime | None) -> _RingKey:
    if len(raw) != 32:
        raise ValueError(f"expected a 32-byte AES-256 key, got {len(raw)} bytes")
    if retired_after is not None and retired_after.tzinfo is None:
        raise ValueError("retired_after: expected an aware datetime, got a naive one")
    return _RingKey(key_id(raw), AESGCM(raw), retired_after)


def _where(aad: Aad) -> str:
    return f"{aad.table}.{aad.field} of {aad.row_id}"


def _rotation_values(env_path: Path, environ: Mapping[str, str] | None) -> dict[str, str]:
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
    _grace_days(values.get(GRACE_DAYS_VAR))
    _parse_rotated_at(values.get(ROTATED_AT_VAR, ""))


def _grace_days(text: str | None) -> int:
    if text is None or text.strip() == "":
        return DEFAULT_GRACE_DAYS
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise ConfigError(f"{GRACE_DAYS_VAR}: expected a whole number of days >= 0, got {text!r}")
    return days


def _parse_rotated_at(text: str) -> dict[str, datetime]:
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


def _format_rotated_at(rotated: Mapping[str, datetime]) -> str:
    return ",".join(f"{kid}@{when.astimezone(UTC).isoformat()}" for kid, when in rotated.items())


# --- the default ring --------------------------------------------------------------------

_default_ring: KeyRing | None = None


def active_key_since(
    settings: Settings, *, environ: Mapping[str, str] | None = None
) -> datetime | None:
    """Return when the active ``ENCRYPTION_KEY`` came into use, if known.

    That is the newest rotation time recorded for a previous key, or else
    ``PAULYOPS_ENCRYPTION_KEY_CREATED_AT`` (written when the key was generated).
    """
    values = _rotation_values(settings.root / ENV_FILE_NAME, environ)
    rotated = _parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
    if rotated:
        return max(rotated.values())
    return settings.encryption_key_created_at


def set_default_keyring(ring: KeyRing | None) -> None:
    """Install the ring the field helpers use (app, CLI and worker start; ``None`` clears)."""
    # One ring per process, installed once at start; a module global keeps the helpers'
    # signatures free of plumbing.
    global _default_ring
    _default_ring = ring


def default_keyring() -> KeyRing:
    """Return the ring installed by :func:`set_default_keyring`.

    Raises:
        ConfigError: no ring was installed (a start-up path forgot to).
    """
    if _default_ring is None:
        raise ConfigError(
            "key ring: expected set_default_keyring(KeyRing.from_settings(settings)) at "
            "start, got none"
        )
    return _default_ring


# --- encrypted model fields --------------------------------------------------------------


@dataclass(frozen=True)
class EncryptedField:
    """A ``LargeBinary`` column whose values are key-ring ciphertext bound to their row."""

    model: type[Base]
    attr: str
    field: str
    table: str
    pk_attr: str

    @property
    def column(self) -> Column[Any]:
        """The ciphertext column."""
        return sa_inspect(self.model).columns[self.attr]

    @property
    def pk_column(self) -> Column[Any]:
        """The primary-key column."""
        return sa_inspect(self.model).columns[self.pk_attr]

    def aad(self, row_id: str) -> Aad:
        """Return the associated data of this field in row ``row_id``."""
        return Aad(self.table, row_id, self.field)

    @property
    def name(self) -> str:
        """``<table>.<field>``, for messages and counts."""
        return f"{self.table}.{self.field}"


_registry: dict[tuple[type[Base], str], EncryptedField] = {}


def register_encrypted_field(
    model: type[Base], attr: str, *, field: str | None = None
) -> EncryptedField:
    """Declare ``model.attr`` (a ``LargeBinary`` column) as an encrypted field.

    Args:
        model: the mapped class; it needs a single-column string primary key.
        attr: the column attribute holding the ciphertext.
        field: the name bound into the associated data (default ``attr``). Never change
            it once values are stored: they would no longer decrypt.

    Raises:
        ValueError: the attribute is not a ``LargeBinary`` column, or the primary key
            is not a single column.
    """
    mapper = sa_inspect(model)
    prop = mapper.column_attrs.get(attr)
    if prop is None or not isinstance(prop.columns[0].type, LargeBinary):
        raise ValueError(f"{model.__name__}.{attr}: expected a LargeBinary column")
    if len(mapper.primary_key) != 1:
        raise ValueError(f"{model.__name__}: expected a single-column primary key")
    pk_attr = mapper.get_property_by_column(mapper.primary_key[0]).key
    entry = EncryptedField(model, attr, field or attr, str(model.__tablename__), pk_attr)
    _registry[(model, attr)] = entry
    return entry


def encrypted_fields() -> tuple[EncryptedField, ...]:
    """Return every registered encrypted field, in registration order."""
    return tuple(_registry.values())


def _lookup(obj: Base, attr: str) -> EncryptedField:
    entry = _registry.get((type(obj), attr))
    if entry is None:
        raise ValueError(f"{type(obj).__name__}.{attr} is not a registered encrypted field")
    return entry


def _ensure_row_id(obj: Base, entry: EncryptedField) -> str:
    row_id = getattr(obj, entry.pk_attr)
    if row_id is not None:
        return str(row_id)
    default = entry.pk_column.default
    if isinstance(default, CallableColumnDefault):
        # SQLAlchemy wraps a zero-argument default as fn(context), copying the original's
        # signature onto the wrapper; look at the wrapper itself to know how to call it.
        fn = cast(Callable[..., Any], default.arg)
        params = inspect.signature(fn, follow_wrapped=False).parameters
        row_id = fn(None) if params else fn()
    elif isinstance(default, ScalarElementColumnDefault):
        row_id = default.arg
    if not isinstance(row_id, str) or not row_id:
        raise ValueError(f"{entry.name}: the row has no id and its id column has no default")
    setattr(obj, entry.pk_attr, row_id)
    return row_id


def write_secret(
    obj: Base, attr: str, plaintext: bytes | None, *, ring: KeyRing | None = None
) -> None:
    """Encrypt ``plaintext`` into ``obj.attr`` bound to the row (``None`` clears it).

    The row id is assigned first when the object has none yet.

    Raises:
        ValueError: ``attr`` is not a registered encrypted field of ``obj``'s class.
        ConfigError: no ``ring`` given and no default ring installed.
    """
    entry = _lookup(obj, attr)
    if plaintext is None:
        setattr(obj, attr, None)
        return
    ring = ring or default_keyring()
    row_id = _ensure_row_id(obj, entry)
    setattr(obj, attr, ring.encrypt(plaintext, aad=entry.aad(row_id)))


def read_secret(obj: Base, attr: str, *, ring: KeyRing | None = None) -> bytes | None:
    """Return the decrypted value of ``obj.attr`` (``None`` when unset).

    Raises:
        ValueError: ``attr`` is not a registered encrypted field of ``obj``'s class.
        DecryptionError: the stored value does not decrypt for this row.
    """
    entry = _lookup(obj, attr)
    blob = getattr(obj, attr)
    if blob is None:
        return None
    row_id = getattr(obj, entry.pk_attr)
    if row_id is None:
        raise DecryptionError(f"{entry.name}: the row has no id, so its value cannot be bound")
    return (ring or default_keyring()).decrypt(bytes(blob), aad=entry.aad(str(row_id)))


def write_secret_json(obj: Base, attr: str, value: Any, *, ring: KeyRing | None = None) -> None:
    """Like :func:`write_secret` for a JSON-serialisable value (``None`` clears it)."""
    data = None if value is None else json.dumps(value, separators=(",", ":")).encode()
    write_secret(obj, attr, data, ring=ring)


def read_secret_json(obj: Base, attr: str, *, ring: KeyRing | None = None) -> Any:
    """Like :func:`read_secret`, decoding JSON (``None`` when unset)."""
    data = read_secret(obj, attr, ring=ring)
    return None if data is None else json.loads(data)


BUILTIN_ENCRYPTED_FIELDS = (
    register_encrypted_field(User, "totp_secret"),
    register_encrypted_field(StorageConfig, "credentials"),
    register_encrypted_field(AgentInstallation, "config"),
    register_encrypted_field(WizardDraft, "data"),
)


# --- key management: rotate, reencrypt, retire -------------------------------------------


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
        return [f"{name}={value.get_secret_value()}" for name, value in self.copy_values.items()]


@dataclass(frozen=True)
class RetireResult:
    """What ``paulyops keys retire`` removed and what other machines need."""

    env_path: Path
    key_id: str
    previous_key_ids: tuple[str, ...]
    copy_values: Mapping[str, SecretStr] = dataclasses.field(repr=False)

    def copy_lines(self) -> list[str]:
        """Return the ``KEY=value`` lines to copy into every other machine's ``.env.local``."""
        return [f"{name}={value.get_secret_value()}" for name, value in self.copy_values.items()]


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
    previous = _previous_keys(values)
    taken = {old_id, *(kid for kid, _ in previous)}
    new_text = new_encryption_key()
    while (new_id := key_id(decode_key(new_text))) in taken:  # a 1-in-2**32 id clash
        new_text = new_encryption_key()
    kept = [(kid, text) for kid, text in previous if kid != old_id]
    new_previous = [(old_id, old_text), *kept]
    moment = (now or _utcnow()).astimezone(UTC)
    old_rotated = _parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
    rotated = {old_id: moment} | {k: old_rotated[k] for k, _ in kept if k in old_rotated}
    updates = {
        ACTIVE_KEY_VAR: new_text,
        PREVIOUS_KEYS_VAR: ",".join(text for _, text in new_previous),
        ROTATED_AT_VAR: _format_rotated_at(rotated),
    }
    _rewrite_env_file(env_path, updates)
    env = _upper(environ)
    grace = _grace_days({**values, **env}.get(GRACE_DAYS_VAR))
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


def _previous_keys(values: Mapping[str, str]) -> list[tuple[str, str]]:
    texts = [t.strip() for t in values.get(PREVIOUS_KEYS_VAR, "").split(",") if t.strip()]
    return [(key_id(_decode_var(PREVIOUS_KEYS_VAR, text)), text) for text in texts]


def _rewrite_env_file(path: Path, updates: Mapping[str, str]) -> None:
    """Set each ``updates`` key on its last line in ``path`` (append if absent), atomically."""
    lines = path.read_text(encoding="utf-8").splitlines()
    last: dict[str, int] = {}
    for index, raw_line in enumerate(lines):
        line = raw_line.strip().removeprefix("export ").strip()
        name, sep, _ = line.partition("=")
        if sep and not line.startswith("#") and name.strip().upper() in updates:
            last[name.strip().upper()] = index
    for name, value in updates.items():
        if name in last:
            prefix = "export " if lines[last[name]].lstrip().startswith("export ") else ""
            lines[last[name]] = f"{prefix}{name}={value}"
        else:
            lines.append(f"{name}={value}")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


@dataclass
class FieldCounts:
    """Progress of :func:`reencrypt_all` on one encrypted field."""

    scanned: int = 0
    reencrypted: int = 0
    skipped: int = 0
    changed_concurrently: int = 0


@dataclass
class ReencryptResult:
    """Counts per field (``<table>.<field>``); ``complete`` is false when stopped early."""

    fields: dict[str, FieldCounts]
    complete: bool

    @property
    def reencrypted(self) -> int:
        """Values moved to the active key in this run."""
        return sum(c.reencrypted for c in self.fields.values())


def reencrypt_all(
    db: Database,
    ring: KeyRing,
    *,
    batch_size: int = 200,
    max_batches: int | None = None,
    on_batch: Callable[[str, FieldCounts], None] | None = None,
) -> ReencryptResult:
    """Move every registered encrypted value to the ring's active key.

    Walks each field in primary-key order, one transaction per batch; values already on
    the active key are skipped, so a stopped run resumes by running again. A value that
    changed between read and write is left alone and counted as changed concurrently.

    Args:
        db: the database.
        ring: the ring to decrypt and encrypt with.
        batch_size: rows per transaction.
        max_batches: stop after this many batches in total (``None``: run to the end).
        on_batch: called after each batch with the field name and its counts so far.

    Raises:
        DecryptionError: a value does not decrypt (unknown or retired key, tampering);
            batches committed before it stay committed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    result = ReencryptResult(fields={}, complete=True)
    batches = 0
    for entry in encrypted_fields():
        counts = result.fields.setdefault(entry.name, FieldCounts())
        cursor: str | None = None
        while True:
            if max_batches is not None and batches >= max_batches:
                result.complete = False
                return result
            cursor = _reencrypt_batch(db, ring, entry, counts, cursor, batch_size)
            batches += 1
            if on_batch is not None:
                on_batch(entry.name, counts)
            if cursor is None:
                break
    log.info("reencrypt_finished", active_key_id=ring.active_key_id, reencrypted=result.reencrypted)
    return result


def _reencrypt_batch(
    db: Database,
    ring: KeyRing,
    entry: EncryptedField,
    counts: FieldCounts,
    cursor: str | None,
    batch_size: int,
) -> str | None:
    """Reencrypt one batch after ``cursor``; return the new cursor, ``None`` at the end."""
    pk, col = entry.pk_column, entry.column
    # One row more than the batch tells whether another batch follows, so the last batch
    # is never an empty round trip (it would count against max_batches).
    stmt = select(pk, col).where(col.is_not(None)).order_by(pk).limit(batch_size + 1)
    if cursor is not None:
        stmt = stmt.where(pk > cursor)
    with db.write_session() as session:
        fetched = session.execute(stmt).all()
        rows = fetched[:batch_size]
        for row_id, value in rows:
            counts.scanned += 1
            blob = bytes(value)
            if ring.is_active(blob):
                counts.skipped += 1
                continue
            aad = entry.aad(str(row_id))
            fresh = ring.encrypt(ring.decrypt(blob, aad=aad), aad=aad)
            # Compare-and-set: a value rewritten since the SELECT keeps the newer write;
            # if that write still used an old key, the next run picks it up.
            changed = session.execute(
                update(cast(Table, entry.model.__table__))
                .where(pk == row_id, col == blob)
                .values({col: fresh})
            )
            if changed.rowcount == 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
                counts.reencrypted += 1
            else:
                counts.changed_concurrently += 1
    if len(fetched) <= batch_size:
        return None
    return str(rows[-1][0])


def keys_in_use(db: Database, ring: KeyRing) -> dict[str, int]:
    """Count stored encrypted values per key id, over every registered field.

    Every key of the ring appears (0 when unused); ids the ring does not know appear
    too, and values that are not ring ciphertext count under :data:`MALFORMED`.
    """
    counts = dict.fromkeys(ring.key_ids, 0)
    with db.session() as session:
        for entry in encrypted_fields():
            col = entry.column
            head = func.substr(col, 1, 1 + KEY_ID_BYTES, type_=LargeBinary())
            stmt = select(head, func.count()).where(col.is_not(None)).group_by(head)
            for prefix, number in session.execute(stmt).all():
                raw = bytes(prefix or b"")
                ok = len(raw) == 1 + KEY_ID_BYTES and raw[0] == FORMAT_VERSION
                kid = raw[1:].hex() if ok else MALFORMED
                counts[kid] = counts.get(kid, 0) + int(number)
    return counts


def retire_key(env_path: Path, db: Database, ring: KeyRing, key_id_to_retire: str) -> RetireResult:
    """Remove a previous key from ``ENCRYPTION_KEYS_PREVIOUS`` once nothing uses it.

    Raises:
        ConflictError: the key is the active one, or stored values still use it (run
            ``paulyops keys reencrypt`` first).
        NotFoundError: the file's ``ENCRYPTION_KEYS_PREVIOUS`` has no such key.
        ConfigError: the file is missing or malformed.
    """
    kid = key_id_to_retire.strip().lower()
    if kid == ring.active_key_id:
        raise ConflictError(f"key id: {kid} is the active {ACTIVE_KEY_VAR}; rotate first")
    in_use = keys_in_use(db, ring).get(kid, 0)
    if in_use:
        raise ConflictError(
            f"key id: {kid} still encrypts {in_use} stored value(s); "
            "run `paulyops keys reencrypt` first"
        )
    values = _read_existing(env_path)
    previous = _previous_keys(values)
    if kid not in {k for k, _ in previous}:
        known = ", ".join(k for k, _ in previous) or "none"
        raise NotFoundError(
            f"{PREVIOUS_KEYS_VAR} in {env_path}: expected one of {known}, got {kid!r}"
        )
    kept = [(k, text) for k, text in previous if k != kid]
    rotated = _parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
    updates = {
        PREVIOUS_KEYS_VAR: ",".join(text for _, text in kept),
        ROTATED_AT_VAR: _format_rotated_at({k: rotated[k] for k, _ in kept if k in rotated}),
    }
    _rewrite_env_file(env_path, updates)
    security_event("crypto.key_retired", severity="info", key_id=kid)
    return RetireResult(
        env_path=env_path,
        key_id=kid,
        previous_key_ids=tuple(k for k, _ in kept),
        copy_values={name: SecretStr(value) for name, value in updates.items()},
    )


# --- FIPS --------------------------------------------------------------------------------


def openssl_fips_enabled() -> bool:
    """Whether the OpenSSL that ``cryptography`` loaded runs its FIPS provider.

    This reports the provider state only; it says nothing about a validated module or
    about how the rest of the host is configured.
    """
    # cryptography exposes no public API for this; its Rust binding has a typed function
    # (cryptography >= 42), and older releases keep the flag on the backend object.
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        return bool(rust_openssl.is_fips_enabled())
    except (ImportError, AttributeError):
        from cryptography.hazmat.backends.openssl.backend import backend

        return bool(getattr(backend, "_fips_enabled", False))


__all__ = [
    "BUILTIN_ENCRYPTED_FIELDS",
    "DEFAULT_GRACE_DAYS",
    "GRACE_DAYS_VAR",
    "MALFORMED",
    "ROTATED_AT_VAR",
    "Aad",
    "DecryptionError",
    "EncryptedField",
    "FieldCounts",
    "KeyRing",
    "PreviousKey",
    "ReencryptResult",
    "RetireResult",
    "RetiredKeyError",
    "RotationResult",
    "active_key_since",
    "check_rotation_values",
    "default_keyring",
    "encrypted_fields",
    "keys_in_use",
    "openssl_fips_enabled",
    "read_secret",
    "read_secret_json",
    "reencrypt_all",
    "register_encrypted_field",
    "retire_key",
    "rotate_env_file",
    "set_default_keyring",
    "write_secret",
    "write_secret_json",
]
