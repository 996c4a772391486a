"""Sign-in, the second factor, sign-out and one-time password links."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from paulyops.core.errors import AuthenticationError, SpecValidationError
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, passwords, signin
from paulyops.services.auth.passwords import SetPasswordForm
from paulyops.services.auth.signin import SecondFactorCommand, SignInCommand
from paulyops.services.commands import CommandError
from paulyops.web.auth import (
    DbSession,
    PrincipalDep,
    SignedIn,
    WriteSession,
    session_cookie_name,
    set_session_cookie,
)
from paulyops.web.deps import ClientAddress, InstanceDep, Public
from paulyops.web.pages.console.common import (
    _back,
    _safe_next,
    form_bounds,
    form_errors,
    parse_form,
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
    return render(
        request,
        "sign_in.html",
        pre_session=True,
        next=_safe_next(next_url),
        email="",
        bounds=form_bounds(SignInCommand),
    )


def _signed_in(request: Request, result: signin.SignIn, target: str) -> Response:
    """Finish a sign-in: prime the session's form token, set the cookie and move on."""
    session_form_token(request, result.session)
    if result.must_enrol_second_factor:
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
    session: WriteSession,
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
        try:
            command = parse_form(SignInCommand, {"email": email, "password": password})
        except CommandError:
            # Too long to be anyone's: the same answer as a wrong password.
            raise AuthenticationError(accounts.SIGN_IN_FAILED) from None
        result = signin.sign_in(
            session,
            command,
            hashing=instance.hashing,
            limiter=instance.limiter,
            csrf=instance.csrf,
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
            email=email[: signin.MAX_EMAIL],
            error=err.message,
            bounds=form_bounds(SignInCommand),
        )
    if result.needs_second_factor:
        response = redirect("/sign-in/code?next=" + quote(target))
        set_session_cookie(request, response, result.cookie)
        return response
    return _signed_in(request, result, target)


def _cookie(request: Request) -> str:
    return request.cookies.get(session_cookie_name(request), "")


@router.get("/sign-in/code", dependencies=[Public])
def second_factor_page(
    request: Request,
    session: DbSession,
    next_url: Annotated[str, Query(alias="next")] = "",
) -> Response:
    """Ask for the TOTP or a recovery code after the password was right."""
    if signin.pending_sign_in(session, _cookie(request)) is None:
        return _back(request, "/sign-in", "error", "Sign in again: that sign-in expired.")
    return render(
        request,
        "sign_in_code.html",
        pre_session=True,
        next=_safe_next(next_url),
        bounds=form_bounds(SecondFactorCommand),
    )


@router.post("/sign-in/code", dependencies=[Public])
def second_factor_submit(
    request: Request,
    session: WriteSession,
    instance: InstanceDep,
    address: ClientAddress,
    code: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Finish signing in with the code."""
    check_pre_session(request, csrf_token)
    target = _safe_next(next_url)
    if signin.pending_sign_in(session, _cookie(request)) is None:
        return _back(request, "/sign-in", "error", "Sign in again: that sign-in expired.")
    try:
        result = signin.complete_second_factor(
            session,
            parse_form(SecondFactorCommand, {"code": code[: signin.MAX_CODE]}),
            cookie=_cookie(request),
            keyring=instance.keyring,
            limiter=instance.limiter,
            csrf=instance.csrf,
            address=address,
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
            bounds=form_bounds(SecondFactorCommand),
        )
    return _signed_in(request, result, target)


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
        signin.sign_out(
            session, csrf=instance.csrf, row=principal.web_session, actor=principal.actor(address)
        )
    response = _back(request, "/sign-in", "success", "You are signed out.")
    response.delete_cookie(session_cookie_name(request), path="/")
    return response


@router.get("/set-password", dependencies=[Public])
def set_password_page(
    request: Request,
    session: DbSession,
    token: str = "",
) -> Response:
    """The one-time link's page: choose a password."""
    email = passwords.password_link_email(session, token)
    return render(
        request,
        "set_password.html",
        pre_session=True,
        token=token,
        email=email,
        errors={},
        bounds=form_bounds(SetPasswordForm),
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
    email = passwords.password_link_email(session, token)
    try:
        form = parse_form(
            SetPasswordForm, {"token": token, "password": password, "confirm": confirm}
        )
        passwords.set_password_from_link(session, form, hashing=instance.hashing, address=address)
    except SpecValidationError as err:
        return render(
            request,
            "set_password.html",
            status_code=422,
            pre_session=True,
            token=token,
            email=email,
            errors=form_errors(err),
            bounds=form_bounds(SetPasswordForm),
        )
    return _back(request, "/sign-in", "success", "Your password is set. Sign in with it now.")
