"""Organization-scoped data access: the only way services reach tenant rows.

Every query made through an :class:`OrgScope` filters on its organization, and every
object added through it is stamped with that organization, so a cross-tenant read or
write cannot be written by mistake: a row of another organization is simply not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from paulyops.core.db.models import OrgScoped
from paulyops.core.errors import NotFoundError, PermissionDeniedError

M = TypeVar("M", bound=OrgScoped)


class OrgScope:
    """A session view limited to one organization.

    Args:
        session: an open SQLAlchemy session.
        organization_id: the organization every query is limited to (required).
    """

    def __init__(self, session: Session, organization_id: str) -> None:
        if not organization_id:
            raise ValueError("OrgScope needs an organization id")
        self.session = session
        self.organization_id = organization_id

    def select(self, model: type[M], *criteria: Any) -> Select[M]:
        """Return ``SELECT model WHERE organization_id = <org> AND criteria``."""
        _require_scoped(model)
        return select(model).where(model.organization_id == self.organization_id, *criteria)

    def list(self, model: type[M], *criteria: Any, order_by: Any = None) -> Sequence[M]:
        """Return every row of ``model`` in this organization matching ``criteria``."""
        stmt = self.select(model, *criteria)
        if order_by is not None:
            stmt = stmt.order_by(order_by)
        return self.session.scalars(stmt).all()

    def first(self, model: type[M], *criteria: Any) -> M | None:
        """Return the first matching row in this organization, or ``None``."""
        return self.session.scalars(self.select(model, *criteria).limit(1)).first()

    def get(self, model: type[M], row_id: str) -> M:
        """Return the row with ``row_id`` in this organization.

        Raises:
            NotFoundError: no such row here (rows of other organizations are not found).
        """
        row = self.first(model, model.id == row_id)  # type: ignore[attr-defined]  # every scoped model has an id
        if row is None:
            raise NotFoundError(f"{model.__name__} {row_id!r} not found")
        return row

    def count(self, model: type[M], *criteria: Any) -> int:
        """Count matching rows in this organization."""
        stmt = (
            select(func.count())
            .select_from(model)
            .where(model.organization_id == self.organization_id, *criteria)
        )
        return int(self.session.scalar(stmt) or 0)

    def add(self, obj: M) -> M:
        """Stamp ``obj`` with this organization and add it to the session.

        Raises:
            PermissionDeniedError: ``obj`` already names another organization.
        """
        current = getattr(obj, "organization_id", None)
        if current is not None and current != self.organization_id:
            raise PermissionDeniedError("refusing to add a row of another organization")
        obj.organization_id = self.organization_id
        self.session.add(obj)
        return obj

    def delete(self, obj: M) -> None:
        """Delete ``obj``, which must belong to this organization.

        Raises:
            PermissionDeniedError: ``obj`` belongs to another organization.
        """
        if obj.organization_id != self.organization_id:
            raise PermissionDeniedError("refusing to delete a row of another organization")
        self.session.delete(obj)


def _require_scoped(model: type[Any]) -> None:
    if not issubclass(model, OrgScoped):
        raise TypeError(f"{model.__name__} is not organization-scoped")


__all__ = ["OrgScope"]
