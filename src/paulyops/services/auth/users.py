"""User accounts as an operator creates them (the CLI's ``paulyops users add``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from paulyops.core.db.models import User
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts


def create_user(
    session: Session,
    *,
    hashing: PasswordHashing,
    email: str,
    name: str,
    password: str | None,
    is_platform_admin: bool,
    actor: Actor,
) -> User:
    """Create a user account (instance-level audit row without personal data).

    Raises:
        SpecValidationError: a bad e-mail address, name or password.
        ConflictError: an account with that address exists.
    """
    user = accounts.create_user(
        session,
        hashing,
        email=email,
        name=name,
        password=password,
        is_platform_admin=is_platform_admin,
    )
    actors.record(
        session,
        actor,
        "user.created",
        organization_id=None,
        target_type="user",
        target_id=user.id,
        changes={"is_platform_admin": is_platform_admin},
    )
    return user


__all__ = ["create_user"]
