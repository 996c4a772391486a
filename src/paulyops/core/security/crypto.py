"""Secrets at rest: the AES-256-GCM key ring.

Ciphertext format (every stored secret, whatever the table)::

    0x01 | key id (4 bytes) | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)

The key id is :func:`paulyops.core.settings.key_id` of the raw key (8 hex characters)
stored as its 4 raw bytes, so any blob names the key that can open it. The associated
data binds a blob to one place: ``b"paulyops:v1|<table>|<row id>|<field>"`` (see
:class:`Aad`); a blob copied to another row, table or field fails to decrypt.

The key ring (:class:`KeyRing`) encrypts with ``ENCRYPTION_KEY`` and decrypts with it or
any key of ``ENCRYPTION_KEYS_PREVIOUS``; a previous key with a recorded rotation time
stops decrypting once its grace period is over (:class:`RetiredKeyError`). How those
variables look in ``.env.local``, and how a rotation rewrites them, is
:mod:`paulyops.core.security.keyfile`.

There is no process-wide ring. Each :class:`~paulyops.core.instance.Instance` builds its
own from its settings and hands it to its database's sessions, where the encrypted model
fields (:mod:`paulyops.core.security.fields`) find it; code that holds a ring passes it.
Rotation, re-encryption and retirement are use cases of :mod:`paulyops.services.keys`.

Errors (subclasses of :class:`paulyops.core.errors.PaulyOpsError`)::

    DecryptionError      malformed blob, unknown key, wrong place or tampered data
    └── RetiredKeyError  the blob's key is past its grace period

Messages name key ids, tables, rows and fields; never key material or plaintext.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paulyops.core.errors import ConfigError, NotFoundError, PaulyOpsError
from paulyops.core.logging import security_event
from paulyops.core.security.keyfile import (
    ACTIVE_KEY_VAR,
    DEFAULT_GRACE_DAYS,
    GRACE_DAYS_VAR,
    PREVIOUS_KEYS_VAR,
    ROTATED_AT_VAR,
    RetireResult,
    RotationResult,
    active_key_since,
    check_rotation_values,
    grace_days,
    parse_rotated_at,
    rotate_env_file,
    rotation_values,
)
from paulyops.core.settings import ENV_FILE_NAME, Settings, decode_key, key_id

FORMAT_VERSION = 0x01
KEY_ID_BYTES = 4
# 96-bit random nonces are GCM's native size; with one key they stay safe for about 2**32
# encryptions (NIST SP 800-38D), far beyond what one instance stores before a rotation.
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES
AAD_PREFIX = b"paulyops:v1"
AAD_SEPARATOR = "|"
# Key id reported for stored values that are not ring ciphertext at all.
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

        Everything holding this ring (the instance, its database's sessions, the process
        heartbeat) sees the new keys at once. The swap is one attribute assignment: a concurrent
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
        values = rotation_values(settings.root / ENV_FILE_NAME, environ)
        grace = grace_days(values.get(GRACE_DAYS_VAR))
        rotated = parse_rotated_at(values.get(ROTATED_AT_VAR, ""))
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
    "ACTIVE_KEY_VAR",
    "DEFAULT_GRACE_DAYS",
    "GRACE_DAYS_VAR",
    "MALFORMED",
    "PREVIOUS_KEYS_VAR",
    "ROTATED_AT_VAR",
    "Aad",
    "DecryptionError",
    "KeyRing",
    "PreviousKey",
    "RetireResult",
    "RetiredKeyError",
    "RotationResult",
    "active_key_since",
    "check_rotation_values",
    "openssl_fips_enabled",
    "rotate_env_file",
]
