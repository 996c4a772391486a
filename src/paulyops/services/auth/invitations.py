"""Invitations: how a person joins an organization (see ``docs/security/invitations.md``).

An invitation is a row bound to one organization, one address, one role, its inviter and
an expiry; its link carries only an opaque token, stored as a hash. The link is handed to
the inviter (there is no mail server to send it), so it is treated as something the
inviter could misuse, and it grants exactly one thing: joining *that* organization.

* For an address with no account when the link is used, the link creates the account
  (the person chooses a password) and joins only that organization.
* For an address that has an account, nothing happens until the account's own holder
  signs in with their own credentials and accepts. An invitation made after the account
  existed is addressed to it (``user_id``) and is listed for it; one made before it
  existed is accepted only through its own link, so an account created through one
  organization's link never sees, let alone accepts, another organization's offer.
* Accepting never touches another organization's membership, and never moves the
  person's default organization.
* What the inviter is told is the same whether or not the address has an account.

Every create, accept, decline and revoke writes one audit row in the organization's
chain (no addresses in it: rows carry ids only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import Field, SecretStr
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from paulyops.core.db.models import Invitation, Membership, Organization, Role, User, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, links, rbac, users
from paulyops.services.auth.members import EmailAddress, PersonName
from paulyops.services.commands import Command

INVITATION_TTL = timedelta(days=7)
INVITATION_PATH = "/invitation"
NOT_VALID = "this invitation link is not valid, or it was revoked or already used"
INVITER_GONE = (
    "this invitation's inviter can no longer make it (they left, changed role, or their "
    "delegation ended); ask for a new one"
)


class Invite(Command):
    """Whom to invite, and into which role."""

    email: EmailAddress
    name: PersonName
    role_id: str = Field(max_length=40, title="Role")


class InvitationToken(Command):
    """An invitation link's token (the ``token`` query parameter of the link)."""

    token: str = Field(max_length=200, repr=False)


class AcceptAsNewAccount(InvitationToken):
    """The new account's name and password, chosen through the invitation link."""

    name: str = Field("", max_length=200, description="default: the name the inviter gave")
    password: SecretStr = Field(max_length=1024)


@dataclass(frozen=True, slots=True)
class PendingInvitation:
    """A pending invitation of the organization, for display (never its link)."""

    id: str
    email: str
    name: str
    role_id: str
    role_name: str
    role_rank: int
    invited_by_user_id: str | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CreatedInvitation:
    """A new invitation and its link (shown once: only the token's hash is kept)."""

    invitation: PendingInvitation
    link: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class InvitationView:
    """An invitation with the names a page shows for it."""

    invitation: Invitation
    organization: Organization
    role: Role


def is_pending(row: Invitation, *, now: datetime | None = None) -> bool:
    """Whether the invitation can still be accepted (not used, revoked or expired)."""
    now = now or utcnow()
    return (
        row.accepted_at is None
        and row.declined_at is None
        and row.revoked_at is None
        and row.expires_at > now
    )


def state_of(row: Invitation) -> str:
    """Return ``pending``, ``accepted``, ``declined``, ``revoked`` or ``expired``."""
    if row.accepted_at is not None:
        return "accepted"
    if row.declined_at is not None:
        return "declined"
    if row.revoked_at is not None:
        return "revoked"
    return "pending" if is_pending(row) else "expired"


def _claim(session: Session, row: Invitation, **values: object) -> None:
    """End a pending invitation in one guarded UPDATE, or refuse: the first answer wins.

    Two requests may both have read the row as pending (two accepts, an accept racing a
    revoke or a decline). The UPDATE only matches while the row is still pending in the
    database, and a concurrent writer's row lock makes the second one wait and then see
    the first one's answer; so an invitation is accepted, declined or revoked exactly once.

    Raises:
        ConflictError: the invitation was answered, revoked or expired meanwhile.
    """
    result = session.execute(
        update(Invitation)
        .where(
            Invitation.id == row.id,
            Invitation.organization_id == row.organization_id,
            Invitation.accepted_at.is_(None),
            Invitation.declined_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        session.refresh(row)
        raise ConflictError(f"that invitation is no longer pending (it is {state_of(row)})")
    for key, value in values.items():
        set_committed_value(row, key, value)


def _check_role(
    scope: OrgScope,
    grant: rbac.Grant | None,
    role_id: str,
    *,
    verb: str = "invite someone into",
    what: str = "the role you invite into",
) -> Role:
    role = scope.first(Role, Role.id == role_id) if role_id else None
    if role is None:
        raise SpecValidationError(
            "choose a role", [FieldError("roleId", "expected one of the organization's roles")]
        )
    if grant is None:
        return role
    if role.rank > grant.role_rank:
        raise PermissionDeniedError(f"you cannot {verb} a role above your own")
    org = scope.session.get(Organization, scope.organization_id)
    model = org.rbac_model if org is not None else "simple"
    # Only what the inviter holds through their own role may be handed on: a delegation
    # lends permissions for a while and must not outlive itself in someone else's role.
    rbac.refuse_ungrantable(grant, rbac.role_permissions(scope, role, model), what)
    return role


def create_invitation(
    scope: OrgScope,
    *,
    grant: rbac.Grant | None,
    command: Invite,
    public_url: str,
    actor: Actor,
) -> CreatedInvitation:
    """Invite an address into the organization with a role; return the link (shown once).

    The result is the same whether or not the address has an account: the link leads to
    account creation (new address) or to sign-in-and-accept (existing account). A pending
    invitation of the same address here is replaced (its link stops working).

    Args:
        grant: what the inviter may do here; ``None`` for the operator at the CLI (local
            access to the instance), who may invite into any role.

    Raises:
        SpecValidationError: not one of the organization's roles (field ``roleId``).
        PermissionDeniedError: the role ranks above the inviter's own, or holds permissions
            the inviter lacks.
        ConflictError: the person is already a member of this organization.
    """
    # The command has checked and normalized the address and the name.
    clean_email, clean_name = command.email, command.name
    role = _check_role(scope, grant, command.role_id)
    user = accounts.find_user(scope.session, clean_email)
    if user is not None and scope.first(Membership, Membership.user_id == user.id) is not None:
        # Membership of this organization is visible to its admins on the member list anyway.
        raise ConflictError("that person is already a member of this organization")
    now = utcnow()
    superseded = [
        row
        for row in scope.list(Invitation, Invitation.email == clean_email)
        if is_pending(row, now=now)
    ]
    for row in superseded:
        row.revoked_at = now
    token, token_hash = links.new_token()
    row = scope.add(
        Invitation(
            email=clean_email,
            name=clean_name,
            role_id=role.id,
            invited_by_user_id=grant.user_id if grant is not None else None,
            user_id=user.id if user is not None else None,
            token_hash=token_hash,
            expires_at=now + INVITATION_TTL,
        )
    )
    scope.session.flush()
    actors.record(
        scope.session,
        actor,
        "invitation.created",
        organization_id=scope.organization_id,
        target_type="invitation",
        target_id=row.id,
        changes={
            "role_id": role.id,
            "expires_at": row.expires_at.isoformat(),
            "replaces": [old.id for old in superseded],
        },
    )
    return CreatedInvitation(_pending(row, role), links.link(public_url, INVITATION_PATH, token))


def _pending(row: Invitation, role: Role | None) -> PendingInvitation:
    return PendingInvitation(
        id=row.id,
        email=row.email,
        name=row.name,
        role_id=row.role_id,
        role_name=role.name if role is not None else "?",
        role_rank=role.rank if role is not None else 0,
        invited_by_user_id=row.invited_by_user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def list_pending(scope: OrgScope) -> list[PendingInvitation]:
    """Return the organization's invitations that can still be accepted, newest first."""
    now = utcnow()
    roles = {role.id: role for role in scope.list(Role)}
    rows = scope.list(Invitation, order_by=Invitation.created_at.desc())
    return [_pending(row, roles.get(row.role_id)) for row in rows if is_pending(row, now=now)]


def revoke_invitation(
    scope: OrgScope, *, grant: rbac.Grant | None, invitation_id: str, actor: Actor
) -> Invitation:
    """Revoke a pending invitation of the organization: its link grants nothing any more.

    Args:
        grant: what the caller may do here; ``None`` for the operator at the CLI.

    Raises:
        NotFoundError: no such invitation here (another organization's ids are not found).
        PermissionDeniedError: the invitation's role ranks above the caller's own, or holds
            permissions the caller lacks (or holds only by delegation).
        ConflictError: it was already accepted, declined, revoked, or it expired.
    """
    row = scope.get(Invitation, invitation_id)
    # Nobody revokes an invitation they could not have made (the same rank and
    # permission rule as inviting).
    _check_role(
        scope,
        grant,
        row.role_id,
        verb="revoke an invitation into",
        what="the role of an invitation you revoke",
    )
    state = state_of(row)
    if state != "pending":
        raise ConflictError(f"that invitation is no longer pending (it is {state})")
    _claim(scope.session, row, revoked_at=utcnow())
    actors.record(
        scope.session,
        actor,
        "invitation.revoked",
        organization_id=scope.organization_id,
        target_type="invitation",
        target_id=row.id,
    )
    return row


# --- the invited person's side ----------------------------------------------------------


def _by_token(session: Session, token: str) -> Invitation:
    row = (
        session.scalars(
            select(Invitation).where(Invitation.token_hash == links.hash_token(token))
        ).first()
        if token and len(token) <= links.MAX_TOKEN_LENGTH
        else None
    )
    if row is None or row.accepted_at or row.declined_at or row.revoked_at:
        raise PermissionDeniedError(NOT_VALID)
    if not is_pending(row):
        raise PermissionDeniedError("this invitation has expired; ask for a new one")
    return row


def _backed(session: Session, row: Invitation) -> bool:
    """Whether the invitation's inviter could still make it now.

    The link was handed to the inviter, so it is only as good as the inviter's standing:
    one who was removed, deactivated, demoted below the role, or whose lent
    ``members:invite`` ended, must not keep a way back in through a link they hold.
    The operator's invitations (the CLI, no inviter) stand on their own.
    """
    if row.invited_by_user_id is None:
        return True
    inviter = session.get(User, row.invited_by_user_id)
    if inviter is None or not inviter.is_active:
        return False
    grant = rbac.grant_for(session, row.organization_id, inviter.id)
    if grant is None or "members:invite" not in grant.permissions:
        return False
    try:
        _check_role(OrgScope(session, row.organization_id), grant, row.role_id)
    except (PermissionDeniedError, SpecValidationError):
        return False
    return True


def _require_backed(session: Session, row: Invitation) -> Invitation:
    if not _backed(session, row):
        raise PermissionDeniedError(INVITER_GONE)
    return row


def _view(session: Session, row: Invitation) -> InvitationView:
    org = session.get(Organization, row.organization_id)
    role = session.get(Role, row.role_id)
    if org is None or role is None:
        raise PermissionDeniedError(NOT_VALID)
    return InvitationView(row, org, role)


def view_invitation(session: Session, token: str) -> tuple[InvitationView, bool]:
    """Return what a link offers, and whether its address already has an account.

    Whoever holds the link sees which of the two pages it leads to (choose a password, or
    sign in and accept); the inviter's own response never tells.

    Raises:
        PermissionDeniedError: the link is unknown, revoked, used or expired, or its inviter
            could no longer make it.
    """
    row = _require_backed(session, _by_token(session, token))
    return _view(session, row), accounts.find_user(session, row.email) is not None


def pending_for_user(session: Session, user: User) -> list[InvitationView]:
    """Return the invitations addressed to this account that it may accept after sign-in.

    Only invitations made while the account existed are addressed to it; one made for the
    address before the account existed needs its own link (see the module docstring).
    """
    rows = session.scalars(
        select(Invitation)
        .where(Invitation.user_id == user.id, Invitation.email == user.email)
        .order_by(Invitation.created_at.desc())
    ).all()
    now = utcnow()
    return [
        _view(session, row) for row in rows if is_pending(row, now=now) and _backed(session, row)
    ]


def _for_user(
    session: Session, user: User, *, token: str | None, invitation_id: str | None
) -> Invitation:
    if token is not None:
        row = _by_token(session, token)
        if row.email != user.email or row.user_id not in (None, user.id):
            raise PermissionDeniedError(
                "this invitation is for another address: sign in with the invited account"
            )
        return row
    row_or_none = session.get(Invitation, invitation_id) if invitation_id else None
    if row_or_none is None or row_or_none.user_id != user.id or not is_pending(row_or_none):
        raise NotFoundError(f"invitation {invitation_id!r} not found")
    return row_or_none


def _join(session: Session, row: Invitation, user: User, actor: Actor) -> Membership:
    scope = OrgScope(session, row.organization_id)
    if scope.first(Membership, Membership.user_id == user.id) is not None:
        raise ConflictError(
            "you are already a member of this organization; your role there is unchanged"
        )
    _claim(session, row, accepted_at=utcnow(), accepted_by_user_id=user.id)
    return _joined(scope, row, user, actor)


def _joined(scope: OrgScope, row: Invitation, user: User, actor: Actor) -> Membership:
    membership = rbac.add_member(scope, user.id, row.role_id)
    actors.record(
        scope.session,
        actor,
        "invitation.accepted",
        organization_id=row.organization_id,
        target_type="invitation",
        target_id=row.id,
        changes={"user_id": user.id, "membership_id": membership.id, "role_id": row.role_id},
    )
    return membership


def accept_as_new_account(
    session: Session,
    *,
    hashing: PasswordHashing,
    command: AcceptAsNewAccount,
    address: str | None,
) -> tuple[User, Membership]:
    """Create the invited address's account with a password and join this organization only.

    The name and password are checked before the invitation is claimed, and the claim
    comes before the account: of two concurrent uses of one link, one creates the account
    and the other is refused (nothing half-made is left behind).

    Raises:
        PermissionDeniedError: the link is unknown, revoked, used or expired, or its inviter
            could no longer make it.
        ConflictError: the address has an account now (its holder signs in to accept), or
            the link was used meanwhile.
        SpecValidationError: a bad name or a password that breaks the policy.
    """
    row = _require_backed(session, _by_token(session, command.token))
    if accounts.find_user(session, row.email) is not None:
        raise ConflictError("this address has an account: sign in with it to accept")
    chosen = command.name or row.name
    password = command.password.get_secret_value()
    accounts.check_new_password(password, email=row.email, name=chosen)
    _claim(session, row, accepted_at=utcnow())
    user = accounts.create_user(session, hashing, email=row.email, name=chosen, password=password)
    row.accepted_by_user_id = user.id
    actor = Actor("user", user.id, address)
    users.record_created(session, actor, user)
    return user, _joined(OrgScope(session, row.organization_id), row, user, actor)


def accept_invitation(
    session: Session,
    *,
    user: User,
    actor: Actor,
    token: str | None = None,
    invitation_id: str | None = None,
) -> Membership:
    """Accept an invitation as the signed-in ``user`` (by its link's token, or by id).

    By id, only invitations addressed to this account are found; by token, the link's
    address must be this account's.

    Raises:
        NotFoundError: no such invitation addressed to this account.
        PermissionDeniedError: the link is invalid, or for another address, or the
            invitation's inviter could no longer make it.
        ConflictError: the user is already a member of that organization.
    """
    row = _require_backed(
        session, _for_user(session, user, token=token, invitation_id=invitation_id)
    )
    return _join(session, row, user, actor)


def decline_invitation(
    session: Session,
    *,
    user: User,
    actor: Actor,
    token: str | None = None,
    invitation_id: str | None = None,
) -> Invitation:
    """Decline an invitation as the signed-in ``user``; its link then grants nothing.

    Raises:
        NotFoundError: no such invitation addressed to this account.
        PermissionDeniedError: the link is invalid, or for another address.
    """
    row = _for_user(session, user, token=token, invitation_id=invitation_id)
    _claim(session, row, declined_at=utcnow())
    actors.record(
        session,
        actor,
        "invitation.declined",
        organization_id=row.organization_id,
        target_type="invitation",
        target_id=row.id,
    )
    return row


__all__ = [
    "INVITATION_PATH",
    "INVITATION_TTL",
    "AcceptAsNewAccount",
    "CreatedInvitation",
    "InvitationToken",
    "InvitationView",
    "Invite",
    "PendingInvitation",
    "accept_as_new_account",
    "accept_invitation",
    "create_invitation",
    "decline_invitation",
    "is_pending",
    "list_pending",
    "pending_for_user",
    "revoke_invitation",
    "state_of",
    "view_invitation",
]
