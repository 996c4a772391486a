"""User accounts as an operator creates them (the CLI's ``paulyops users add``)."""

from __future__ import annotations

from pydantic import Field
from sqlalchemy.orm import Session

from paulyops.core.db.models import User
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts
from paulyops.services.commands import Command


class CreateUser(Command):
    """A new account: address, name, password (none: set later) and instance rights.

    The address, the name and the password are checked by :mod:`.accounts`' rules when
    the account is made (the operator's :class:`.members.NewUser` checks the first two
    before anyone types a password).
    """

    email: str
    name: str
    password: str | None = Field(None, repr=False)
    is_platform_admin: bool = False


def create_user(
    session: Session, command: CreateUser, *, hashing: PasswordHashing, actor: Actor
) -> User:
    """Create a user account (instance-level audit row without personal data).

    Raises:
        SpecValidationError: a bad e-mail address, name or password.
        ConflictError: an account with that address exists.
    """
    user = accounts.create_user(
        session,
        hashing,
        email=command.email,
        name=command.name,
        password=command.password,
        is_platform_admin=command.is_platform_admin,
    )
    record_created(session, actor, user)
    return user


def record_created(session: Session, actor: Actor, user: User) -> None:
    """Write the instance-level audit row of a new account (no personal data in it)."""
    actors.record(
        session,
        actor,
        "user.created",
        organization_id=None,
        target_type="user",
        target_id=user.id,
        changes={"is_platform_admin": user.is_platform_admin},
    )


__all__ = ["CreateUser", "create_user", "record_created"]
