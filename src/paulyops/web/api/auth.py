"""Sign-in, sign-out, sessions, passwords and the second factor (JSON API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from paulyops.core.db.models import User
from paulyops.core.errors import AuthenticationError, ConflictError, SpecValidationError
from paulyops.services.actor import Actor, record
from paulyops.services.auth import accounts, manage, reauth, sessions
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
    """A request or response body with camelCase names on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class SignInIn(CamelModel):
    """Credentials."""

    email: str = Field(max_length=320)
    password: str = Field(max_length=1024, repr=False)
    organization_id: str | None = Field(None, max_length=40)


def _one_time_code(value: str) -> str:
    try:
        return accounts.normalize_code(value)
    except SpecValidationError as err:
        raise PydanticCustomError("code_format", err.errors[0].message) from None


# Normalized (any script's digits, spaces, dashes) or refused with a 422 naming the field.
OneTimeCode = Annotated[str, AfterValidator(_one_time_code)]


class SecondFactorIn(CamelModel):
    """A TOTP or recovery code."""

    code: OneTimeCode = Field(max_length=40, repr=False)


class UserOut(CamelModel):
    """The signed-in user."""

    id: str
    email: str
    name: str
    is_platform_admin: bool
    totp_enabled: bool


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


class SessionOut(CamelModel):
    """One of the user's sessions."""

    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    client_address: str | None
    user_agent: str | None
    current: bool


class PasswordIn(CamelModel):
    """A password change."""

    current_password: str = Field(max_length=1024, repr=False)
    new_password: str = Field(max_length=1024, repr=False)


class ReauthIn(CamelModel):
    """The password again, for actions that need recent authentication."""

    password: str | None = Field(
        None,
        max_length=1024,
        description="your password; needed unless this session entered it in the last 10 minutes",
    )


class TotpConfirmIn(SecondFactorIn):
    """The first code from the app, and the password when it is not recent."""

    password: str | None = Field(None, max_length=1024)


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


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        is_platform_admin=user.is_platform_admin,
        totp_enabled=user.totp_enabled,
    )


@router.post("/sign-in", dependencies=[Public], response_model=SignInOut)
def sign_in(
    body: SignInIn,
    request: Request,
    response: Response,
    session: WriteSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: PrincipalDep,
) -> SignInOut:
    """Sign in with e-mail and password; a second factor may still be needed."""
    result = manage.sign_in(
        session,
        hashing=instance.hashing,
        limiter=instance.limiter,
        csrf=instance.csrf,
        email=body.email,
        password=body.password,
        actor=Actor("anonymous", None, address),
        organization_id=body.organization_id,
        previous=principal.web_session,
        user_agent=request.headers.get("user-agent"),
    )
    set_session_cookie(request, response, result.cookie)
    return SignInOut(
        user=_user_out(result.user),
        organization_id=result.session.organization_id,
        csrf_token=result.csrf_token,
        needs_second_factor=result.needs_second_factor,
    )


@router.post("/second-factor", dependencies=[Public], response_model=SignInOut)
def second_factor(
    body: SecondFactorIn,
    request: Request,
    response: Response,
    session: WriteSession,
    instance: InstanceDep,
    address: ClientAddress,
) -> SignInOut:
    """Finish signing in with a TOTP or recovery code."""
    cookie = request.cookies.get(session_cookie_name(request), "")
    pending = sessions.resolve_session(session, cookie)
    if pending is None:
        raise AuthenticationError("there is no sign-in waiting for a code; sign in again")
    result = manage.complete_second_factor(
        session,
        keyring=instance.keyring,
        limiter=instance.limiter,
        csrf=instance.csrf,
        pending=pending,
        code=body.code,
        actor=Actor("anonymous", pending.user_id, address),
    )
    set_session_cookie(request, response, result.cookie)
    return SignInOut(
        user=_user_out(result.user),
        organization_id=result.session.organization_id,
        csrf_token=result.csrf_token,
        needs_second_factor=False,
    )


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
        manage.sign_out(
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
        user=_user_out(principal.user),
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
        SessionOut(
            id=row.id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
            client_address=row.client_address,
            user_agent=row.user_agent,
            current=row.id == current,
        )
        for row in sessions.list_sessions(session, principal.user.id)
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
    manage.revoke_own_session(
        session, user=principal.user, session_id=session_id, actor=principal.actor(address)
    )
    return OkOut(message="session revoked")


@router.post("/password", response_model=OkOut)
def change_password(
    body: PasswordIn,
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
    changed = manage.change_password(
        session,
        hashing=instance.hashing,
        limiter=instance.limiter,
        csrf=instance.csrf,
        user=principal.user,
        current_password=body.current_password,
        new_password=body.new_password,
        current=principal.web_session,
        actor=principal.actor(address),
    )
    if changed.replacement is not None:
        set_session_cookie(request, response, changed.replacement.token)
    return OkOut(
        message="password changed; other sessions were signed out and "
        f"{changed.tokens_revoked} API token(s) of this account were revoked"
    )


def _require_recent_password(
    session: DbSession, instance: InstanceDep, principal: SignedIn, password: str | None
) -> None:
    assert principal.user is not None  # Authenticated guarantees a user
    reauth.require_recent_password(
        session,
        hashing=instance.hashing,
        limiter=instance.limiter,
        user=principal.user,
        password=password,
        web_session=principal.web_session,
    )


@router.post("/totp/start", response_model=TotpStartOut)
def totp_start(
    response: Response,
    session: DbSession,
    instance: InstanceDep,
    principal: SignedIn,
    body: ReauthIn | None = None,
) -> TotpStartOut:
    """Create a TOTP secret (never cached); it is enabled once a code is confirmed.

    Needs the password, sent here or entered in this session in the last 10 minutes.
    """
    assert principal.user is not None  # Authenticated guarantees a user
    if principal.user.totp_enabled:
        raise ConflictError("two-factor sign-in is already on; turn it off before enrolling again")
    _require_recent_password(session, instance, principal, body.password if body else None)
    response.headers["Cache-Control"] = "no-store"
    enrollment = accounts.start_totp(principal.user, instance.keyring)
    return TotpStartOut(secret=enrollment.secret, uri=enrollment.uri)


@router.post("/totp/confirm", response_model=RecoveryCodesOut)
def totp_confirm(
    body: TotpConfirmIn,
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
    _require_recent_password(session, instance, principal, body.password)
    response.headers["Cache-Control"] = "no-store"
    codes = accounts.confirm_totp(principal.user, instance.keyring, body.code)
    record(
        session,
        principal.actor(address),
        "auth.totp_enabled",
        organization_id=None,
        target_type="user",
        target_id=principal.user.id,
    )
    return RecoveryCodesOut(recovery_codes=codes)
