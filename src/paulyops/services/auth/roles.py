"""Roles: list them, create, change and delete custom roles (granular and enterprise).

Each change is one use case taking the scope, a command and the actor; it checks the
organization's rules (through :mod:`.rbac`), changes the role and writes its audit row.
The command holds the input's own rules (name length, the permission vocabulary), so
every front door enforces and shows the same ones.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from paulyops.core.db.models import Membership, Role
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import rbac
from paulyops.services.auth.permissions import PermissionNames
from paulyops.services.commands import Command

ROLE_NAME_MAX = 80
ROLE_DESCRIPTION_MAX = 400


class CreateRole(Command):
    """A custom role: its name, what it is for, its permissions and (enterprise) its place."""

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=ROLE_NAME_MAX),
        Field(title="Role name", description="Unique in the organization."),
    ]
    description: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=ROLE_DESCRIPTION_MAX),
        Field(title="Description"),
    ] = ""
    permissions: PermissionNames
    parent_id: str | None = Field(
        None,
        max_length=40,
        title="Place below",
        description="The role directly above the new one (enterprise model only).",
    )

    @field_validator("parent_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # A form's "nothing selected" is an empty string.
        return None if value == "" else value


class UpdateRolePermissions(Command):
    """The new permissions of a custom role."""

    permissions: PermissionNames


@dataclass(frozen=True, slots=True)
class RoleView:
    """A role with its own and effective permissions and how many members hold it."""

    id: str
    name: str
    description: str
    is_builtin: bool
    rank: int
    parent_id: str | None
    parent_name: str | None
    permissions: list[str]
    effective_permissions: list[str]
    members: int


def list_roles(scope: OrgScope) -> list[RoleView]:
    """Return the organization's roles, highest rank first."""
    model = rbac.org_model(scope)
    roles = sorted(scope.list(Role), key=lambda role: (-role.rank, role.name))
    names = {role.id: role.name for role in roles}
    held = Counter(m.role_id for m in scope.list(Membership))
    return [
        RoleView(
            id=role.id,
            name=role.name,
            description=role.description,
            is_builtin=role.is_builtin,
            rank=role.rank,
            parent_id=role.parent_id,
            parent_name=names.get(role.parent_id) if role.parent_id else None,
            permissions=sorted(role.permissions),
            effective_permissions=sorted(rbac.role_permissions(scope, role, model)),
            members=held[role.id],
        )
        for role in roles
    ]


def _view_of(scope: OrgScope, role_id: str) -> RoleView:
    return next(view for view in list_roles(scope) if view.id == role_id)


def find_role(scope: OrgScope, name: str) -> RoleView:
    """Return the role called ``name`` (any case), as an operator names it.

    Raises:
        SpecValidationError: no role has that name; the error lists the roles.
    """
    views = list_roles(scope)
    for view in views:
        if view.name.lower() == name.strip().lower():
            return view
    names = [view.name for view in views]
    raise SpecValidationError(
        "unknown role",
        [FieldError("role", f"expected one of {', '.join(names)}, got {name!r}", allowed=names)],
    )


def create_role(
    scope: OrgScope, *, grant: rbac.Grant, command: CreateRole, actor: Actor
) -> RoleView:
    """Create a custom role (granular and enterprise models).

    Raises:
        ConflictError: the simple model, or the name is taken.
        PermissionDeniedError: a permission the actor lacks, or a platform permission.
        SpecValidationError: a parent outside the enterprise model, or beyond its parent.
    """
    role = rbac.create_custom_role(
        scope,
        rbac.org_model(scope),
        actor=grant,
        name=command.name,
        permissions=command.permissions,
        description=command.description,
        parent_id=command.parent_id,
    )
    actors.record(
        scope.session,
        actor,
        "role.created",
        organization_id=scope.organization_id,
        target_type="role",
        target_id=role.id,
        changes={
            "name": role.name,
            "permissions": role.permissions,
            "parent_id": command.parent_id,
        },
    )
    return _view_of(scope, role.id)


def update_role(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    role_id: str,
    command: UpdateRolePermissions,
    actor: Actor,
) -> RoleView:
    """Replace a custom role's permissions.

    Raises:
        ConflictError: a built-in role.
        PermissionDeniedError: the actor's own role, one ranked above them, or a permission
            they do not hold through their own role.
    """
    before = list(scope.get(Role, role_id).permissions)
    role = rbac.update_role_permissions(
        scope, rbac.org_model(scope), role_id, command.permissions, actor=grant
    )
    actors.record(
        scope.session,
        actor,
        "role.updated",
        organization_id=scope.organization_id,
        target_type="role",
        target_id=role.id,
        changes={"permissions": {"from": before, "to": role.permissions}},
    )
    return _view_of(scope, role.id)


def delete_role(scope: OrgScope, *, grant: rbac.Grant | None, role_id: str, actor: Actor) -> None:
    """Delete a custom role nobody holds and that does not rank above ``grant``'s.

    Args:
        grant: the member deleting it; ``None`` for the local operator (CLI).

    Raises:
        ConflictError: a built-in role, or one still assigned.
        PermissionDeniedError: the role ranks above the actor's own.
    """
    rbac.delete_role(scope, role_id, actor=grant)
    actors.record(
        scope.session,
        actor,
        "role.deleted",
        organization_id=scope.organization_id,
        target_type="role",
        target_id=role_id,
    )


__all__ = [
    "ROLE_DESCRIPTION_MAX",
    "ROLE_NAME_MAX",
    "CreateRole",
    "RoleView",
    "UpdateRolePermissions",
    "create_role",
    "delete_role",
    "find_role",
    "list_roles",
    "update_role",
]
