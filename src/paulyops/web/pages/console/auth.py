"""Sign-in, the second factor, sign-out and one-time password links."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    WebSession,
)
from paulyops.core.errors import (
    AuthenticationError,
    SpecValidationError,
)
from paulyops.services import console as console_service
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, links, manage, sessions
from paulyops.web.auth import (
    DbSession,
    PrincipalDep,
    SignedIn,
    session_cookie_name,
    set_session_cookie,
)
from paulyops.web.deps import ClientAddress, InstanceDep, Public
from paulyops.web.pages.console.common import (
    MAX_PASSWORD,
    _back,
    _field_errors,
    _needs_enrollment,
    _safe_next,
)
from paulyops.web.pages.render import (
    check_pre_session,
    flash,
    redirect,
    render,
    session_form_token,
)
from paulyops.web.ratelimit import limit_request

router = APIRouter(include_in_schema=False)

# --- sign-in, second factor, sign-out, one-time password links -------------------------------


@router.get("/sign-in", dependencies=[Public])
def sign_in_page(
    request: Request,
    principal: PrincipalDep,
    next_url: Annotated[str, Query(alias="next")] = "",
) -> Response:
    """The sign-in form (a pre-session CSRF token guards it)."""
    if principal.kind == "session":
        return redirect(_safe_next(next_url))
    return render(request, "sign_in.html", pre_session=True, next=_safe_next(next_url), email="")


def _signed_in(request: Request, session: Session, result: manage.SignIn, target: str) -> Response:
    """Finish a sign-in: prime the session's form token, set the cookie and move on."""
    session_form_token(request, result.session)
    if _needs_enrollment(session, result.user, result.session.organization_id):
        response = redirect("/console/security")
        flash(
            response,
            request,
            "info",
            "Your organization requires a second factor for admins: set it up to continue.",
        )
    else:
        response = redirect(target)
    set_session_cookie(request, response, result.cookie)
    return response


@router.post("/sign-in", dependencies=[Public])
def sign_in_submit(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: PrincipalDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Check the credentials; continue to the second factor when it is on."""
    check_pre_session(request, csrf_token)
    target = _safe_next(next_url)
    try:
        if len(password) > MAX_PASSWORD or len(email) > 320:
            raise AuthenticationError(accounts.SIGN_IN_FAILED)
        result = manage.sign_in(
            session,
            hashing=instance.hashing,
            limiter=instance.limiter,
            csrf=instance.csrf,
            email=email,
            password=password,
            actor=Actor("anonymous", None, address),
            previous=principal.web_session,
            user_agent=request.headers.get("user-agent"),
        )
    except AuthenticationError as err:
        return render(
            request,
            "sign_in.html",
            status_code=401,
            pre_session=True,
            next=target,
            email=email[:320],
            error=err.message,
        )
    if result.needs_second_factor:
        response = redirect("/sign-in/code?next=" + quote(target))
        set_session_cookie(request, response, result.cookie)
        return response
    return _signed_in(request, session, result, target)


def _pending(request: Request, session: Session) -> WebSession | None:
    row = sessions.resolve_session(session, request.cookies.get(session_cookie_name(request), ""))
    return row if row is not None and row.kind == "pending_2fa" else None


@router.get("/sign-in/code", dependencies=[Public])
def second_factor_page(
    request: Request,
    session: DbSession,
    next_url: Annotated[str, Query(alias="next")] = "",
) -> Response:
    """Ask for the TOTP or a recovery code after the password was right."""
    if _pending(request, session) is None:
        return _back(request, "/sign-in", "error", "Sign in again: that sign-in expired.")
    return render(request, "sign_in_code.html", pre_session=True, next=_safe_next(next_url))


@router.post("/sign-in/code", dependencies=[Public])
def second_factor_submit(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    code: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Finish signing in with the code."""
    check_pre_session(request, csrf_token)
    target = _safe_next(next_url)
    pending = _pending(request, session)
    if pending is None:
        return _back(request, "/sign-in", "error", "Sign in again: that sign-in expired.")
    try:
        result = manage.complete_second_factor(
            session,
            keyring=instance.keyring,
            limiter=instance.limiter,
            csrf=instance.csrf,
            pending=pending,
            code=code[:40],
            actor=Actor("anonymous", pending.user_id, address),
        )
    except (AuthenticationError, SpecValidationError) as err:
        # A malformed code (field "code") is 422; a wrong one is 401.
        problems = err.errors if isinstance(err, SpecValidationError) else []
        return render(
            request,
            "sign_in_code.html",
            status_code=422 if problems else 401,
            pre_session=True,
            next=target,
            error="; ".join(e.message for e in problems) or err.message,
        )
    return _signed_in(request, session, result, target)


@router.post("/sign-out")
def sign_out(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
) -> Response:
    """End this browser's session."""
    if principal.web_session is not None:
        manage.sign_out(
            session, csrf=instance.csrf, row=principal.web_session, actor=principal.actor(address)
        )
    response = _back(request, "/sign-in", "success", "You are signed out.")
    response.delete_cookie(session_cookie_name(request), path="/")
    return response


@router.get("/set-password", dependencies=[Public])
def set_password_page(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    token: str = "",
) -> Response:
    """The one-time link's page: choose a password."""
    user = links.user_for_password_token(session, token)
    return render(
        request, "set_password.html", pre_session=True, token=token, email=user.email, errors={}
    )


@router.post("/set-password", dependencies=[Public])
def set_password_submit(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    token: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Set the password; the link stops working with it."""
    check_pre_session(request, csrf_token)
    limit_request(request, None, user_id=None, name="signin")
    user = links.user_for_password_token(session, token)
    errors: dict[str, str] = {}
    if len(password) > MAX_PASSWORD:
        errors["password"] = f"expected at most {MAX_PASSWORD} characters"
    elif password != confirm:
        errors["confirm"] = "the two passwords are not the same"
    else:
        try:
            console_service.set_password_from_link(
                session, hashing=instance.hashing, token=token, password=password, address=address
            )
        except SpecValidationError as err:
            errors = _field_errors(err)
    if errors:
        return render(
            request,
            "set_password.html",
            status_code=422,
            pre_session=True,
            token=token,
            email=user.email,
            errors=errors,
        )
    return _back(request, "/sign-in", "success", "Your password is set. Sign in with it now.")
