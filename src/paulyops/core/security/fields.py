"""Encrypted model fields: the columns that hold key-ring ciphertext, and how to use them.

A column is encrypted when its model declares it with
:func:`~paulyops.core.db.models.base.encrypted_column`; :func:`encrypted_fields` finds every
such column in the mapped models, so nothing here names a table, and a new encrypted
column is covered by ``paulyops keys reencrypt`` and ``keys status`` the day it is added.

A SQLAlchemy type cannot see the row id, so encryption happens at the ORM level, eagerly:
:func:`write_secret` assigns the row's id if it has none yet (from the column default,
``new_id(prefix)``), encrypts with the table, id and field as associated data and stores
the blob; :func:`read_secret` decrypts it. Plaintext never sits on the object waiting for
a flush, and no session event is needed.

Which ring? The one passed as ``ring=``, else the ring of the session the object belongs
to. :class:`~paulyops.core.instance.Instance` binds its ring to its database with
:func:`bind_keyring`, so every session of that database (a request's, a command's, a
worker's) carries it; two instances in one process never share a ring, and nothing is
installed process-wide.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Column, LargeBinary
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, object_session
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Base
from paulyops.core.db.models.base import ENCRYPTED_FIELD
from paulyops.core.errors import ConfigError
from paulyops.core.security.crypto import Aad, DecryptionError, KeyRing

# Session ``info`` key under which a database's sessions carry its key ring.
KEYRING_INFO = "paulyops.keyring"


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


# --- the registry -----------------------------------------------------------------------


@functools.cache
def encrypted_field(model: type[Base], attr: str) -> EncryptedField:
    """Return ``model.attr`` as an encrypted field.

    Raises:
        ValueError: the attribute is not declared with ``encrypted_column()``, is not a
            ``LargeBinary`` column, or the model's primary key is not a single column.
    """
    mapper = sa_inspect(model)
    prop = mapper.column_attrs.get(attr)
    column = prop.columns[0] if prop is not None else None
    if column is None or ENCRYPTED_FIELD not in column.info:
        raise ValueError(f"{model.__name__}.{attr} is not a registered encrypted field")
    if not isinstance(column.type, LargeBinary):
        raise ValueError(f"{model.__name__}.{attr}: expected a LargeBinary column")
    if len(mapper.primary_key) != 1:
        raise ValueError(f"{model.__name__}: expected a single-column primary key")
    pk_attr = mapper.get_property_by_column(mapper.primary_key[0]).key
    field = column.info[ENCRYPTED_FIELD] or attr
    return EncryptedField(model, attr, str(field), str(model.__tablename__), pk_attr)


def encrypted_fields() -> tuple[EncryptedField, ...]:
    """Return every encrypted column of the mapped models, in the order they are declared.

    That is the order of the tables in the metadata, then of the columns in each table:
    re-encryption walks the fields in this order, so a run stopped part-way and its
    counts are the same on every machine.
    """
    position = {table: index for index, table in enumerate(Base.metadata.tables)}
    found = [
        encrypted_field(cast(type[Base], mapper.class_), prop.key)
        for mapper in Base.registry.mappers
        for prop in mapper.column_attrs
        if ENCRYPTED_FIELD in prop.columns[0].info
    ]
    return tuple(
        sorted(
            found,
            key=lambda entry: (
                position.get(entry.table, len(position)),
                list(entry.model.__table__.columns.keys()).index(entry.column.key),
            ),
        )
    )


# --- which ring -------------------------------------------------------------------------


def bind_keyring(db: Database, ring: KeyRing) -> None:
    """Give every session ``db`` opens from now on the key ring ``ring``."""
    db.sessions.configure(info={KEYRING_INFO: ring})


def session_keyring(session: Session) -> KeyRing:
    """Return the key ring of ``session`` (see :func:`bind_keyring`).

    Raises:
        ConfigError: the session's database has no key ring.
    """
    ring = session.info.get(KEYRING_INFO)
    if not isinstance(ring, KeyRing):
        raise ConfigError(_NO_RING)
    return ring


_NO_RING = (
    "key ring: expected ring= or an object of a session whose database has one "
    "(Instance binds its ring; elsewhere call bind_keyring(db, ring)), got none"
)


def _ring_for(obj: Base, ring: KeyRing | None) -> KeyRing:
    if ring is not None:
        return ring
    session = object_session(obj)
    if session is None:
        raise ConfigError(_NO_RING)
    return session_keyring(session)


# --- reading and writing ----------------------------------------------------------------


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
        ValueError: ``attr`` is not an encrypted field of ``obj``'s class.
        ConfigError: no ``ring`` given and ``obj``'s session has none.
    """
    entry = encrypted_field(type(obj), attr)
    if plaintext is None:
        setattr(obj, attr, None)
        return
    use = _ring_for(obj, ring)
    row_id = _ensure_row_id(obj, entry)
    setattr(obj, attr, use.encrypt(plaintext, aad=entry.aad(row_id)))


def read_secret(obj: Base, attr: str, *, ring: KeyRing | None = None) -> bytes | None:
    """Return the decrypted value of ``obj.attr`` (``None`` when unset).

    Raises:
        ValueError: ``attr`` is not an encrypted field of ``obj``'s class.
        ConfigError: no ``ring`` given and ``obj``'s session has none.
        DecryptionError: the stored value does not decrypt for this row.
    """
    entry = encrypted_field(type(obj), attr)
    blob = getattr(obj, attr)
    if blob is None:
        return None
    row_id = getattr(obj, entry.pk_attr)
    if row_id is None:
        raise DecryptionError(f"{entry.name}: the row has no id, so its value cannot be bound")
    return _ring_for(obj, ring).decrypt(bytes(blob), aad=entry.aad(str(row_id)))


def write_secret_json(obj: Base, attr: str, value: Any, *, ring: KeyRing | None = None) -> None:
    """Like :func:`write_secret` for a JSON-serialisable value (``None`` clears it)."""
    data = None if value is None else json.dumps(value, separators=(",", ":")).encode()
    write_secret(obj, attr, data, ring=ring)


def read_secret_json(obj: Base, attr: str, *, ring: KeyRing | None = None) -> Any:
    """Like :func:`read_secret`, decoding JSON (``None`` when unset)."""
    data = read_secret(obj, attr, ring=ring)
    return None if data is None else json.loads(data)


__all__ = [
    "KEYRING_INFO",
    "EncryptedField",
    "bind_keyring",
    "encrypted_field",
    "encrypted_fields",
    "read_secret",
    "read_secret_json",
    "session_keyring",
    "write_secret",
    "write_secret_json",
]
