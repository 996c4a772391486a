"""Find an organization by what a person types: its id (``org_...``) or its slug."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Organization
from paulyops.core.errors import NotFoundError


def find_organization_id(session: Session, ref: str) -> str | None:
    """Return the id of the organization whose id or slug is ``ref``, or ``None``."""
    clean = ref.strip()
    if session.get(Organization, clean) is not None:
        return clean
    return session.scalar(select(Organization.id).where(Organization.slug == clean.lower()))


def organization_id(db: Database, ref: str, *, option: str = "--org") -> str:
    """Return the id of the organization with id or slug ``ref``.

    Args:
        db: the database (read in its own short transaction).
        ref: the id or slug as typed.
        option: how the caller names the input, for the message.

    Raises:
        NotFoundError: no organization has that id or slug.
    """
    with db.session() as session:
        found = find_organization_id(session, ref)
    if found is None:
        raise NotFoundError(f"{option}: expected an organization id (org_...) or slug, got {ref!r}")
    return found


def organization_slug(session: Session, organization_id: str) -> str | None:
    """Return the organization's slug, or ``None`` when it does not exist (any more)."""
    org = session.get(Organization, organization_id)
    return org.slug if org else None


__all__ = ["find_organization_id", "organization_id", "organization_slug"]
