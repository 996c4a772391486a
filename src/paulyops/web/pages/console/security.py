"""Security: the organization's settings and the user's own second factor, password,
sessions and API tokens.
"""

from __future__ import annotations

from typing import Annotated, Any

import pyotp
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from paulyops.core.db import Session
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    AuthenticationError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.instance import Instance
from paulyops.core.security.crypto import DecryptionError
from paulyops.core.security.fields import read_secret
from paulyops.services import security_settings
from paulyops.services.auth import (
    accounts,
    passwords,
    reauth,
    second_factor,
    sessions,
    signin,
    tokens,
)
from paulyops.services.auth.permissions import (
    PERMISSIONS,
)
from paulyops.services.commands import parse
from paulyops.web.auth import (
    DbSession,
    Principal,
    SignedIn,
    require,
    session_cookie_name,
    set_session_cookie,
)
from paulyops.web.deps import ClientAddress, InstanceDep, client_address
from paulyops.web.pages.console.common import (
    MAX_PASSWORD,
    _back,
    _field_errors,
    _member_names,
    _page,
    _user,
)
from paulyops.web.pages.console.schema import form_fields
from paulyops.web.pages.render import (
    session_form_token,
)
from paulyops.web.ratelimit import limit_request

router = APIRouter(include_in_schema=False)

# --- security -------------------------------------------------------------------------------


def _security_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    enrollment: dict[str, str] | None = None,
    recovery_codes: list[str] | None = None,
    new_token: dict[str, str] | None = None,
) -> Response:
    user = _user(principal)
    config = None
    api_tokens = []
    if principal.organization_id is not None:
        scope = OrgScope(session, principal.organization_id)
        if principal.can("security:read") or principal.can("security:update"):
            config = security_settings.security_view(scope)
        if principal.can("tokens:manage"):
            api_tokens = list(tokens.list_api_tokens(scope))
    current = principal.web_session.id if principal.web_session else None
    return _page(
        request,
        session,
        principal,
        "console/security.html",
        active="security",
        status_code=status_code,
        config=config,
        settings_fields=form_fields(security_settings.UpdateSecurity),
        totp_enabled=user.totp_enabled,
        totp_required_by=[
            org.name
            for org in second_factor.organizations_requiring_second_factor(session, user.id)
        ]
        if user.totp_enabled
        else [],
        recovery_left=len(user.recovery_codes),
        my_sessions=sessions.list_sessions(session, user.id),
        current_session=current,
        api_tokens=api_tokens,
        names=_member_names(OrgScope(session, principal.organization_id))
        if principal.organization_id
        else {},
        token_permissions=[
            name
            for name in PERMISSIONS
            if principal.grant is not None and name in principal.acting_grant().grantable
        ],
        token_fields=tokens.CreateToken.model_json_schema(by_alias=False)["properties"],
        errors=errors or {},
        form=form or {},
        enrollment=enrollment,
        recovery_codes=recovery_codes,
        new_token=new_token,
    )


@router.get("/console/security")
def security(request: Request, session: DbSession, principal: SignedIn) -> Response:
    """Session timeouts, your second factor and sessions, and API tokens."""
    return _security_page(request, session, principal)


@router.post("/console/security/settings")
def update_security(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("security:update")],
    idle_minutes: Annotated[str, Form()] = "",
    absolute_hours: Annotated[str, Form()] = "",
    require_admin_2fa: Annotated[str, Form()] = "",
) -> Response:
    """Change the session timeouts and whether admins need a second factor."""
    form = {
        "idle_minutes": idle_minutes[:10],
        "absolute_hours": absolute_hours[:10],
        "require_admin_2fa": bool(require_admin_2fa),
    }
    try:
        command = parse(
            security_settings.UpdateSecurity,
            {
                "idle_minutes": idle_minutes,
                "absolute_hours": absolute_hours,
                "require_admin_2fa": bool(require_admin_2fa),
            },
        )
        security_settings.update_security(
            principal.scope(session), command, actor=principal.actor(address)
        )
    except SpecValidationError as err:
        return _security_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    return _back(request, "/console/security", "success", "Security settings saved.")


def _recent_password_errors(
    request: Request,
    session: Session,
    instance: Instance,
    principal: Principal,
    password: str,
    field: str,
) -> dict[str, str]:
    """Check the password is recent (or given now); return form errors on ``field``."""
    try:
        reauth.require_recent_password(
            session,
            hashing=instance.hashing,
            limiter=instance.limiter,
            user=_user(principal),
            password=password[: MAX_PASSWORD + 1],
            web_session=principal.web_session,
            address=client_address(request),
        )
    except SpecValidationError as err:
        return {field: "; ".join(item.message for item in err.errors) or err.message}
    return {}


@router.post("/console/security/totp/start")
def totp_start(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: SignedIn,
    password: Annotated[str, Form()] = "",
) -> Response:
    """Create a TOTP secret to add to an authenticator app (enabled after a first code).

    Needs the password, entered here or in this session in the last minutes.
    """
    user = _user(principal)
    if user.totp_enabled:
        return _back(request, "/console/security", "info", "Your second factor is already on.")
    errors = _recent_password_errors(
        request, session, instance, principal, password, "totp_start_password"
    )
    if errors:
        return _security_page(request, session, principal, status_code=422, errors=errors)
    enrollment = accounts.start_totp(user, instance.keyring)
    return _security_page(
        request,
        session,
        principal,
        enrollment={"secret": enrollment.secret, "uri": enrollment.uri},
    )


def _pending_enrollment(principal: Principal, instance: Instance) -> dict[str, str] | None:
    """Return the secret waiting for its first code again (after a wrong code)."""
    user = _user(principal)
    if user.totp_enabled or user.totp_secret is None:
        return None
    try:
        raw = read_secret(user, "totp_secret", ring=instance.keyring)
    except DecryptionError:
        return None
    if raw is None:
        return None
    secret = raw.decode()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=accounts.TOTP_ISSUER)
    return {"secret": secret, "uri": uri}


@router.post("/console/security/totp/confirm")
def totp_confirm(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    code: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    """Turn the second factor on with a first code; show the recovery codes once."""
    user = _user(principal)
    if user.totp_enabled:
        return _back(request, "/console/security", "info", "Your second factor is already on.")
    errors = _recent_password_errors(
        request, session, instance, principal, password, "totp_confirm_password"
    )
    if errors:
        return _security_page(
            request,
            session,
            principal,
            status_code=422,
            errors=errors,
            enrollment=_pending_enrollment(principal, instance),
        )
    try:
        codes = second_factor.enable_totp(
            session,
            keyring=instance.keyring,
            user=user,
            code=code[:20],
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        return _security_page(
            request,
            session,
            principal,
            status_code=422,
            errors=_field_errors(err),
            enrollment=_pending_enrollment(principal, instance),
        )
    return _security_page(request, session, principal, recovery_codes=codes)


def _password_errors(err: SpecValidationError, field: str) -> dict[str, str]:
    """Every policy problem of a new password, on the form's ``field``."""
    problems = [item.message for item in err.errors if item.field == "password"]
    return {field: "; ".join(problems) or err.message}


@router.post("/console/security/password")
def change_password(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    """Change your password after re-entering it; your other sessions end, this one rotates."""
    user = _user(principal)
    limit_request(request, None, user_id=user.id, name="signin")
    errors: dict[str, str] = {}
    if len(current_password) > MAX_PASSWORD:
        errors["current_password"] = "the current password is not correct"  # noqa: S105
    elif len(new_password) > MAX_PASSWORD:
        errors["new_password"] = f"expected at most {MAX_PASSWORD} characters"
    elif new_password != confirm_password:
        errors["confirm_password"] = "the two new passwords are not the same"  # noqa: S105
    else:
        try:
            command = passwords.ChangePasswordCommand(
                current_password=current_password, new_password=new_password
            )
            changed = passwords.change_password(
                session,
                command,
                hashing=instance.hashing,
                limiter=instance.limiter,
                csrf=instance.csrf,
                user=user,
                current=principal.web_session,
                actor=principal.actor(address),
            )
        except AuthenticationError as err:
            errors["current_password"] = err.message
        except SpecValidationError as err:
            errors = _password_errors(err, "new_password")
        else:
            ended = changed.tokens_revoked
            response = _back(
                request,
                "/console/security",
                "success",
                "Your password is changed. Your other sessions were signed out"
                + (
                    f" and your {ended} API token{'' if ended == 1 else 's'} revoked: "
                    "create new ones for your scripts."
                    if ended
                    else "."
                ),
            )
            if changed.replacement is not None:
                session_form_token(request, changed.replacement.row)
                set_session_cookie(request, response, changed.replacement.token)
            return response
    return _security_page(request, session, principal, status_code=422, errors=errors)


@router.post("/console/security/totp/disable")
def totp_disable(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    password: Annotated[str, Form()] = "",
) -> Response:
    """Turn your second factor off after re-entering your password (unless it is required)."""
    user = _user(principal)
    if not user.totp_enabled:
        return _back(request, "/console/security", "info", "Your second factor is already off.")
    limit_request(request, None, user_id=user.id, name="signin")
    try:
        command = parse(
            second_factor.DisableTotpCommand, {"password": password[: MAX_PASSWORD + 1]}
        )
        second_factor.disable_second_factor(
            session, command, hashing=instance.hashing, user=user, actor=principal.actor(address)
        )
    except SpecValidationError as err:
        errors = {"totp_password": "; ".join(_field_errors(err).values())}
        return _security_page(request, session, principal, status_code=422, errors=errors)
    except PermissionDeniedError as err:
        return _security_page(
            request, session, principal, status_code=403, errors={"totp_off": err.message}
        )
    return _back(
        request,
        "/console/security",
        "success",
        "Your second factor is off: signing in needs only your password now.",
    )


@router.post("/console/security/sessions/{session_id}/revoke")
def revoke_session(
    session_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
) -> Response:
    """Revoke one of your own sessions (this one signs you out)."""
    signin.revoke_own_session(
        session, user=_user(principal), session_id=session_id, actor=principal.actor(address)
    )
    if principal.web_session is not None and principal.web_session.id == session_id:
        response = _back(request, "/sign-in", "success", "This session was ended.")
        response.delete_cookie(session_cookie_name(request), path="/")
        return response
    return _back(request, "/console/security", "success", "Session ended.")


# Form input names of the token form, by the command's field.
_TOKEN_INPUTS = {"expires_at": "token_expires"}


@router.post("/console/security/tokens")
def create_token(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("tokens:manage")],
    name: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
    expires: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    """Create an API token with at most your own role's permissions (its secret is shown once).

    Needs the password, entered here or in this session in the last minutes.
    """
    chosen = list(permissions or [])
    form: dict[str, Any] = {"token_name": name[:120], "token_permissions": chosen}
    form["token_expires"] = expires[:10]
    # The token's rules (name, permissions, an expiry in the future) are the command's.
    command: tokens.CreateToken | None = None
    try:
        command = parse(
            tokens.CreateToken, {"name": name, "permissions": chosen, "expires_at": expires}
        )
    except SpecValidationError as err:
        errors = {
            _TOKEN_INPUTS.get(key, f"token_{key}"): m for key, m in _field_errors(err).items()
        }
    else:
        errors = _recent_password_errors(
            request, session, instance, principal, password, "token_password"
        )
    if command is not None and not errors:
        try:
            issued = tokens.create_token(
                principal.scope(session),
                grant=principal.acting_grant(),
                command=command,
                actor=principal.actor(address),
            )
        except PermissionDeniedError as err:
            errors = {"token_permissions": err.message}
        else:
            return _security_page(
                request,
                session,
                principal,
                new_token={"name": issued.row.name, "secret": issued.secret},
            )
    return _security_page(request, session, principal, status_code=422, errors=errors, form=form)


@router.post("/console/security/tokens/{token_id}/revoke")
def revoke_token(
    token_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("tokens:manage")],
) -> Response:
    """Revoke an API token (your own, or one of a member ranked below you)."""
    try:
        tokens.revoke_token(
            principal.scope(session),
            grant=principal.acting_grant(),
            token_id=token_id,
            actor=principal.actor(address),
        )
    except PermissionDeniedError as err:
        return _back(request, "/console/security", "error", err.message)
    return _back(request, "/console/security", "success", "Token revoked.")
