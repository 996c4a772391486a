"""Names for display: who the members and audit actors of an organization are.

Pages show people by name, never by id; these reads return plain values (no rows), so an
interface renders them without touching the database layer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import ApiToken, Membership, User
from paulyops.core.db.scoped import OrgScope
from paulyops.services.auth import rbac


@dataclass(frozen=True, slots=True)
class OrganizationChoice:
    """An organization a user may switch to, as the console's switcher lists it."""

    id: str
    name: str


def organization_choices(session: Session, user_id: str) -> list[OrganizationChoice]:
    """Return the organizations ``user_id`` belongs to, for the organization switcher."""
    return [
        OrganizationChoice(org.id, org.name) for org, _role in rbac.memberships_of(session, user_id)
    ]


# The organization's RBAC model (``simple`` when the row is gone): one reading, in rbac.
rbac_model = rbac.org_model


def member_names(scope: OrgScope) -> dict[str, str]:
    """Return the names of the organization's members by user id (for actor columns)."""
    rows = scope.session.execute(
        select(User.id, User.name)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == scope.organization_id)
    ).all()
    return {user_id: name for user_id, name in rows}


def user_names(scope: OrgScope, user_ids: Collection[str]) -> dict[str, str]:
    """Return the names of ``user_ids`` (members or not: audit rows outlive memberships)."""
    if not user_ids:
        return {}
    rows = scope.session.execute(select(User.id, User.name).where(User.id.in_(user_ids)))
    return {user_id: name for user_id, name in rows}


def token_names(scope: OrgScope, token_ids: Collection[str]) -> dict[str, str]:
    """Return the names of the organization's API tokens among ``token_ids``."""
    if not token_ids:
        return {}
    rows = scope.session.execute(
        select(ApiToken.id, ApiToken.name).where(
            ApiToken.id.in_(token_ids), ApiToken.organization_id == scope.organization_id
        )
    )
    return {token_id: name for token_id, name in rows}


__all__ = [
    "OrganizationChoice",
    "member_names",
    "organization_choices",
    "rbac_model",
    "token_names",
    "user_names",
]
