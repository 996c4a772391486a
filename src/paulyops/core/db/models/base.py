"""Declarative base, column types and id generation shared by every model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, LargeBinary, MetaData, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column
from ulid import ULID

# Stable constraint names, so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id(prefix: str) -> str:
    """Return a sortable, prefixed id such as ``org_01J9Z...``."""
    return f"{prefix}_{ULID()}"


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no time zones; PostgreSQL's ``timestamptz`` does. Normalising here keeps
    comparisons and audit hashes identical on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JsonDict = dict[str, Any]


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        JsonDict: JSON(),
        list[str]: JSON(),
    }


class TimestampMixin:
    """``created_at`` and ``updated_at`` columns, set by the application in UTC."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def id_column(prefix: str) -> Mapped[str]:
    """Return a primary-key column whose default is a new ``<prefix>_<ulid>`` id."""
    return mapped_column(String(40), primary_key=True, default=lambda: new_id(prefix))


# Column ``info`` key that marks key-ring ciphertext; its value is the field name bound
# into the associated data (``None``: the attribute's name).
ENCRYPTED_FIELD = "paulyops.encrypted_field"


def encrypted_column(*, field: str | None = None) -> MappedColumn[bytes | None]:
    """Return a nullable ``LargeBinary`` column holding key-ring ciphertext bound to its row.

    The encrypted-field registry (:mod:`paulyops.core.security.fields`) finds every such
    column in the mapped models, so ``keys reencrypt`` and ``keys status`` cover a new
    encrypted column without being told. Read and write it only through
    :func:`~paulyops.core.security.fields.read_secret` and
    :func:`~paulyops.core.security.fields.write_secret`; assigning to it stores raw bytes.

    Args:
        field: the name bound into the associated data (default: the attribute's name).
            Never change it once values are stored: they would no longer decrypt.
    """
    return mapped_column(LargeBinary, info={ENCRYPTED_FIELD: field})


__all__ = [
    "ENCRYPTED_FIELD",
    "Base",
    "JsonDict",
    "TimestampMixin",
    "UTCDateTime",
    "encrypted_column",
    "id_column",
    "new_id",
    "utcnow",
]
