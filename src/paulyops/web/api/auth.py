"""Sign-in, sign-out, sessions, passwords and the second factor (JSON API)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from paulyops.services.actor import Actor
from paulyops.services.auth import passwords, signin
from paulyops.services.auth import second_factor as factors
from paulyops.services.auth.passwords import ChangePasswordCommand
from paulyops.services.auth.second_factor import ConfirmTotpCommand, RecentPasswordCommand
from paulyops.services.auth.signin import SecondFactorCommand, SignInCommand, UserView
from paulyops.web.auth import (
    AnyCredential,
    DbSession,
    PrincipalDep,
    SignedIn,
    WriteSession,
    session_cookie_name,
    set_session_cookie,
)
from paulyops.web.deps import ClientAddress, InstanceDep, Public

router = APIRouter(prefix="/api/auth", tags=["auth"])


class CamelModel(BaseModel):
    """A response body with camelCase names on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class UserOut(UserView):
    """The signed-in user."""


class SignInOut(CamelModel):
    """The result of a sign-in step."""

    success: bool = True
    user: UserOut
    organization_id: str | None
    csrf_token: str = Field(description="send as X-CSRF-Token on unsafe requests", repr=False)
    needs_second_factor: bool


class MeOut(CamelModel):
    """Who is calling and what they may do."""

    user: UserOut
    organization_id: str | None
    permissions: list[str]
    via: str = Field(description="session or token")


class SessionOut(signin.SessionView):
    """One of the user's sessions."""


class TotpStartOut(CamelModel):
    """A TOTP secret to add to an authenticator app (shown once)."""

    secret: str = Field(repr=False)
    uri: str = Field(repr=False)


class RecoveryCodesOut(CamelModel):
    """One-time recovery codes (shown once)."""

    recovery_codes: list[str] = Field(repr=False)


class OkOut(CamelModel):
    """A plain success answer."""

    success: bool = True
    message: str = ""


def _user_out(user: UserView) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/sign-in", dependencies=[Public], response_model=SignInOut)
def sign_in(
    body: SignInCommand,
    request: Request,
    response: Response,
    session: WriteSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: PrincipalDep,
) -> SignInOut:
    """Sign in with e-mail and password; a second factor may still be needed."""
    result = signin.sign_in(
        session,
        body,
        hashing=instance.hashing,
        limiter=instance.limiter,
        csrf=instance.csrf,
        actor=Actor("anonymous", None, address),
        previous=principal.web_session,
        user_agent=request.headers.get("user-agent"),
    )
    set_session_cookie(request, response, result.cookie)
    return _signed_in(result)


def _signed_in(result: signin.SignIn) -> SignInOut:
    return SignInOut(
        user=_user_out(result.user),
        organization_id=result.organization_id,
        csrf_token=result.csrf_token,
        needs_second_factor=result.needs_second_factor,
    )


@router.post("/second-factor", dependencies=[Public], response_model=SignInOut)
def second_factor(
    body: SecondFactorCommand,
    request: Request,
    response: Response,
    session: WriteSession,
    instance: InstanceDep,
    address: ClientAddress,
) -> SignInOut:
    """Finish signing in with a TOTP or recovery code."""
    result = signin.complete_second_factor(
        session,
        body,
        cookie=request.cookies.get(session_cookie_name(request), ""),
        keyring=instance.keyring,
        limiter=instance.limiter,
        csrf=instance.csrf,
        address=address,
    )
    set_session_cookie(request, response, result.cookie)
    return _signed_in(result)


@router.post("/sign-out", response_model=OkOut)
def sign_out(
    request: Request,
    response: Response,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
) -> OkOut:
    """End the current browser session."""
    if principal.web_session is not None:
        signin.sign_out(
            session, csrf=instance.csrf, row=principal.web_session, actor=principal.actor(address)
        )
    response.delete_cookie(session_cookie_name(request), path="/")
    return OkOut(message="signed out")


@router.get("/me", response_model=MeOut)
async def me(principal: AnyCredential) -> MeOut:
    """Return the caller, their organization and permissions.

    ``async``: it only reads the resolved principal's loaded columns (no SQL), so neither
    the route nor its serialization takes a thread-pool hop.
    """
    assert principal.user is not None  # Authenticated guarantees a user
    return MeOut(
        user=_user_out(signin.user_view(principal.user)),
        organization_id=principal.organization_id,
        permissions=sorted(principal.permissions),
        via=principal.kind,
    )


@router.get("/sessions", response_model=list[SessionOut])
def list_sessions(session: DbSession, principal: SignedIn) -> list[SessionOut]:
    """List the caller's live browser sessions."""
    assert principal.user is not None  # Authenticated guarantees a user
    current = principal.web_session.id if principal.web_session else None
    return [
        SessionOut.model_validate(view, from_attributes=True)
        for view in signin.own_sessions(session, principal.user.id, current_id=current)
    ]


@router.delete("/sessions/{session_id}", response_model=OkOut)
def revoke_session(
    session_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
) -> OkOut:
    """Revoke one of the caller's own sessions."""
    assert principal.user is not None  # Authenticated guarantees a user
    signin.revoke_own_session(
        session, user=principal.user, session_id=session_id, actor=principal.actor(address)
    )
    return OkOut(message="session revoked")


@router.post("/password", response_model=OkOut)
def change_password(
    body: ChangePasswordCommand,
    request: Request,
    response: Response,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
) -> OkOut:
    """Change the caller's password; other sessions and every API token of the account end.

    Attempts count against the per-account sign-in limit (429 beyond it).
    """
    assert principal.user is not None  # Authenticated guarantees a user
    changed = passwords.change_password(
        session,
        body,
        hashing=instance.hashing,
        limiter=instance.limiter,
        csrf=instance.csrf,
        user=principal.user,
        current=principal.web_session,
        actor=principal.actor(address),
    )
    if changed.replacement is not None:
        set_session_cookie(request, response, changed.replacement.token)
    return OkOut(
        message="password changed; other sessions were signed out and "
        f"{changed.tokens_revoked} API token(s) of this account were revoked"
    )


@router.post("/totp/start", response_model=TotpStartOut)
def totp_start(
    response: Response,
    session: DbSession,
    instance: InstanceDep,
    principal: SignedIn,
    body: RecentPasswordCommand | None = None,
) -> TotpStartOut:
    """Create a TOTP secret (never cached); it is enabled once a code is confirmed.

    Needs the password, sent here or entered in this session in the last 10 minutes.
    """
    assert principal.user is not None  # Authenticated guarantees a user
    enrollment = factors.start_totp(
        session,
        body or RecentPasswordCommand(),
        user=principal.user,
        web_session=principal.web_session,
        keyring=instance.keyring,
        hashing=instance.hashing,
        limiter=instance.limiter,
    )
    response.headers["Cache-Control"] = "no-store"
    return TotpStartOut(secret=enrollment.secret, uri=enrollment.uri)


@router.post("/totp/confirm", response_model=RecoveryCodesOut)
def totp_confirm(
    body: ConfirmTotpCommand,
    response: Response,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
) -> RecoveryCodesOut:
    """Enable TOTP with a first code; returns 10 one-time recovery codes (never cached).

    Needs the password, sent here or entered in this session in the last 10 minutes.
    """
    assert principal.user is not None  # Authenticated guarantees a user
    response.headers["Cache-Control"] = "no-store"
    codes = factors.confirm_second_factor(
        session,
        body,
        user=principal.user,
        web_session=principal.web_session,
        keyring=instance.keyring,
        hashing=instance.hashing,
        limiter=instance.limiter,
        actor=principal.actor(address),
    )
    return RecoveryCodesOut(recovery_codes=codes)
