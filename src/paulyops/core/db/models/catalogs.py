"""Catalog sources (TUF repositories the instance trusts) and their verified metadata.

Both tables are instance-level: a catalog is trusted by the platform, not by one
organization. The metadata lives here, not in a per-machine cache, so every server and
worker refreshes from the same last-seen state (DESIGN.md, "Catalogs (TUF)").
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import Base, JsonDict, TimestampMixin, id_column, utcnow


class CatalogSource(TimestampMixin, Base):
    """A catalog the instance reads packages from: a directory or an http(s) URL.

    ``root_sha256`` is the fingerprint of the root pinned by ``sources add`` (or the last
    ``sources repin``); the root currently trusted, possibly rotated since, is the
    ``root`` row of :class:`CatalogMetadata`. ``accepted_expired`` holds what an operator
    accepted with ``sources repin --accept-expired``: per role, the exact version and
    sha256 of expired metadata that refreshes may keep using (empty: nothing expired is
    accepted).
    """

    __tablename__ = "catalog_sources"

    id: Mapped[str] = id_column("cat")
    name: Mapped[str] = mapped_column(String(64), unique=True)
    location: Mapped[str] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(10))
    root_sha256: Mapped[str] = mapped_column(String(64))
    versions: Mapped[JsonDict] = mapped_column(default=dict)
    accepted_expired: Mapped[JsonDict] = mapped_column(default=dict)
    last_refreshed_at: Mapped[datetime | None] = mapped_column()


class CatalogMetadata(Base):
    """The last verified copy of one TUF role's metadata of one catalog."""

    __tablename__ = "catalog_metadata"

    source_id: Mapped[str] = mapped_column(
        ForeignKey("catalog_sources.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column()
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


__all__ = ["CatalogMetadata", "CatalogSource"]
