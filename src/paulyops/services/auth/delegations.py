"""Delegations (enterprise model): lend some of one's own permissions to a member for a time.

:class:`Delegate` holds the input's rules, the expiry bounds among them, so the JSON API
and the console refuse the same expiries with the same message; :func:`delegate` and
:func:`revoke_delegation` check who may do it (through :mod:`.rbac`) and write their
audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, Field, field_validator
from sqlalchemy import ColumnElement

from paulyops.core.db.models import Delegation, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import directory, rbac
from paulyops.services.auth.expiry import read_expiry
from paulyops.services.auth.permissions import MAX_DELEGATION_DAYS, PermissionNames
from paulyops.services.commands import Command
from paulyops.services.onboarding.errors import custom_error


class Delegate(Command):
    """A time-boxed delegation of some of the giver's own permissions to another member."""

    to_user_id: str = Field(
        min_length=1,
        max_length=40,
        title="Member",
        description="The member who receives the permissions.",
    )
    permissions: Annotated[PermissionNames, Field(min_length=1)]
    expires_at: AwareDatetime = Field(
        title="Last day",
        description=f"When it ends: in the future, at most {MAX_DELEGATION_DAYS} days from "
        "now. A day alone (2026-05-01) means the end of that day (UTC), and at most the "
        "longest delegation.",
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _day_is_its_end(cls, value: object) -> object:
        found = read_expiry(value)
        if isinstance(found, datetime) and found is not value:
            # A last day past the limit ends the delegation at the limit (a date picker
            # cannot say "30 days from now, to the second"); an instant is taken as sent.
            return min(found, utcnow() + timedelta(days=MAX_DELEGATION_DAYS))
        return found

    @field_validator("expires_at")
    @classmethod
    def _within_bounds(cls, value: datetime) -> datetime:
        now = utcnow()
        if not now < value <= now + timedelta(days=MAX_DELEGATION_DAYS):
            raise custom_error(
                "expiry_out_of_bounds",
                f"expected a time within the next {MAX_DELEGATION_DAYS} days, "
                f"got {value.isoformat()}",
            )
        return value


@dataclass(frozen=True, slots=True)
class DelegationView:
    """A delegation, with the names of its giver and recipient."""

    id: str
    from_user_id: str
    to_user_id: str
    from_name: str
    to_name: str
    permissions: list[str]
    expires_at: datetime


def _view(row: Delegation, names: dict[str, str]) -> DelegationView:
    return DelegationView(
        id=row.id,
        from_user_id=row.from_user_id,
        to_user_id=row.to_user_id,
        from_name=names.get(row.from_user_id, row.from_user_id),
        to_name=names.get(row.to_user_id, row.to_user_id),
        permissions=list(row.permissions),
        expires_at=row.expires_at,
    )


# The names of the organization's members by user id: one query, in the directory.
member_names = directory.member_names


def list_delegations(scope: OrgScope, *, include_expired: bool = False) -> list[DelegationView]:
    """Return the delegations not revoked (and, by default, not expired), ending soonest first.

    Args:
        include_expired: also those whose time is up (the JSON API lists them until revoked).
    """
    conditions: list[ColumnElement[bool]] = [Delegation.revoked_at.is_(None)]
    if not include_expired:
        conditions.append(Delegation.expires_at > utcnow())
    names = member_names(scope)
    return [
        _view(row, names)
        for row in scope.list(
            Delegation,
            *conditions,
            order_by=None if include_expired else Delegation.expires_at,
        )
    ]


def delegate(
    scope: OrgScope, *, grant: rbac.Grant, command: Delegate, actor: Actor
) -> DelegationView:
    """Delegate some of one's own permissions to another member until ``expires_at``.

    Raises:
        ConflictError: not the enterprise model.
        PermissionDeniedError: a permission the giver does not hold through their own role.
        SpecValidationError: a delegation to oneself.
        NotFoundError: the recipient is not a member.
    """
    row = rbac.delegate(
        scope,
        rbac.org_model(scope),
        grant,
        to_user_id=command.to_user_id,
        permissions=command.permissions,
        expires_at=command.expires_at,
    )
    actors.record(
        scope.session,
        actor,
        "delegation.created",
        organization_id=scope.organization_id,
        target_type="delegation",
        target_id=row.id,
        changes={
            "to_user_id": command.to_user_id,
            "permissions": row.permissions,
            "expires_at": command.expires_at.isoformat(),
        },
    )
    return _view(row, member_names(scope))


def revoke_delegation(
    scope: OrgScope, *, grant: rbac.Grant, delegation_id: str, actor: Actor
) -> None:
    """End a delegation now (its giver, its recipient, or someone ranked above the giver).

    Raises:
        PermissionDeniedError: the actor is neither and does not outrank the giver.
    """
    rbac.revoke_delegation(scope, delegation_id, actor=grant)
    actors.record(
        scope.session,
        actor,
        "delegation.revoked",
        organization_id=scope.organization_id,
        target_type="delegation",
        target_id=delegation_id,
    )


__all__ = [
    "Delegate",
    "DelegationView",
    "delegate",
    "list_delegations",
    "member_names",
    "revoke_delegation",
]
