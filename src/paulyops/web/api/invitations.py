"""Invitations over the JSON API: an organization's side, and the invited person's side.

The model is in ``docs/security/invitations.md``; the rules live in
:mod:`paulyops.services.auth.invitations`. Responses that carry a link are one-time
secrets and are sent with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import Field

from paulyops.services.auth import invitations
from paulyops.web.api.auth import CamelModel, OkOut
from paulyops.web.auth import DbSession, Principal, SignedIn, require
from paulyops.web.deps import ClientAddress, InstanceDep, Public
from paulyops.web.ratelimit import limit_request

router = APIRouter(prefix="/api", tags=["invitations"])
NO_STORE = {"Cache-Control": "no-store"}


class InvitationOut(CamelModel):
    """A pending invitation of the organization (never its link)."""

    id: str
    email: str
    name: str
    role_id: str
    role_name: str
    invited_by_user_id: str | None
    created_at: datetime
    expires_at: datetime


class NewInvitationOut(InvitationOut):
    """A created invitation, with its link shown this once."""

    link: str = Field(
        repr=False,
        description="shown once; give it to the person. It joins this organization only: a "
        "new address chooses a password through it, an existing account signs in to accept.",
    )


class MyInvitationOut(CamelModel):
    """An invitation addressed to the signed-in account."""

    id: str
    organization_id: str
    organization_name: str
    role_name: str
    expires_at: datetime


# --- the organization's side -------------------------------------------------------------


@router.post("/invitations", response_model=NewInvitationOut, status_code=status.HTTP_201_CREATED)
def create_invitation(
    body: invitations.Invite,
    response: Response,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:invite")],
) -> NewInvitationOut:
    """Invite someone; the answer is the same whether or not the address has an account."""
    created = invitations.create_invitation(
        principal.scope(session),
        grant=principal.acting_grant(),
        command=body,
        public_url=instance.settings.effective_public_url,
        actor=principal.actor(address),
    )
    response.headers.update(NO_STORE)
    base = InvitationOut.model_validate(created.invitation, from_attributes=True)
    return NewInvitationOut(**base.model_dump(), link=created.link)


@router.get("/invitations", response_model=list[InvitationOut])
def list_invitations(
    session: DbSession, principal: Annotated[Principal, require("members:invite")]
) -> list[InvitationOut]:
    """List the organization's pending invitations (newest first)."""
    return [
        InvitationOut.model_validate(row, from_attributes=True)
        for row in invitations.list_pending(principal.scope(session))
    ]


@router.delete("/invitations/{invitation_id}", response_model=OkOut)
def revoke_invitation(
    invitation_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:invite")],
) -> OkOut:
    """Revoke a pending invitation: its link grants nothing from now on."""
    invitations.revoke_invitation(
        principal.scope(session),
        grant=principal.acting_grant(),
        invitation_id=invitation_id,
        actor=principal.actor(address),
    )
    return OkOut(message="invitation revoked")


@router.post("/invitations/accept", dependencies=[Public], response_model=OkOut)
def accept_as_new_account(
    request: Request,
    response: Response,
    body: invitations.AcceptAsNewAccount,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
) -> OkOut:
    """Create the invited address's account through its link (new addresses only).

    An address that has an account answers 409: its holder signs in and accepts with
    ``POST /api/auth/invitations/accept``.
    """
    limit_request(request, response, user_id=None, name="signin")
    invitations.accept_as_new_account(
        session,
        hashing=instance.hashing,
        command=body,
        address=address,
    )
    return OkOut(message="account created and invitation accepted; you can sign in now")


# --- the invited person's side -----------------------------------------------------------


@router.get("/auth/invitations", response_model=list[MyInvitationOut])
def my_invitations(session: DbSession, principal: SignedIn) -> list[MyInvitationOut]:
    """List the invitations addressed to the signed-in account."""
    assert principal.user is not None  # SignedIn guarantees a user
    return [
        MyInvitationOut(
            id=view.invitation.id,
            organization_id=view.organization.id,
            organization_name=view.organization.name,
            role_name=view.role.name,
            expires_at=view.invitation.expires_at,
        )
        for view in invitations.pending_for_user(session, principal.user)
    ]


@router.post("/auth/invitations/accept", response_model=OkOut)
def accept_by_link(
    body: invitations.InvitationToken,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
) -> OkOut:
    """Accept an invitation link addressed to the signed-in account's address."""
    assert principal.user is not None  # SignedIn guarantees a user
    invitations.accept_invitation(
        session, user=principal.user, actor=principal.actor(address), token=body.token
    )
    return OkOut(message="invitation accepted")


@router.post("/auth/invitations/decline", response_model=OkOut)
def decline_by_link(
    body: invitations.InvitationToken,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
) -> OkOut:
    """Decline an invitation link addressed to the signed-in account's address."""
    assert principal.user is not None  # SignedIn guarantees a user
    invitations.decline_invitation(
        session, user=principal.user, actor=principal.actor(address), token=body.token
    )
    return OkOut(message="invitation declined")


@router.post("/auth/invitations/{invitation_id}/accept", response_model=OkOut)
def accept(
    invitation_id: str, session: DbSession, address: ClientAddress, principal: SignedIn
) -> OkOut:
    """Accept an invitation addressed to the signed-in account."""
    assert principal.user is not None  # SignedIn guarantees a user
    invitations.accept_invitation(
        session, user=principal.user, actor=principal.actor(address), invitation_id=invitation_id
    )
    return OkOut(message="invitation accepted")


@router.post("/auth/invitations/{invitation_id}/decline", response_model=OkOut)
def decline(
    invitation_id: str, session: DbSession, address: ClientAddress, principal: SignedIn
) -> OkOut:
    """Decline an invitation addressed to the signed-in account."""
    assert principal.user is not None  # SignedIn guarantees a user
    invitations.decline_invitation(
        session, user=principal.user, actor=principal.actor(address), invitation_id=invitation_id
    )
    return OkOut(message="invitation declined")
