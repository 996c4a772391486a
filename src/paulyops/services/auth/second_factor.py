"""The organization's "second factor for admins" rule: who it binds.

The rule binds by **permission**, not by rank: a member whose effective permissions in an
organization (their role, the roles below it, and live delegations) include any of
:data:`~paulyops.services.auth.permissions.SECOND_FACTOR_PERMISSIONS` must have TOTP on
while that organization's ``require_admin_2fa`` is set. Ranks are derived from
permissions and can be gamed by custom roles; a delegated ``security:update`` is just as
dangerous in a Viewer's hands as in an Admin's. Every credential is held to it: a
session of such a member acts with no permissions until they enrol, and their API tokens
are refused (see ``web/auth.py``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from paulyops.core.db.models import Organization, User
from paulyops.services.auth import rbac, sessions
from paulyops.services.auth.permissions import SECOND_FACTOR_PERMISSIONS

ENROL_MESSAGE = (
    "your organization requires a second factor for members with admin permissions, and "
    "this account has none yet: sign in to the console and set up two-factor sign-in under "
    "Security; until then its API tokens are refused"
)


def holds_admin_permissions(grant: rbac.Grant) -> bool:
    """Whether the grant includes a permission the second-factor rule counts as admin."""
    return bool(grant.permissions & SECOND_FACTOR_PERMISSIONS)


def _rule_is_on(session: Session, organization_id: str) -> bool:
    # The same per-transaction read the session limits use: one query, not two.
    config = sessions.security_config(session, organization_id)
    return bool(config is not None and config.require_admin_2fa)


def is_second_factor_required(session: Session, grant: rbac.Grant) -> bool:
    """Whether the grant's organization requires this member to have a second factor."""
    return holds_admin_permissions(grant) and _rule_is_on(session, grant.organization_id)


def must_enrol_second_factor(session: Session, grant: rbac.Grant, user: User) -> bool:
    """Whether ``user`` must set up a second factor before acting with ``grant``."""
    return not user.totp_enabled and is_second_factor_required(session, grant)


def organizations_requiring_second_factor(session: Session, user_id: str) -> list[Organization]:
    """Return the organizations whose rule binds this user now (their TOTP must stay on)."""
    out = []
    for org, _role in rbac.memberships_of(session, user_id):
        grant = rbac.grant_for(session, org.id, user_id)
        if grant is not None and is_second_factor_required(session, grant):
            out.append(org)
    return out


__all__ = [
    "ENROL_MESSAGE",
    "holds_admin_permissions",
    "is_second_factor_required",
    "must_enrol_second_factor",
    "organizations_requiring_second_factor",
]
