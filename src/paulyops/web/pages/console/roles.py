"""Roles and delegations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from paulyops.core.db import Session
from paulyops.core.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.services.auth import delegations, rbac, roles
from paulyops.services.auth.permissions import (
    MAX_DELEGATION_DAYS,
    PERMISSIONS,
    allows_custom_roles,
    is_hierarchical,
)
from paulyops.services.commands import parse
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress
from paulyops.web.pages.console.common import _back, _field_errors, _page

router = APIRouter(include_in_schema=False)

# The forms' bounds and hints come from the commands (their JSON Schema).
ROLE_FIELDS = roles.CreateRole.model_json_schema(by_alias=False)["properties"]
# Form input names of the delegation form, by the command's field.
DELEGATION_INPUTS = {"expires_at": "expires", "permissions": "d_permissions"}


def _roles_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    scope = principal.scope(session)
    model = rbac.org_model(scope)
    rows = roles.list_roles(scope)
    names = delegations.member_names(scope)
    lendable = principal.acting_grant().grantable if principal.grant else frozenset()
    grantable = [name for name in PERMISSIONS if name != "org:create"]
    return _page(
        request,
        session,
        principal,
        "console/roles.html",
        active="roles",
        status_code=status_code,
        model=model.value,
        custom_roles=allows_custom_roles(model),
        hierarchical=is_hierarchical(model),
        rows=rows,
        roles=rows,
        permissions=PERMISSIONS,
        grantable=grantable,
        permission_options=[(name, PERMISSIONS[name]) for name in grantable],
        delegable=[name for name in PERMISSIONS if name in lendable],
        own_role_id=principal.grant.role_id if principal.grant else "",
        delegations=delegations.list_delegations(scope),
        recipients=sorted(
            ((uid, name) for uid, name in names.items() if uid != principal.user_id),
            key=lambda item: item[1],
        ),
        max_days=MAX_DELEGATION_DAYS,
        role_fields=ROLE_FIELDS,
        errors=errors or {},
        form=form or {},
    )


@router.get("/console/roles")
def roles_list(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("roles:read")],
) -> Response:
    """Roles with their effective permissions; custom roles and delegations where allowed."""
    return _roles_page(request, session, principal)


@router.post("/console/roles")
def create_role(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
    parent_id: Annotated[str, Form()] = "",
) -> Response:
    """Create a custom role (granular and enterprise models)."""
    chosen = list(permissions or [])
    form = {"name": name[:80], "description": description[:400], "permissions": chosen}
    form["parent_id"] = parent_id[:40]
    data = {"name": name, "description": description, "permissions": chosen}
    try:
        role = roles.create_role(
            principal.scope(session),
            grant=principal.acting_grant(),
            command=parse(roles.CreateRole, {**data, "parent_id": parent_id}),
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        return _roles_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _roles_page(
            request, session, principal, status_code=409, errors={"form": err.message}, form=form
        )
    return _back(request, "/console/roles", "success", f"Role {role.name!r} created.")


@router.post("/console/roles/{role_id}/permissions")
def update_role(
    role_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
    permissions: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Replace a custom role's permissions (built-in roles cannot be edited)."""
    chosen = list(permissions or [])
    try:
        role = roles.update_role(
            principal.scope(session),
            grant=principal.acting_grant(),
            role_id=role_id,
            command=parse(roles.UpdateRolePermissions, {"permissions": chosen}),
            actor=principal.actor(address),
        )
    except (SpecValidationError, PermissionDeniedError) as err:
        invalid = isinstance(err, SpecValidationError)
        message = (
            "; ".join(_field_errors(err).values())
            if isinstance(err, SpecValidationError)
            else err.message
        )
        return _roles_page(
            request,
            session,
            principal,
            status_code=422 if invalid else 403,
            errors={f"perm_{role_id}": message},
            form={"edit_role_id": role_id, "edit_permissions": chosen},
        )
    except ConflictError as err:
        return _back(request, "/console/roles", "error", err.message)
    return _back(request, "/console/roles", "success", f"Permissions of {role.name!r} saved.")


@router.post("/console/roles/{role_id}/delete")
def delete_role(
    role_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> Response:
    """Delete a custom role nobody holds."""
    try:
        roles.delete_role(
            principal.scope(session),
            grant=principal.acting_grant(),
            role_id=role_id,
            actor=principal.actor(address),
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/roles", "error", err.message)
    return _back(request, "/console/roles", "success", "Role deleted.")


@router.post("/console/delegations")
def create_delegation(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
    to_user_id: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
    expires: Annotated[str, Form()] = "",
) -> Response:
    """Delegate some of your own permissions to another member until a day (enterprise).

    The form asks for a last day; the command takes it as the end of that day (UTC),
    capped at the longest delegation.
    """
    chosen = list(permissions or [])
    form: dict[str, Any] = {"to_user_id": to_user_id[:40], "d_permissions": chosen}
    form["expires"] = expires[:10]
    data = {"to_user_id": to_user_id, "permissions": chosen, "expires_at": expires}
    try:
        delegations.delegate(
            principal.scope(session),
            grant=principal.acting_grant(),
            command=parse(delegations.Delegate, data),
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        errors = {
            DELEGATION_INPUTS.get(key, key): message for key, message in _field_errors(err).items()
        }
    except (ConflictError, PermissionDeniedError, NotFoundError) as err:
        errors = {"delegation": err.message}
    else:
        return _back(request, "/console/roles", "success", "Delegation created.")
    return _roles_page(request, session, principal, status_code=422, errors=errors, form=form)


@router.post("/console/delegations/{delegation_id}/revoke")
def revoke_delegation(
    delegation_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
) -> Response:
    """End a delegation now (its giver, its recipient, or someone ranked above the giver)."""
    try:
        delegations.revoke_delegation(
            principal.scope(session),
            grant=principal.acting_grant(),
            delegation_id=delegation_id,
            actor=principal.actor(address),
        )
    except PermissionDeniedError as err:
        return _back(request, "/console/roles", "error", err.message)
    return _back(request, "/console/roles", "success", "Delegation ended.")
