"""Organization administration over the JSON API: members, roles, delegations, tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import AwareDatetime, Field

from paulyops.core.db.models import Delegation, Membership, Organization, Role, User
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError
from paulyops.services.auth import manage, rbac, reauth, tokens
from paulyops.services.auth.permissions import PERMISSIONS, RbacModel
from paulyops.web.api.auth import CamelModel, OkOut
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress, InstanceDep

router = APIRouter(prefix="/api", tags=["organization"])


# --- organization -----------------------------------------------------------------------


class OrganizationOut(CamelModel):
    """The active organization."""

    id: str
    slug: str
    name: str
    industry: str
    compliance_level: str
    size: str
    rbac_model: str
    created_at: datetime


@router.get("/organization", response_model=OrganizationOut)
def get_organization(
    session: DbSession, principal: Annotated[Principal, require("org:read")]
) -> OrganizationOut:
    """Return the caller's active organization."""
    org = session.get(Organization, principal.scope(session).organization_id)
    if org is None:
        raise NotFoundError("organization not found")
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


class MemberRoleIn(CamelModel):
    """A new role for a member."""

    role_id: str = Field(max_length=40)


@router.get("/members", response_model=list[MemberOut])
def list_members(
    session: DbSession, principal: Annotated[Principal, require("members:read")]
) -> list[MemberOut]:
    """List the organization's members."""
    scope = principal.scope(session)
    roles = {role.id: role.name for role in scope.list(Role)}
    out = []
    for membership in scope.list(Membership, order_by=Membership.created_at):
        user = session.get(User, membership.user_id)
        if user is None:
            continue
        out.append(
            MemberOut(
                id=membership.id,
                user_id=user.id,
                email=user.email,
                name=user.name,
                role_id=membership.role_id,
                role_name=roles.get(membership.role_id, "?"),
            )
        )
    return out


@router.patch("/members/{membership_id}", response_model=OkOut)
def change_member_role(
    membership_id: str,
    body: MemberRoleIn,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:update")],
) -> OkOut:
    """Give a member another role (their sessions end)."""
    manage.change_member_role(
        principal.scope(session),
        grant=principal.acting_grant(),
        membership_id=membership_id,
        role_id=body.role_id,
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
    manage.remove_member(
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


class RoleIn(CamelModel):
    """A custom role."""

    name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=400)
    permissions: list[str] = Field(max_length=len(PERMISSIONS))
    parent_id: str | None = Field(None, max_length=40)


class RolePermissionsIn(CamelModel):
    """New permissions for a custom role."""

    permissions: list[str] = Field(max_length=len(PERMISSIONS))


def _model(session: DbSession, scope: OrgScope) -> RbacModel:
    org = session.get(Organization, scope.organization_id)
    return RbacModel(org.rbac_model if org else "simple")


def _role_out(scope: OrgScope, role: Role, model: RbacModel) -> RoleOut:
    return RoleOut(
        id=role.id,
        name=role.name,
        description=role.description,
        builtin=role.is_builtin,
        parent_id=role.parent_id,
        permissions=sorted(role.permissions),
        effective_permissions=sorted(rbac.role_permissions(scope, role, model)),
    )


@router.get("/roles", response_model=list[RoleOut])
def list_roles(
    session: DbSession, principal: Annotated[Principal, require("roles:read")]
) -> list[RoleOut]:
    """List the organization's roles, highest rank first."""
    scope = principal.scope(session)
    model = _model(session, scope)
    roles = sorted(scope.list(Role), key=lambda role: (-role.rank, role.name))
    return [_role_out(scope, role, model) for role in roles]


@router.post("/roles", response_model=RoleOut, status_code=status.HTTP_201_CREATED)
def create_role(
    body: RoleIn,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> RoleOut:
    """Create a custom role (granular and enterprise models)."""
    scope = principal.scope(session)
    role = manage.create_role(
        scope,
        grant=principal.acting_grant(),
        name=body.name,
        permissions=body.permissions,
        description=body.description,
        parent_id=body.parent_id,
        actor=principal.actor(address),
    )
    return _role_out(scope, role, _model(session, scope))


@router.patch("/roles/{role_id}", response_model=RoleOut)
def update_role(
    role_id: str,
    body: RolePermissionsIn,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> RoleOut:
    """Replace a custom role's permissions."""
    scope = principal.scope(session)
    role = manage.update_role(
        scope,
        grant=principal.acting_grant(),
        role_id=role_id,
        permissions=body.permissions,
        actor=principal.actor(address),
    )
    return _role_out(scope, role, _model(session, scope))


@router.delete("/roles/{role_id}", response_model=OkOut)
def delete_role(
    role_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> OkOut:
    """Delete a custom role nobody holds."""
    manage.delete_role(
        principal.scope(session),
        grant=principal.acting_grant(),
        role_id=role_id,
        actor=principal.actor(address),
    )
    return OkOut(message="role deleted")


# --- delegations (enterprise) -----------------------------------------------------------


class DelegationIn(CamelModel):
    """A time-boxed delegation."""

    to_user_id: str = Field(max_length=40)
    permissions: list[str] = Field(min_length=1, max_length=len(PERMISSIONS))
    expires_at: AwareDatetime


class DelegationOut(CamelModel):
    """A delegation."""

    id: str
    from_user_id: str
    to_user_id: str
    permissions: list[str]
    expires_at: datetime


@router.post("/delegations", response_model=DelegationOut, status_code=status.HTTP_201_CREATED)
def create_delegation(
    body: DelegationIn,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
) -> DelegationOut:
    """Delegate some of your own permissions to another member for a time."""
    delegation = manage.delegate(
        principal.scope(session),
        grant=principal.acting_grant(),
        to_user_id=body.to_user_id,
        permissions=body.permissions,
        expires_at=body.expires_at,
        actor=principal.actor(address),
    )
    return DelegationOut.model_validate(delegation, from_attributes=True)


@router.get("/delegations", response_model=list[DelegationOut])
def list_delegations(
    session: DbSession, principal: Annotated[Principal, require("roles:read")]
) -> list[DelegationOut]:
    """List delegations that are still active."""
    scope = principal.scope(session)
    rows = scope.list(Delegation, Delegation.revoked_at.is_(None))
    return [DelegationOut.model_validate(row, from_attributes=True) for row in rows]


@router.delete("/delegations/{delegation_id}", response_model=OkOut)
def revoke_delegation(
    delegation_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
) -> OkOut:
    """End a delegation now (its giver, its recipient, or someone ranked above the giver)."""
    manage.revoke_delegation(
        principal.scope(session),
        grant=principal.acting_grant(),
        delegation_id=delegation_id,
        actor=principal.actor(address),
    )
    return OkOut(message="delegation revoked")


# --- API tokens -------------------------------------------------------------------------


class TokenIn(CamelModel):
    """A new API token."""

    name: str = Field(min_length=1, max_length=120)
    permissions: list[str] = Field(min_length=1, max_length=len(PERMISSIONS))
    expires_at: AwareDatetime | None = None
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
    rows = tokens.list_api_tokens(principal.scope(session))
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
    issued = manage.create_token(
        principal.scope(session),
        grant=principal.acting_grant(),
        name=body.name,
        permissions=body.permissions,
        expires_at=body.expires_at,
        actor=principal.actor(address),
        platform_permissions=principal.permissions,
    )
    base = TokenOut.model_validate(issued.row, from_attributes=True)
    return NewTokenOut(**base.model_dump(), token=issued.secret)


@router.delete("/tokens/{token_id}", response_model=OkOut)
def revoke_token(
    token_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("tokens:manage")],
) -> OkOut:
    """Revoke an API token (your own, or one of a member ranked below you)."""
    manage.revoke_token(
        principal.scope(session),
        grant=principal.acting_grant(),
        token_id=token_id,
        actor=principal.actor(address),
    )
    return OkOut(message="token revoked")
