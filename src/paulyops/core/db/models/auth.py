"""Credentials: browser sessions, API tokens and the first-run setup token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import Base, TimestampMixin, encrypted_column, id_column
from paulyops.core.db.models.org import OrgScoped


class WebSession(TimestampMixin, Base):
    """A signed-in browser session, bound to one active organization.

    Only the sha256 of the session id is stored, so a database leak yields no usable
    cookie. ``csrf_token_hash`` is the fallback for CSRF checks when Redis is down.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = id_column("ses")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(20), default="user")
    csrf_token_hash: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # When the user last entered their password in this session (sign-in, or again for a
    # sensitive action): recent authentication, see services/auth/reauth.py.
    password_confirmed_at: Mapped[datetime | None]


class ApiToken(OrgScoped, TimestampMixin, Base):
    """A bearer token for API clients; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = id_column("tok")
    name: Mapped[str] = mapped_column(String(120))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    permissions: Mapped[list[str]] = mapped_column(default=list)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SetupToken(TimestampMixin, Base):
    """The first-run unlock key: valid 24 h, consumed by a successful provision."""

    __tablename__ = "setup_tokens"

    id: Mapped[str] = id_column("stk")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]
    consumed_by_org_id: Mapped[str | None] = mapped_column(String(40))


class WizardDraft(TimestampMixin, Base):
    """The web setup wizard's answers so far, encrypted, bound to its setup session."""

    __tablename__ = "wizard_drafts"

    id: Mapped[str] = id_column("wzd")
    session_id: Mapped[str] = mapped_column(
        ForeignKey("web_sessions.id", ondelete="CASCADE"), unique=True
    )
    setup_token_id: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[bytes | None] = encrypted_column()
    expires_at: Mapped[datetime]


class Invitation(OrgScoped, TimestampMixin, Base):
    """An offer to join one organization with one role, accepted through an opaque link.

    Only the sha256 of the link's token is stored. ``user_id`` is set when the address
    already had an account when the invitation was made: that account may then see and
    accept it after signing in. An invitation made for an address without an account is
    accepted only through its own link (see ``docs/security/invitations.md``).
    """

    __tablename__ = "invitations"

    id: Mapped[str] = id_column("inv")
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    invited_by_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    declined_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class PasswordLink(TimestampMixin, Base):
    """A one-time link to set the first password of an account (a new owner's).

    The link carries only an opaque random token; the row keeps its sha256.
    """

    __tablename__ = "password_links"

    id: Mapped[str] = id_column("pwl")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class AuthState(Base):
    """One row: the generation of everything a request's principal is built from.

    Any committed change to a credential, a user, a membership, a role, a delegation or an
    organization's security settings adds one (see :mod:`paulyops.core.db.generation`), so
    a process that cached a principal knows with one indexed read whether it is stale.
    The row is created by the first change; a missing row reads as generation 0.
    """

    __tablename__ = "auth_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


__all__ = [
    "ApiToken",
    "AuthState",
    "Invitation",
    "PasswordLink",
    "SetupToken",
    "WebSession",
    "WizardDraft",
]
