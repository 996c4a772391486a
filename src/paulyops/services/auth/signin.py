"""Signing in and out: the password step, the second-factor step, one's own sessions.

Each use case takes a command (the JSON API's body, the console's parsed form), checks
it, changes the session rows and writes its own audit row in the caller's transaction.
A refused attempt records a ``failure`` row and raises
:class:`~paulyops.core.errors.AuthenticationError`: the web layer's write session
(``WriteSession``) commits that row before answering 401.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import Membership, User, WebSession, utcnow
from paulyops.core.errors import AuthenticationError, NotFoundError
from paulyops.core.logging import security_event
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.csrf import CsrfTokens
from paulyops.core.security.csrf import hash_token as csrf_hash
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, rbac, reauth, second_factor, sessions
from paulyops.services.auth.accounts import OneTimeCode
from paulyops.services.commands import Command
from paulyops.services.views import View

MAX_EMAIL = 320
MAX_PASSWORD = 1024
MAX_CODE = 40  # a recovery code with dashes and spaces, in any script's digits
NO_PENDING_SIGN_IN = "there is no sign-in waiting for a code; sign in again"


class SignInCommand(Command):
    """Credentials, and optionally the organization to start in."""

    email: str = Field(max_length=MAX_EMAIL)
    password: str = Field(max_length=MAX_PASSWORD, repr=False)
    organization_id: str | None = Field(None, max_length=40)


class SecondFactorCommand(Command):
    """A TOTP or recovery code."""

    code: OneTimeCode = Field(max_length=MAX_CODE, repr=False)


class UserView(View):
    """A signed-in user as interfaces show them."""

    id: str
    email: str
    name: str
    is_platform_admin: bool
    totp_enabled: bool


def user_view(user: User) -> UserView:
    """Return the display view of ``user``."""
    return UserView(
        id=user.id,
        email=user.email,
        name=user.name,
        is_platform_admin=user.is_platform_admin,
        totp_enabled=user.totp_enabled,
    )


@dataclass(frozen=True, slots=True)
class SignIn:
    """A successful sign-in step: the new session, its cookie and CSRF token.

    ``must_enrol_second_factor``: the session's organization requires a second factor
    this member has not set up yet (their session may only do that, and sign out).
    """

    user: UserView
    session: WebSession
    cookie: str = field(repr=False)
    csrf_token: str = field(repr=False)
    needs_second_factor: bool
    must_enrol_second_factor: bool = False

    @property
    def organization_id(self) -> str | None:
        """The organization the session is bound to."""
        return self.session.organization_id


def _bind_csrf(csrf: CsrfTokens, row: WebSession) -> str:
    token = csrf.issue(row.id)
    row.csrf_token_hash = csrf_hash(token)
    return token


def _default_org(session: Session, user: User, wanted: str | None) -> str | None:
    """Return the organization a new session starts in.

    The default is the organization the user joined first (oldest membership): joining
    another one later, through an invitation say, never moves it.
    """
    rows = session.execute(
        select(Membership.organization_id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at, Membership.id)
    ).all()
    orgs = [org_id for (org_id,) in rows]
    if wanted is not None:
        return wanted if wanted in orgs else None
    return orgs[0] if orgs else None


def sign_in(
    session: Session,
    command: SignInCommand,
    *,
    hashing: PasswordHashing,
    limiter: RateLimiter,
    csrf: CsrfTokens,
    actor: Actor,
    previous: WebSession | None = None,
    user_agent: str | None = None,
) -> SignIn:
    """Check credentials (throttled per address and per account) and open a session.

    The session id is always new (any previous session of this browser is revoked). With
    TOTP enabled the session is only ``pending_2fa`` until :func:`complete_second_factor`.

    Raises:
        RateLimitedError: too many attempts from this address or for this account.
        ServiceUnavailableError: Redis is configured but down (sign-in fails closed).
        AuthenticationError: one generic message for every wrong combination.
    """
    address = actor.address or "unknown"
    email = command.email
    limiter.enforce("signin", f"addr:{address}", address=address)
    limiter.enforce("signin_account", f"acct:{accounts.normalize_email(email)}", address=address)
    try:
        checked = accounts.check_credentials(
            session, hashing, email=email, password=command.password
        )
    except AuthenticationError:
        security_event("auth.sign_in_failed", address=address)
        actors.record(session, actor, "auth.sign_in", organization_id=None, outcome="failure")
        raise
    user = checked.user
    org_id = _default_org(session, user, command.organization_id)
    if previous is not None:
        previous.revoked_at = previous.revoked_at or utcnow()
        csrf.revoke(previous.id)
    kind: sessions.SessionKind = "pending_2fa" if checked.needs_second_factor else "user"
    new = sessions.create_session(
        session,
        user_id=user.id,
        organization_id=org_id,
        kind=kind,
        client_address=actor.address,
        user_agent=user_agent,
    )
    token = _bind_csrf(csrf, new.row)
    # The password was just entered: recent authentication for the next minutes.
    reauth.mark_password_confirmed(new.row)
    if kind == "user":
        accounts.record_sign_in(user)
    actors.record(
        session,
        Actor("user", user.id, actor.address),
        "auth.sign_in",
        organization_id=None,
        target_type="session",
        target_id=new.row.id,
        changes={"second_factor_pending": checked.needs_second_factor},
    )
    return SignIn(
        user_view(user),
        new.row,
        new.token,
        token,
        checked.needs_second_factor,
        kind == "user" and second_factor.enrolment_pending(session, user, org_id),
    )


def pending_sign_in(session: Session, cookie: str) -> WebSession | None:
    """Return the sign-in waiting for its second factor that ``cookie`` names, if any."""
    row = sessions.resolve_session(session, cookie)
    return row if row is not None and row.kind == "pending_2fa" else None


def complete_second_factor(
    session: Session,
    command: SecondFactorCommand,
    *,
    cookie: str,
    keyring: KeyRing,
    limiter: RateLimiter,
    csrf: CsrfTokens,
    address: str | None,
) -> SignIn:
    """Finish a sign-in with a TOTP or recovery code, rotating to a full session.

    Args:
        cookie: the session cookie of the browser whose password step passed.

    Raises:
        AuthenticationError: no pending sign-in, or a wrong code.
    """
    pending = pending_sign_in(session, cookie)
    if pending is None or pending.user_id is None:
        raise AuthenticationError(NO_PENDING_SIGN_IN)
    actor = Actor("anonymous", pending.user_id, address)
    limiter.enforce("signin_account", f"2fa:{pending.user_id}", address=address)
    user = accounts.get_user(session, pending.user_id)
    if not accounts.verify_totp(user, keyring, command.code):
        security_event("auth.second_factor_failed", user_id=user.id, address=address)
        actors.record(session, actor, "auth.second_factor", organization_id=None, outcome="failure")
        raise AuthenticationError("that code is not correct")
    csrf.revoke(pending.id)
    new = sessions.rotate_session(session, pending, kind="user")
    token = _bind_csrf(csrf, new.row)
    accounts.record_sign_in(user)
    actors.record(
        session,
        Actor("user", user.id, address),
        "auth.second_factor",
        organization_id=None,
        target_type="session",
        target_id=new.row.id,
    )
    return SignIn(
        user_view(user),
        new.row,
        new.token,
        token,
        False,
        second_factor.enrolment_pending(session, user, new.row.organization_id),
    )


def sign_out(session: Session, *, csrf: CsrfTokens, row: WebSession, actor: Actor) -> None:
    """End a session on the server."""
    sessions.revoke_session(session, row.id)
    csrf.revoke(row.id)
    actors.record(
        session,
        actor,
        "auth.sign_out",
        organization_id=None,
        target_type="session",
        target_id=row.id,
    )


class SessionView(View):
    """One of a user's live browser sessions."""

    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    client_address: str | None
    user_agent: str | None
    current: bool


def own_sessions(session: Session, user_id: str, *, current_id: str | None) -> list[SessionView]:
    """Return the user's live browser sessions, newest first (``current`` marks this one)."""
    return [
        SessionView(
            id=row.id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
            client_address=row.client_address,
            user_agent=row.user_agent,
            current=row.id == current_id,
        )
        for row in sessions.list_sessions(session, user_id)
    ]


def revoke_own_session(session: Session, *, user: User, session_id: str, actor: Actor) -> None:
    """Revoke one of the user's own sessions (e.g. a lost laptop).

    Raises:
        NotFoundError: no such session of this user.
    """
    sessions.revoke_session(session, session_id, user_id=user.id)
    actors.record(
        session,
        actor,
        "auth.session_revoked",
        organization_id=None,
        target_type="session",
        target_id=session_id,
    )


class SwitchOrganizationCommand(Command):
    """The organization to work in (an id; one the user is no member of is not found)."""

    organization_id: str


def switch_organization(
    session: Session,
    command: SwitchOrganizationCommand,
    *,
    csrf: CsrfTokens,
    current: WebSession,
    actor: Actor,
) -> tuple[sessions.NewSession, str]:
    """Bind the browser to another organization the user belongs to (rotates the session).

    Raises:
        NotFoundError: the user is no member of that organization.
    """
    organization_id = command.organization_id
    if current.user_id is None or rbac.grant_for(session, organization_id, current.user_id) is None:
        raise NotFoundError("organization not found")
    csrf.revoke(current.id)
    new = sessions.rotate_session(session, current, organization_id=organization_id)
    token = _bind_csrf(csrf, new.row)
    actors.record(
        session,
        actor,
        "auth.organization_switched",
        organization_id=organization_id,
        target_type="session",
        target_id=new.row.id,
    )
    return new, token


__all__ = [
    "MAX_CODE",
    "MAX_EMAIL",
    "MAX_PASSWORD",
    "NO_PENDING_SIGN_IN",
    "SecondFactorCommand",
    "SessionView",
    "SignIn",
    "SignInCommand",
    "SwitchOrganizationCommand",
    "UserView",
    "complete_second_factor",
    "own_sessions",
    "pending_sign_in",
    "revoke_own_session",
    "sign_in",
    "sign_out",
    "switch_organization",
    "user_view",
]
