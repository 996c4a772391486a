"""Old names of account, session and token use cases, for callers not switched yet.

The use cases live in their domain modules: sign-in and sessions in :mod:`.signin`,
passwords in :mod:`.passwords`, users in :mod:`.users`, members in :mod:`.members`, roles
in :mod:`.roles`, delegations in :mod:`.delegations`, API tokens in :mod:`.tokens`. The
names kept here delegate to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    User,
    WebSession,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.security.csrf import CsrfTokens
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services.actor import Actor
from paulyops.services.auth import passwords, rbac, tokens
from paulyops.services.auth.passwords import PasswordChange, PasswordReset, reset_password
from paulyops.services.auth.signin import revoke_own_session, sign_out, switch_organization
from paulyops.services.auth.users import create_user
from paulyops.services.commands import parse

# --- sign-in, sessions and passwords: moved to their domain modules -----------------------
# ``signin``, ``passwords`` and ``users`` hold these use cases now; the names stay here for
# the callers not switched yet (console security and org pages, ``cli/users.py``).


def change_password(
    session: Session,
    *,
    hashing: PasswordHashing,
    limiter: RateLimiter,
    csrf: CsrfTokens,
    user: User,
    current_password: str,
    new_password: str,
    current: WebSession | None,
    actor: Actor,
) -> PasswordChange:
    """Change a password: :func:`paulyops.services.auth.passwords.change_password`."""
    command = passwords.ChangePasswordCommand(
        current_password=current_password, new_password=new_password
    )
    return passwords.change_password(
        session,
        command,
        hashing=hashing,
        limiter=limiter,
        csrf=csrf,
        user=user,
        current=current,
        actor=actor,
    )


# --- API tokens -----------------------------------------------------------------------
# The token use cases live in :mod:`paulyops.services.auth.tokens`; these names stay for
# callers not yet moved to them (the console's token form).

revoke_token = tokens.revoke_token


def create_token(
    scope: OrgScope,
    *,
    grant: rbac.Grant,
    name: str,
    permissions: Iterable[str],
    expires_at: datetime | None,
    actor: Actor,
) -> tokens.IssuedToken:
    """Create an API token through :func:`tokens.create_token` (kept for older callers).

    Raises:
        CommandError: the input breaks a rule of :class:`tokens.CreateToken`.
        PermissionDeniedError: a permission the user lacks or holds only by delegation.
    """
    command = parse(
        tokens.CreateToken,
        {"name": name, "permissions": list(permissions), "expires_at": expires_at},
    )
    return tokens.create_token(scope, grant=grant, command=command, actor=actor)


__all__ = [
    "PasswordChange",
    "PasswordReset",
    "change_password",
    "create_token",
    "create_user",
    "reset_password",
    "revoke_own_session",
    "revoke_token",
    "sign_out",
    "switch_organization",
]
