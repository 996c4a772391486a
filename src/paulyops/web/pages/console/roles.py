"""Roles and delegations."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    Delegation,
    Membership,
    Role,
    utcnow,
)
from paulyops.core.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.services.auth import manage, rbac
from paulyops.services.auth.permissions import (
    MAX_DELEGATION_DAYS,
    PERMISSIONS,
    allows_custom_roles,
    is_hierarchical,
)
from paulyops.web.auth import (
    DbSession,
    Principal,
    require,
)
from paulyops.web.deps import ClientAddress
from paulyops.web.pages.console.common import (
    _back,
    _end_of_day,
    _field_errors,
    _member_names,
    _model,
    _page,
    _parse_date,
)

router = APIRouter(include_in_schema=False)

# --- roles and delegations ------------------------------------------------------------------


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
    model = _model(session, scope)
    roles = sorted(scope.list(Role), key=lambda role: (-role.rank, role.name))
    by_id = {role.id: role for role in roles}
    held = Counter(m.role_id for m in scope.list(Membership))
    rows = [
        {
            "role": role,
            "parent": by_id.get(role.parent_id) if role.parent_id else None,
            "effective": sorted(rbac.role_permissions(scope, role, model)),
            "members": held[role.id],
        }
        for role in roles
    ]
    names = _member_names(scope)
    now = utcnow()
    delegations = [
        {
            "row": row,
            "from": names.get(row.from_user_id, row.from_user_id),
            "to": names.get(row.to_user_id, row.to_user_id),
        }
        for row in scope.list(
            Delegation,
            Delegation.revoked_at.is_(None),
            Delegation.expires_at > now,
            order_by=Delegation.expires_at,
        )
    ]
    lendable = principal.acting_grant().grantable if principal.grant else frozenset()
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
        roles=roles,
        permissions=PERMISSIONS,
        grantable=[name for name in PERMISSIONS if name != "org:create"],
        permission_options=[
            (name, PERMISSIONS[name]) for name in PERMISSIONS if name != "org:create"
        ],
        delegable=[name for name in PERMISSIONS if name in lendable],
        own_role_id=principal.grant.role_id if principal.grant else "",
        delegations=delegations,
        recipients=sorted(
            ((uid, name) for uid, name in names.items() if uid != principal.user_id),
            key=lambda item: item[1],
        ),
        max_days=MAX_DELEGATION_DAYS,
        errors=errors or {},
        form=form or {},
    )


@router.get("/console/roles")
def roles(
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
    if len(description) > 400:
        return _roles_page(
            request,
            session,
            principal,
            status_code=422,
            errors={"description": "expected at most 400 characters"},
            form=form,
        )
    try:
        role = manage.create_role(
            principal.scope(session),
            grant=principal.acting_grant(),
            name=name,
            permissions=chosen,
            description=description,
            parent_id=parent_id or None,
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
        role = manage.update_role(
            principal.scope(session),
            grant=principal.acting_grant(),
            role_id=role_id,
            permissions=chosen,
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
        manage.delete_role(
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
    """Delegate some of your own permissions to another member until a date (enterprise)."""
    chosen = list(permissions or [])
    form: dict[str, Any] = {"to_user_id": to_user_id[:40], "d_permissions": chosen}
    form["expires"] = expires[:10]
    errors: dict[str, str] = {}
    day = _parse_date(expires, "expires", errors)
    if day is None and "expires" not in errors:
        errors["expires"] = "choose the last day of the delegation"
    if not to_user_id:
        errors["to_user_id"] = "choose the member who receives the permissions"
    if not chosen:
        errors["d_permissions"] = "choose at least one permission"
    if not errors and day is not None:
        now = utcnow()
        expires_at = min(_end_of_day(day), now + timedelta(days=MAX_DELEGATION_DAYS))
        try:
            manage.delegate(
                principal.scope(session),
                grant=principal.acting_grant(),
                to_user_id=to_user_id,
                permissions=chosen,
                expires_at=expires_at,
                actor=principal.actor(address),
            )
        except SpecValidationError as err:
            errors = {
                {"expires_at": "expires", "permissions": "d_permissions"}.get(key, key): message
                for key, message in _field_errors(err).items()
            }
        except (ConflictError, PermissionDeniedError, NotFoundError) as err:
            errors = {"delegation": err.message}
    if errors:
        return _roles_page(request, session, principal, status_code=422, errors=errors, form=form)
    return _back(request, "/console/roles", "success", "Delegation created.")


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
        manage.revoke_delegation(
            principal.scope(session),
            grant=principal.acting_grant(),
            delegation_id=delegation_id,
            actor=principal.actor(address),
        )
    except PermissionDeniedError as err:
        return _back(request, "/console/roles", "error", err.message)
    return _back(request, "/console/roles", "success", "Delegation ended.")
