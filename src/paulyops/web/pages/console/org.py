"""The organization switcher."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import PermissionDeniedError
from paulyops.services.auth import organizations, signin
from paulyops.services.commands import parse
from paulyops.web.auth import (
    DbSession,
    SignedIn,
    set_session_cookie,
)
from paulyops.web.deps import ClientAddress, InstanceDep
from paulyops.web.pages.console.common import (
    _back,
    _needs_enrollment,
    _user,
)
from paulyops.web.pages.render import (
    session_form_token,
)

router = APIRouter(include_in_schema=False)


@router.post("/console/switch-org")
def switch_organization(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    organization_id: Annotated[str, Form()] = "",
) -> Response:
    """Work in another organization you belong to (the session is rotated)."""
    user = _user(principal)
    if principal.web_session is None:
        raise PermissionDeniedError("switching organizations needs a browser session")
    if organization_id == principal.organization_id:
        return _back(request, "/console", "info", "You are already working in that organization.")
    command = parse(signin.SwitchOrganizationCommand, {"organization_id": organization_id})
    new, _token = signin.switch_organization(
        session,
        command,
        csrf=instance.csrf,
        current=principal.web_session,
        actor=principal.actor(address),
    )
    name = organizations.get_organization(OrgScope(session, organization_id)).name
    session_form_token(request, new.row)
    if _needs_enrollment(session, user, organization_id):
        response = _back(
            request,
            "/console/security",
            "info",
            f"{name} requires a second factor for admins: set it up to continue.",
        )
    else:
        response = _back(request, "/console", "success", f"You are now working in {name}.")
    set_session_cookie(request, response, new.token)
    return response
