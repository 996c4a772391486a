"""Members: the member list, invitations (create, list, revoke), role changes and removal."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from paulyops.core.db import Session
from paulyops.core.errors import ConflictError, PermissionDeniedError, SpecValidationError
from paulyops.services.auth import invitations, members, roles
from paulyops.services.commands import parse
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress, InstanceDep
from paulyops.web.pages.console.common import _back, _field_errors, _page

router = APIRouter(include_in_schema=False)

# The invite form's bounds and hints come from the command (its JSON Schema).
INVITE_FIELDS = invitations.Invite.model_json_schema(by_alias=False)["properties"]


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
    all_roles = roles.list_roles(scope)
    rank = principal.grant.role_rank if principal.grant else 0
    rows = [
        {
            "member": member,
            "is_me": member.user_id == principal.user_id,
            "manageable": member.role_rank <= rank and member.user_id != principal.user_id,
            "pending": not member.has_password,
        }
        for member in members.list_members(scope)
    ]
    pending = []
    if principal.can("members:invite"):
        pending = [
            {"row": row, "revocable": row.role_rank <= rank}
            for row in invitations.list_pending(scope)
        ]
    return _page(
        request,
        session,
        principal,
        "console/members.html",
        active="members",
        status_code=status_code,
        members=rows,
        roles=all_roles,
        assignable=[role for role in all_roles if role.rank <= rank],
        errors=errors or {},
        form=form or {},
        invited=invited,
        pending=pending,
        invite_fields=INVITE_FIELDS,
    )


@router.get("/console/members")
def members_list(
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
            command=parse(invitations.Invite, {"email": email, "name": name, "role_id": role_id}),
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
    # Another organization's member is not found (404), whatever the form holds.
    members.get_member(scope, membership_id)
    try:
        members.change_member_role(
            scope,
            grant=principal.acting_grant(),
            membership_id=membership_id,
            command=parse(members.ChangeMemberRole, {"role_id": role_id}),
            actor=principal.actor(address),
        )
    except SpecValidationError:
        return _back(request, "/console/members", "error", "Choose a role first.")
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
        members.remove_member(
            principal.scope(session),
            grant=principal.acting_grant(),
            membership_id=membership_id,
            actor=principal.actor(address),
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/members", "error", err.message)
    return _back(request, "/console/members", "success", "Member removed.")
