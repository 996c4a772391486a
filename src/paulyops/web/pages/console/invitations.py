"""The invited person's pages: an invitation link, and the signed-in user's invitations.

An invitation link (``/invitation?token=...``) leads to one of three answers: a new
address chooses a password (and joins that organization only); an existing account's
holder, signed in, accepts or declines; anyone else is asked to sign in with the invited
account. Nothing is granted before that account's own credentials were used.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from paulyops.core.errors import (
    ConflictError,
    FieldError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.services.auth import invitations
from paulyops.services.commands import invalid, parse
from paulyops.web.auth import DbSession, PrincipalDep, SignedIn
from paulyops.web.deps import ClientAddress, InstanceDep, Public
from paulyops.web.pages.console.common import _back, _field_errors, _page, _user
from paulyops.web.pages.render import check_pre_session, render, session_form_token
from paulyops.web.ratelimit import limit_request

router = APIRouter(include_in_schema=False)


def _link_page(
    request: Request,
    session: DbSession,
    principal: PrincipalDep,
    token: str,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    name: str = "",
) -> Response:
    view, has_account = invitations.view_invitation(session, token)
    context: dict[str, Any] = {
        "token": token,
        "org_name": view.organization.name,
        "role_name": view.role.name,
        "email": view.invitation.email,
        "errors": errors or {},
        "name": name or view.invitation.name,
    }
    if not has_account:
        return render(
            request,
            "invitation.html",
            status_code=status_code,
            pre_session=True,
            mode="new",
            **context,
        )
    me = principal.user if principal.kind == "session" else None
    if me is not None and me.email == view.invitation.email and principal.web_session:
        token_for_form = session_form_token(request, principal.web_session)
        return render(
            request,
            "invitation.html",
            status_code=status_code,
            csrf_token=token_for_form,
            mode="accept",
            **context,
        )
    next_url = quote("/invitation?token=" + token, safe="")
    return render(
        request,
        "invitation.html",
        status_code=status_code,
        mode="sign_in",
        signed_in_as=me.email if me is not None else None,
        sign_in_url=f"/sign-in?next={next_url}",
        **context,
    )


@router.get("/invitation", dependencies=[Public])
def invitation_page(
    request: Request, session: DbSession, principal: PrincipalDep, token: str = ""
) -> Response:
    """What an invitation link offers: choose a password, or sign in and accept."""
    return _link_page(request, session, principal, token[:200])


@router.post("/invitation", dependencies=[Public])
def create_account(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: PrincipalDep,
    token: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Create the invited address's account; it joins the inviting organization only."""
    check_pre_session(request, csrf_token)
    limit_request(request, None, user_id=None, name="signin")
    token = token[:200]
    data = {"token": token, "name": name[:200], "password": password}
    try:
        command = parse(invitations.AcceptAsNewAccount, data)
        if password != confirm:
            # The form's own check: the command has one password, the form asks twice.
            raise invalid([FieldError("confirm", "the two passwords are not the same")])
        invitations.accept_as_new_account(
            session, hashing=instance.hashing, command=command, address=address
        )
    except SpecValidationError as err:
        return _link_page(
            request,
            session,
            principal,
            token,
            status_code=422,
            errors=_field_errors(err),
            name=name[:200],
        )
    except ConflictError:
        # The address got an account meanwhile: the page now asks to sign in.
        return _link_page(request, session, principal, token, status_code=409)
    return _back(
        request, "/sign-in", "success", "Your account is ready and you joined. Sign in now."
    )


@router.post("/invitation/accept")
def accept_by_link(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
    token: Annotated[str, Form()] = "",
) -> Response:
    """Accept the link's invitation as the signed-in account (it must be the invited one)."""
    try:
        invitations.accept_invitation(
            session, user=_user(principal), actor=principal.actor(address), token=token[:200]
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/invitations", "error", err.message)
    return _back(request, "/console", "success", _joined_message())


@router.post("/invitation/decline")
def decline_by_link(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
    token: Annotated[str, Form()] = "",
) -> Response:
    """Decline the link's invitation as the signed-in account."""
    try:
        invitations.decline_invitation(
            session, user=_user(principal), actor=principal.actor(address), token=token[:200]
        )
    except PermissionDeniedError as err:
        return _back(request, "/console/invitations", "error", err.message)
    return _back(request, "/console/invitations", "success", "Invitation declined.")


def _joined_message() -> str:
    return (
        "Invitation accepted. Switch to the organization from the menu; your default "
        "organization stays as it was."
    )


@router.get("/console/invitations")
def my_invitations(request: Request, session: DbSession, principal: SignedIn) -> Response:
    """The invitations addressed to the signed-in account, to accept or decline."""
    views = invitations.pending_for_user(session, _user(principal))
    return _page(
        request, session, principal, "console/invitations.html", active="invitations", views=views
    )


@router.post("/console/invitations/{invitation_id}/accept")
def accept(
    invitation_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
) -> Response:
    """Accept an invitation addressed to the signed-in account."""
    try:
        invitations.accept_invitation(
            session,
            user=_user(principal),
            actor=principal.actor(address),
            invitation_id=invitation_id,
        )
    except ConflictError as err:
        return _back(request, "/console/invitations", "error", err.message)
    return _back(request, "/console/invitations", "success", _joined_message())


@router.post("/console/invitations/{invitation_id}/decline")
def decline(
    invitation_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
) -> Response:
    """Decline an invitation addressed to the signed-in account."""
    invitations.decline_invitation(
        session, user=_user(principal), actor=principal.actor(address), invitation_id=invitation_id
    )
    return _back(request, "/console/invitations", "success", "Invitation declined.")
