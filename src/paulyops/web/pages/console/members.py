"""Members: the member list, invitations (create, list, revoke), role changes and removal."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    Membership,
    Role,
    User,
)
from paulyops.core.errors import (
    ConflictError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.services.auth import invitations, manage
from paulyops.web.auth import (
    DbSession,
    Principal,
    require,
)
from paulyops.web.deps import ClientAddress, InstanceDep
from paulyops.web.pages.console.common import (
    _back,
    _field_errors,
    _page,
)

router = APIRouter(include_in_schema=False)

# --- members --------------------------------------------------------------------------------


def _members_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    invited: dict[str, Any] | None = None,
) -> Response:
    scope = principal.scope(session)
    roles = sorted(scope.list(Role), key=lambda role: (-role.rank, role.name))
    by_id = {role.id: role for role in roles}
    rank = principal.grant.role_rank if principal.grant else 0
    members = []
    for membership in scope.list(Membership, order_by=Membership.created_at):
        user = session.get(User, membership.user_id)
        role = by_id.get(membership.role_id)
        if user is None or role is None:
            continue
        members.append(
            {
                "id": membership.id,
                "user": user,
                "role": role,
                "is_me": user.id == principal.user_id,
                "manageable": role.rank <= rank and user.id != principal.user_id,
                "pending": user.password_hash is None,
            }
        )
    pending = []
    if principal.can("members:invite"):
        pending = [
            {"row": row, "role": by_id.get(row.role_id), "revocable": _rank(by_id, row) <= rank}
            for row in invitations.list_pending(scope)
        ]
    return _page(
        request,
        session,
        principal,
        "console/members.html",
        active="members",
        status_code=status_code,
        members=members,
        roles=roles,
        assignable=[role for role in roles if role.rank <= rank],
        errors=errors or {},
        form=form or {},
        invited=invited,
        pending=pending,
    )


def _rank(roles: dict[str, Role], row: Any) -> int:
    role = roles.get(row.role_id)
    return role.rank if role is not None else 0


@router.get("/console/members")
def members(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("members:read")],
) -> Response:
    """List the members; invite, change roles and remove where allowed."""
    return _members_page(request, session, principal)


@router.post("/console/members/invite")
def invite(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:invite")],
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    role_id: Annotated[str, Form()] = "",
) -> Response:
    """Invite someone; the link is shown once, on this response, whoever the address is."""
    form = {"email": email[:320], "name": name[:200], "role_id": role_id[:40]}
    try:
        created = invitations.create_invitation(
            principal.scope(session),
            grant=principal.acting_grant(),
            email=email,
            name=name,
            role_id=role_id,
            public_url=instance.settings.effective_public_url,
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        return _members_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _members_page(
            request, session, principal, status_code=409, errors={"form": err.message}, form=form
        )
    return _members_page(
        request,
        session,
        principal,
        invited={"email": created.invitation.email, "link": created.link},
    )


@router.post("/console/members/invitations/{invitation_id}/revoke")
def revoke_invitation(
    invitation_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:invite")],
) -> Response:
    """Revoke a pending invitation: its link grants nothing from now on."""
    try:
        invitations.revoke_invitation(
            principal.scope(session),
            grant=principal.acting_grant(),
            invitation_id=invitation_id,
            actor=principal.actor(address),
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/members", "error", err.message)
    return _back(request, "/console/members", "success", "Invitation revoked.")


@router.post("/console/members/{membership_id}/role")
def change_role(
    membership_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:update")],
    role_id: Annotated[str, Form()] = "",
) -> Response:
    """Give a member another role (their sessions end)."""
    scope = principal.scope(session)
    scope.get(Membership, membership_id)
    if not role_id:
        return _back(request, "/console/members", "error", "Choose a role first.")
    try:
        manage.change_member_role(
            scope,
            grant=principal.acting_grant(),
            membership_id=membership_id,
            role_id=role_id,
            actor=principal.actor(address),
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/members", "error", err.message)
    return _back(request, "/console/members", "success", "Role changed.")


@router.post("/console/members/{membership_id}/remove")
def remove_member(
    membership_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:remove")],
) -> Response:
    """Remove a member (their sessions end)."""
    try:
        manage.remove_member(
            principal.scope(session),
            grant=principal.acting_grant(),
            membership_id=membership_id,
            actor=principal.actor(address),
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/members", "error", err.message)
    return _back(request, "/console/members", "success", "Member removed.")
