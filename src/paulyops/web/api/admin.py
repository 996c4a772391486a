"""Organization administration over the JSON API: members, roles, delegations, tokens.

Each write route takes its use case's command as the body and calls that use case; the
rules live with the commands in :mod:`paulyops.services.auth`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import Field

from paulyops.services.auth import delegations, members, organizations, reauth, roles, tokens
from paulyops.web.api.auth import CamelModel, OkOut
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress, InstanceDep

router = APIRouter(prefix="/api", tags=["organization"])


# --- organization -----------------------------------------------------------------------


class OrganizationOut(organizations.OrganizationView):
    """The active organization."""


@router.get("/organization", response_model=OrganizationOut)
def get_organization(
    session: DbSession, principal: Annotated[Principal, require("org:read")]
) -> OrganizationOut:
    """Return the caller's active organization."""
    org = organizations.get_organization(principal.scope(session))
    return OrganizationOut.model_validate(org, from_attributes=True)


# --- members ----------------------------------------------------------------------------


class MemberOut(CamelModel):
    """A member and their role."""

    id: str
    user_id: str
    email: str
    name: str
    role_id: str
    role_name: str


@router.get("/members", response_model=list[MemberOut])
def list_members(
    session: DbSession, principal: Annotated[Principal, require("members:read")]
) -> list[MemberOut]:
    """List the organization's members."""
    return [
        MemberOut.model_validate(member, from_attributes=True)
        for member in members.list_members(principal.scope(session))
    ]


@router.patch("/members/{membership_id}", response_model=OkOut)
def change_member_role(
    membership_id: str,
    body: members.ChangeMemberRole,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:update")],
) -> OkOut:
    """Give a member another role (their sessions end)."""
    members.change_member_role(
        principal.scope(session),
        grant=principal.acting_grant(),
        membership_id=membership_id,
        command=body,
        actor=principal.actor(address),
    )
    return OkOut(message="role changed")


@router.delete("/members/{membership_id}", response_model=OkOut)
def remove_member(
    membership_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:remove")],
) -> OkOut:
    """Remove a member from the organization."""
    members.remove_member(
        principal.scope(session),
        grant=principal.acting_grant(),
        membership_id=membership_id,
        actor=principal.actor(address),
    )
    return OkOut(message="member removed")


# --- roles ------------------------------------------------------------------------------


class RoleOut(CamelModel):
    """A role with its own and effective permissions."""

    id: str
    name: str
    description: str
    builtin: bool
    parent_id: str | None
    permissions: list[str]
    effective_permissions: list[str]


def _role_out(role: roles.RoleView) -> RoleOut:
    return RoleOut(
        id=role.id,
        name=role.name,
        description=role.description,
        builtin=role.is_builtin,
        parent_id=role.parent_id,
        permissions=role.permissions,
        effective_permissions=role.effective_permissions,
    )


@router.get("/roles", response_model=list[RoleOut])
def list_roles(
    session: DbSession, principal: Annotated[Principal, require("roles:read")]
) -> list[RoleOut]:
    """List the organization's roles, highest rank first."""
    return [_role_out(role) for role in roles.list_roles(principal.scope(session))]


@router.post("/roles", response_model=RoleOut, status_code=status.HTTP_201_CREATED)
def create_role(
    body: roles.CreateRole,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> RoleOut:
    """Create a custom role (granular and enterprise models)."""
    role = roles.create_role(
        principal.scope(session),
        grant=principal.acting_grant(),
        command=body,
        actor=principal.actor(address),
    )
    return _role_out(role)


@router.patch("/roles/{role_id}", response_model=RoleOut)
def update_role(
    role_id: str,
    body: roles.UpdateRolePermissions,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> RoleOut:
    """Replace a custom role's permissions."""
    role = roles.update_role(
        principal.scope(session),
        grant=principal.acting_grant(),
        role_id=role_id,
        command=body,
        actor=principal.actor(address),
    )
    return _role_out(role)


@router.delete("/roles/{role_id}", response_model=OkOut)
def delete_role(
    role_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> OkOut:
    """Delete a custom role nobody holds."""
    roles.delete_role(
        principal.scope(session),
        grant=principal.acting_grant(),
        role_id=role_id,
        actor=principal.actor(address),
    )
    return OkOut(message="role deleted")


# --- delegations (enterprise) -----------------------------------------------------------


class DelegationOut(CamelModel):
    """A delegation."""

    id: str
    from_user_id: str
    to_user_id: str
    permissions: list[str]
    expires_at: datetime


@router.post("/delegations", response_model=DelegationOut, status_code=status.HTTP_201_CREATED)
def create_delegation(
    body: delegations.Delegate,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
) -> DelegationOut:
    """Delegate some of your own permissions to another member for a time."""
    delegation = delegations.delegate(
        principal.scope(session),
        grant=principal.acting_grant(),
        command=body,
        actor=principal.actor(address),
    )
    return DelegationOut.model_validate(delegation, from_attributes=True)


@router.get("/delegations", response_model=list[DelegationOut])
def list_delegations(
    session: DbSession, principal: Annotated[Principal, require("roles:read")]
) -> list[DelegationOut]:
    """List delegations that are still active."""
    rows = delegations.list_delegations(principal.scope(session), include_expired=True)
    return [DelegationOut.model_validate(row, from_attributes=True) for row in rows]


@router.delete("/delegations/{delegation_id}", response_model=OkOut)
def revoke_delegation(
    delegation_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
) -> OkOut:
    """End a delegation now (its giver, its recipient, or someone ranked above the giver)."""
    delegations.revoke_delegation(
        principal.scope(session),
        grant=principal.acting_grant(),
        delegation_id=delegation_id,
        actor=principal.actor(address),
    )
    return OkOut(message="delegation revoked")


# --- API tokens -------------------------------------------------------------------------


class TokenIn(tokens.CreateToken):
    """A new API token, and the password that confirms who asks for it."""

    password: str | None = Field(
        None,
        max_length=1024,
        description="your password; needed unless this browser session entered it in the "
        "last 10 minutes",
    )


class TokenOut(CamelModel):
    """An API token (never its secret)."""

    id: str
    name: str
    prefix: str
    permissions: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class NewTokenOut(TokenOut):
    """A created token, with its secret shown this once."""

    token: str = Field(description="shown once; store it now", repr=False)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(
    session: DbSession, principal: Annotated[Principal, require("tokens:manage")]
) -> list[TokenOut]:
    """List the organization's API tokens."""
    rows = tokens.list_tokens(principal.scope(session))
    return [TokenOut.model_validate(row, from_attributes=True) for row in rows]


@router.post("/tokens", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED)
def create_token(
    body: TokenIn,
    response: Response,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("tokens:manage")],
) -> NewTokenOut:
    """Create an API token with at most your own role's permissions (needs your password).

    The answer holds the secret this one time and is never cached.
    """
    assert principal.user is not None  # require() admits only authenticated callers
    reauth.require_recent_password(
        session,
        hashing=instance.hashing,
        limiter=instance.limiter,
        user=principal.user,
        password=body.password,
        web_session=principal.web_session,
        address=address,
    )
    response.headers["Cache-Control"] = "no-store"
    issued = tokens.create_token(
        principal.scope(session),
        grant=principal.acting_grant(),
        command=body,
        actor=principal.actor(address),
        platform_permissions=principal.permissions,
    )
    base = TokenOut.model_validate(tokens.token_view(issued.row), from_attributes=True)
    return NewTokenOut(**base.model_dump(), token=issued.secret)


@router.delete("/tokens/{token_id}", response_model=OkOut)
def revoke_token(
    token_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("tokens:manage")],
) -> OkOut:
    """Revoke an API token (your own, or one of a member ranked below you)."""
    tokens.revoke_token(
        principal.scope(session),
        grant=principal.acting_grant(),
        token_id=token_id,
        actor=principal.actor(address),
    )
    return OkOut(message="token revoked")
