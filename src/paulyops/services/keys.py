"""Key management use cases: status, rotate, reencrypt, retire, rotate the signing secrets.

The usual cycle is :func:`rotate` (a new active key; the old one keeps decrypting through
its grace period), :func:`reencrypt` (move every stored secret to the new key) and
:func:`retire` (drop the old key once nothing uses it). Each state change writes one
instance-level audit row naming key ids and counts only, refusals included. Key material
leaves only through the results' ``copy_lines()``, for the operator's terminal.

These are instance-level: each use case takes the :class:`~paulyops.core.instance.Instance`
(its database, its key ring and its ``.env.local``) rather than one session, because
re-encryption commits batch by batch and rotation changes a file as well as a row.

Below the use cases are the mechanisms they share, usable on their own (tests, scripts):
:func:`keys_in_use`, :func:`reencrypt_all` and :func:`retire_key`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import Field, SecretStr, field_validator
from sqlalchemy import LargeBinary, Table, func, select, update

from paulyops.core.db.engine import Database
from paulyops.core.db.models import utcnow
from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.core.instance import Instance
from paulyops.core.logging import get_logger
from paulyops.core.processes import ProcessInfo, live_processes, require_current_writers
from paulyops.core.security.crypto import (
    ACTIVE_KEY_VAR,
    FORMAT_VERSION,
    KEY_ID_BYTES,
    MALFORMED,
    DecryptionError,
    KeyRing,
)
from paulyops.core.security.fields import EncryptedField, encrypted_fields
from paulyops.core.security.keyfile import (
    RetireResult,
    RotationResult,
    drop_previous_key,
    rotate_env_file,
)
from paulyops.core.settings import ENV_FILE_NAME, SIGNING_SECRETS, rotate_signing_secrets
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.commands import Command
from paulyops.services.onboarding.errors import custom_error

log = get_logger("paulyops.keys")

TARGET_TYPE = "encryption_key"
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{8}")
KEY_ID_HINT = (
    "expected a key id of 8 hex characters, as `paulyops keys status` shows (the id, not the key)"
)


# --- commands ---------------------------------------------------------------------------


class Reencrypt(Command):
    """Move every stored secret to the active key, ``batch_size`` rows per transaction."""

    batch_size: int = Field(200, ge=1, le=10_000, description="rows per transaction")


class RetireKey(Command):
    """Remove a previous key, named by its id, once no stored value uses it."""

    key_id: str = Field(description="the 8-character key id from `paulyops keys status`")

    @field_validator("key_id", mode="before")
    @classmethod
    def _is_a_key_id(cls, value: object) -> str:
        text = value.strip().lower() if isinstance(value, str) else ""
        if not KEY_ID_PATTERN.fullmatch(text):
            # A complete message, so the input is never echoed: an operator may have
            # pasted the key itself instead of its id.
            raise custom_error("key_id", KEY_ID_HINT)
        return text


# --- views ------------------------------------------------------------------------------

KeyRole = Literal["active", "previous", "unknown", "malformed"]


@dataclass(frozen=True)
class KeyUse:
    """One key id and the stored values it encrypts."""

    key_id: str
    role: KeyRole
    stored: int
    retired_after: datetime | None = None  # previous keys: when they stop decrypting


@dataclass(frozen=True)
class KeyStatus:
    """What ``paulyops keys status`` shows: ring keys first, then ids the ring lacks."""

    active_key_id: str
    keys: tuple[KeyUse, ...]
    processes: tuple[ProcessInfo, ...]
    now: datetime

    @property
    def old_keys_in_use(self) -> list[str]:
        """Previous keys that still encrypt something (reencrypt would move it)."""
        return [k.key_id for k in self.keys if k.role == "previous" and k.stored]

    @property
    def unused_keys(self) -> list[str]:
        """Previous keys that encrypt nothing (retire can remove them)."""
        return [k.key_id for k in self.keys if k.role == "previous" and not k.stored]

    @property
    def strays(self) -> list[KeyUse]:
        """Stored values this ring cannot open: unknown keys and non-ciphertext."""
        return [k for k in self.keys if k.role in ("unknown", "malformed")]


@dataclass(frozen=True)
class SigningRotation:
    """The new ``SESSION_SECRET`` and ``JWT_SECRET`` and their previous-value lists."""

    env_path: Path
    copy_values: Mapping[str, SecretStr] = dataclasses.field(repr=False)

    def copy_lines(self) -> list[str]:
        """Return the ``KEY=value`` lines to copy into every other machine's ``.env.local``."""
        return [f"{name}={value.get_secret_value()}" for name, value in self.copy_values.items()]


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

    @property
    def changed_concurrently(self) -> int:
        """Values left alone because they changed while this ran."""
        return sum(c.changed_concurrently for c in self.fields.values())


@dataclass(frozen=True)
class ReencryptOutcome:
    """A finished :func:`reencrypt`: its counts, and what the keys encrypt now."""

    active_key_id: str
    result: ReencryptResult
    keys_in_use: Mapping[str, int]
    late_processes: tuple[ProcessInfo, ...]

    @property
    def retirable_keys(self) -> list[str]:
        """Keys that encrypt nothing now, while every live process writes with the active key.

        A process started with an old ring while this ran would write old-key values
        again: no key counts as free while one is live.
        """
        if self.late_processes:
            return []
        return [k for k, n in self.keys_in_use.items() if k != self.active_key_id and n == 0]


# --- use cases --------------------------------------------------------------------------


def status(instance: Instance) -> KeyStatus:
    """Return the ring's keys with what each encrypts, and the live processes' keys."""
    ring = instance.keyring
    counts = keys_in_use(instance.db, ring)
    processes = tuple(live_processes(instance.db))
    keys = [
        KeyUse(
            kid,
            "active" if kid == ring.active_key_id else "previous",
            counts.get(kid, 0),
            None if kid == ring.active_key_id else ring.retired_after(kid),
        )
        for kid in ring.key_ids
    ]
    keys += [
        KeyUse(kid, "malformed" if kid == MALFORMED else "unknown", number)
        for kid, number in counts.items()
        if kid not in ring.key_ids
    ]
    return KeyStatus(ring.active_key_id, tuple(keys), processes, utcnow())


def rotate(instance: Instance, actor: Actor) -> RotationResult:
    """Make a new active key in ``.env.local``; the old one keeps decrypting for a while.

    The instance is open before the file changes, so an unreachable database stops the
    rotation before anything is written.

    Raises:
        ConfigError: ``.env.local`` is missing or holds no ``ENCRYPTION_KEY`` (a key set
            only in the environment must be rotated there).
    """
    result = rotate_env_file(instance.settings.root / ENV_FILE_NAME)
    _audit(
        instance,
        actor,
        "keys.rotated",
        key_id=result.new_key_id,
        changes={
            "new_key_id": result.new_key_id,
            "previous_key_ids": list(result.previous_key_ids),
            "retire_after": result.retire_after.isoformat(),
        },
    )
    return result


def reencrypt(
    instance: Instance,
    command: Reencrypt,
    actor: Actor,
    *,
    on_start: Callable[[str], None] | None = None,
    on_batch: Callable[[str, FieldCounts], None] | None = None,
) -> ReencryptOutcome:
    """Move every stored secret to the active key (safe to stop and run again).

    Args:
        instance: the instance (database and key ring).
        command: the batch size.
        actor: who asked.
        on_start: called with the active key id once the run may go ahead.
        on_batch: called after each batch with the field name and its counts so far.

    Raises:
        ConflictError: a live process still writes with another key (audited).
        DecryptionError: a value does not decrypt; batches done so far stay committed
            (audited, as is an interruption with KeyboardInterrupt).
    """
    active = instance.keyring.active_key_id
    try:
        require_current_writers(instance.db, active, command="keys reencrypt")
    except ConflictError:
        _audit(
            instance,
            actor,
            "keys.reencrypted",
            key_id=active,
            outcome="failure",
            changes={"error": "stale_processes"},
        )
        raise
    if on_start is not None:
        on_start(active)
    progress: dict[str, FieldCounts] = {}

    def batch_done(field: str, counts: FieldCounts) -> None:
        progress[field] = counts
        if on_batch is not None:
            on_batch(field, counts)

    # A total, not per field: the audit log redacts keys named like secrets
    # ("users.totp_secret"), which would hide the numbers.
    try:
        result = reencrypt_all(
            instance.db, instance.keyring, batch_size=command.batch_size, on_batch=batch_done
        )
    except (DecryptionError, KeyboardInterrupt) as err:
        _audit(
            instance,
            actor,
            "keys.reencrypted",
            key_id=active,
            outcome="failure",
            changes={
                "reencrypted": sum(c.reencrypted for c in progress.values()),
                "error": type(err).__name__,
            },
        )
        raise
    _audit(
        instance,
        actor,
        "keys.reencrypted",
        key_id=active,
        changes={
            "reencrypted": result.reencrypted,
            "changed_concurrently": result.changed_concurrently,
        },
    )
    late = tuple(p for p in live_processes(instance.db) if p.key_id != active)
    return ReencryptOutcome(active, result, keys_in_use(instance.db, instance.keyring), late)


def retire(instance: Instance, command: RetireKey, actor: Actor) -> RetireResult:
    """Remove a previous key from ``.env.local`` once no stored value and no process uses it.

    Raises:
        ConflictError: the key is the active one, stored values still use it, or a live
            process still writes with another key (each audited).
        NotFoundError: ``ENCRYPTION_KEYS_PREVIOUS`` has no such key (audited).
    """
    kid = command.key_id
    try:
        require_current_writers(instance.db, instance.keyring.active_key_id, command="keys retire")
        result = retire_key(
            instance.settings.root / ENV_FILE_NAME, instance.db, instance.keyring, kid
        )
    except (ConflictError, NotFoundError):
        _audit(
            instance, actor, "keys.retired", key_id=kid, outcome="failure", changes={"key_id": kid}
        )
        raise
    _audit(
        instance,
        actor,
        "keys.retired",
        key_id=kid,
        changes={"key_id": kid, "previous_key_ids": list(result.previous_key_ids)},
    )
    return result


def rotate_signing(instance: Instance, actor: Actor) -> SigningRotation:
    """Give ``SESSION_SECRET`` and ``JWT_SECRET`` new values; the old ones keep verifying.

    Raises:
        ConfigError: ``.env.local`` is missing or lacks one of the two secrets.
    """
    env_path = instance.settings.root / ENV_FILE_NAME
    changed = rotate_signing_secrets(env_path)
    _audit(
        instance,
        actor,
        "keys.signing_rotated",
        key_id=None,
        changes={"rotated": sorted(SIGNING_SECRETS)},
    )
    return SigningRotation(env_path, {k: SecretStr(v) for k, v in changed.items()})


def _audit(
    instance: Instance,
    actor: Actor,
    action: str,
    *,
    key_id: str | None,
    changes: Mapping[str, Any],
    outcome: str = "success",
) -> None:
    """Write the instance-level audit row of a key operation (key ids and counts only)."""
    with instance.db.write_session() as session:
        actors.record(
            session,
            actor,
            action,
            organization_id=None,
            target_type=TARGET_TYPE,
            target_id=key_id,
            outcome=outcome,
            changes=changes,
        )


# --- mechanisms -------------------------------------------------------------------------


def keys_in_use(db: Database, ring: KeyRing) -> dict[str, int]:
    """Count stored encrypted values per key id, over every encrypted field.

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


def reencrypt_all(
    db: Database,
    ring: KeyRing,
    *,
    batch_size: int = 200,
    max_batches: int | None = None,
    on_batch: Callable[[str, FieldCounts], None] | None = None,
) -> ReencryptResult:
    """Move every encrypted value to the ring's active key (no audit row: see :func:`reencrypt`).

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


def retire_key(env_path: Path, db: Database, ring: KeyRing, key_id_to_retire: str) -> RetireResult:
    """Remove a previous key from ``ENCRYPTION_KEYS_PREVIOUS`` once nothing uses it.

    No audit row and no check of live processes: :func:`retire` adds both.

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
    return drop_previous_key(env_path, kid)


__all__ = [
    "KEY_ID_HINT",
    "FieldCounts",
    "KeyStatus",
    "KeyUse",
    "Reencrypt",
    "ReencryptOutcome",
    "ReencryptResult",
    "RetireKey",
    "RetireResult",
    "RotationResult",
    "SigningRotation",
    "keys_in_use",
    "reencrypt",
    "reencrypt_all",
    "retire",
    "retire_key",
    "rotate",
    "rotate_signing",
    "status",
]
