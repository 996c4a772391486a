"""Role-based access control: who holds which permission in which organization.

A member's *effective permissions* are their role's permissions, plus (enterprise) every
permission of the roles below it in the hierarchy, plus permissions delegated to them that
have not expired and that the delegator still holds. Only the first two are *grantable*:
a delegation lends power for a time, so what it lends can be used but never written into
a role, a role assignment, an API token or another delegation, where it would outlive the
delegation. Everything here goes through
:class:`~paulyops.core.db.scoped.OrgScope`, so a question about one organization can never
be answered with another organization's rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import Delegation, Membership, Organization, Role, User, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.services.auth.permissions import (
    OWNER,
    PLATFORM_PERMISSIONS,
    RbacModel,
    allows_custom_roles,
    is_hierarchical,
    role_templates,
    unknown_permissions,
)

# The one text of the one rule both a demotion and a removal check (DESIGN.md: the last
# Owner cannot be removed or demoted).
NEEDS_AN_OWNER = (
    "the organization needs an Owner: make someone else Owner before demoting or removing "
    "the last one"
)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one user may do in one organization.

    ``permissions`` is everything the user may use now (delegations included);
    ``grantable`` only what they hold through their own role, the most they may put into
    a role, an assignment, a token or a delegation. ``role_id`` is the role they hold,
    which they may not edit. A grant built without them can grant nothing.
    """

    organization_id: str
    user_id: str
    role_name: str
    role_rank: int
    permissions: frozenset[str]
    role_id: str = ""
    grantable: frozenset[str] = frozenset()


def seed_roles(scope: OrgScope, model: RbacModel | str) -> dict[str, Role]:
    """Create the built-in roles of ``model`` in the scope's organization.

    In the enterprise model each role's ``parent`` is the role directly above it, so a role
    inherits everything its descendants may do.
    """
    roles: dict[str, Role] = {}
    above: Role | None = None
    for template in role_templates(model):
        role = scope.add(
            Role(
                name=template.name,
                description=template.description,
                permissions=sorted(template.permissions),
                is_builtin=True,
                rank=template.rank,
            )
        )
        scope.session.flush()
        if is_hierarchical(model) and above is not None:
            role.parent_id = above.id
        roles[template.name] = role
        above = role
    return roles


def _expand(roles: list[Role], start: Role, hierarchical: bool) -> frozenset[str]:
    perms = set(start.permissions)
    if not hierarchical:
        return frozenset(perms)
    children: dict[str | None, list[Role]] = {}
    for role in roles:
        children.setdefault(role.parent_id, []).append(role)
    stack, seen = [start.id], {start.id}
    while stack:
        for child in children.get(stack.pop(), []):
            if child.id not in seen:
                seen.add(child.id)
                perms.update(child.permissions)
                stack.append(child.id)
    return frozenset(perms)


def role_permissions(scope: OrgScope, role: Role, model: RbacModel | str) -> frozenset[str]:
    """Return a role's permissions including (enterprise) those inherited from below."""
    return _expand(list(scope.list(Role)), role, is_hierarchical(model))


def grant_for(
    session: Session, organization_id: str, user_id: str, *, now: datetime | None = None
) -> Grant | None:
    """Return what ``user_id`` may do in ``organization_id``, or ``None`` if not a member."""
    now = now or utcnow()
    scope = OrgScope(session, organization_id)
    # The membership and its organization in one statement (every request's principal
    # resolves through here).
    found = session.execute(
        scope.select(Membership, Membership.user_id == user_id)
        .join(Organization, Organization.id == Membership.organization_id)
        .add_columns(Organization)
        .limit(1)
    ).first()
    if found is None:
        return None
    membership, org = found[0], found[1]
    roles = list(scope.list(Role))
    by_id = {role.id: role for role in roles}
    role = by_id[membership.role_id]
    hierarchical = is_hierarchical(org.rbac_model)
    own = _expand(roles, role, hierarchical)
    perms = set(own)
    if hierarchical:
        for delegation in scope.list(
            Delegation,
            Delegation.to_user_id == user_id,
            Delegation.revoked_at.is_(None),
            Delegation.expires_at > now,
        ):
            giver = scope.first(Membership, Membership.user_id == delegation.from_user_id)
            if giver is None:
                continue
            giver_perms = _expand(roles, by_id[giver.role_id], hierarchical)
            perms.update(set(delegation.permissions) & giver_perms)
    return Grant(
        organization_id,
        user_id,
        role.name,
        role.rank,
        frozenset(perms),
        role_id=role.id,
        grantable=frozenset(own),
    )


def member_rank(scope: OrgScope, user_id: str) -> int | None:
    """Return the rank of ``user_id``'s role here, or ``None`` if they are not a member."""
    membership = scope.first(Membership, Membership.user_id == user_id)
    if membership is None:
        return None
    return scope.get(Role, membership.role_id).rank


def refuse_ungrantable(actor: Grant, permissions: Iterable[str], what: str) -> None:
    """Refuse to put into ``what`` a permission the actor does not hold through their role.

    Raises:
        PermissionDeniedError: naming the permissions lacked, and those only delegated.
    """
    # Unknown names are for the vocabulary check to report (a 422 naming them).
    wanted = set(permissions) - set(unknown_permissions(list(permissions)))
    delegated = sorted((wanted & actor.permissions) - actor.grantable)
    lacking = sorted(wanted - actor.permissions)
    if lacking:
        raise PermissionDeniedError(
            f"{what} cannot hold permissions you lack ({', '.join(lacking)})"
        )
    if delegated:
        raise PermissionDeniedError(
            f"{what} cannot hold permissions you only hold by delegation "
            f"({', '.join(delegated)}): a delegation lends them to you until it ends"
        )


def memberships_of(session: Session, user_id: str) -> list[tuple[Organization, Role]]:
    """Return every organization the user belongs to, with their role there."""
    rows = session.execute(
        select(Organization, Role)
        .join(Membership, Membership.organization_id == Organization.id)
        .join(Role, Role.id == Membership.role_id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.name)
    ).all()
    return [(org, role) for org, role in rows]


# --- changing roles and members ---------------------------------------------------------


def org_model(scope: OrgScope) -> RbacModel:
    """Return the RBAC model of the scope's organization."""
    org = scope.session.get(Organization, scope.organization_id)
    return RbacModel(org.rbac_model if org is not None else RbacModel.SIMPLE.value)


def _check_grantable(
    scope: OrgScope, model: RbacModel | str, actor: Grant, perms: list[str], parent_id: str | None
) -> int:
    """Refuse permissions the actor could not hand out; return the role's rank.

    Nobody can create power they lack: instance-wide permissions never go into an
    organization role, a custom role holds only permissions its creator holds through
    their own role (never delegated ones), and (in a hierarchy) no more than the role
    above it. Its rank is that of the lowest built-in role holding all its permissions, so
    rank checks treat an admin-like custom role as an admin; a rank above the actor's own
    is refused, so nobody makes a role that outranks them.
    """
    platform = sorted(set(perms) & PLATFORM_PERMISSIONS)
    if platform:
        raise PermissionDeniedError(
            f"{', '.join(platform)} belong(s) to platform administrators, not to roles"
        )
    refuse_ungrantable(actor, perms, "a role")
    if parent_id is not None:
        parent = scope.get(Role, parent_id)
        above = role_permissions(scope, parent, model)
        beyond = sorted(set(perms) - above)
        if beyond:
            raise SpecValidationError(
                "role above lacks permissions",
                [
                    FieldError(
                        "permissions",
                        f"a role under {parent.name!r} may only hold what it holds; "
                        f"not {', '.join(beyond)}",
                    )
                ],
            )
    rank = max(template.rank for template in role_templates(model))
    for template in reversed(role_templates(model)):
        if set(perms) <= template.permissions:
            rank = template.rank
            break
    if rank > actor.role_rank:
        raise PermissionDeniedError(
            f"that role would rank {rank}, above your own role's rank {actor.role_rank}"
        )
    return rank


def create_custom_role(
    scope: OrgScope,
    model: RbacModel | str,
    *,
    actor: Grant,
    name: str,
    permissions: Iterable[str],
    description: str = "",
    parent_id: str | None = None,
) -> Role:
    """Create a custom role (granular and enterprise models).

    The name, description and permission vocabulary are the command's rules
    (:class:`paulyops.services.auth.roles.CreateRole`); this checks what depends on the
    organization and the actor.

    Raises:
        ConflictError: the simple model allows no custom roles, or the name is taken.
        PermissionDeniedError: a permission the actor lacks, or a platform permission.
        SpecValidationError: a parent outside the enterprise model, or beyond its parent.
    """
    if not allows_custom_roles(model):
        raise ConflictError(
            "the simple RBAC model has no custom roles; switch to granular or enterprise"
        )
    clean = name.strip()
    perms = sorted(set(permissions))
    if scope.first(Role, Role.name == clean) is not None:
        raise ConflictError(f"a role named {clean!r} already exists")
    if parent_id is not None and not is_hierarchical(model):
        raise SpecValidationError(
            "hierarchy needs the enterprise model",
            [FieldError("parentId", "only the enterprise model arranges roles in a hierarchy")],
        )
    rank = _check_grantable(scope, model, actor, perms, parent_id)
    role = scope.add(
        Role(
            name=clean,
            description=description.strip(),
            permissions=perms,
            parent_id=parent_id,
            rank=rank,
        )
    )
    scope.session.flush()
    return role


def update_role_permissions(
    scope: OrgScope,
    model: RbacModel | str,
    role_id: str,
    permissions: Iterable[str],
    *,
    actor: Grant,
) -> Role:
    """Replace a custom role's permissions; built-in roles cannot be edited.

    Nobody edits the role they hold: that would let them raise their own permissions and
    rank (with a delegated ``roles:manage``, beyond the delegation's end).

    Raises:
        ConflictError: a built-in role.
        PermissionDeniedError: the actor's own role, a role ranked above them, or a
            permission they do not hold through their own role.
    """
    role = scope.get(Role, role_id)
    if role.is_builtin:
        raise ConflictError(f"the built-in role {role.name!r} cannot be changed")
    if role.id == actor.role_id:
        raise PermissionDeniedError(
            f"you cannot change {role.name!r}: it is your own role; ask someone ranked above you"
        )
    if role.rank > actor.role_rank:
        raise PermissionDeniedError("you cannot change a role ranked above your own")
    perms = sorted(set(permissions))
    role.rank = _check_grantable(scope, model, actor, perms, role.parent_id)
    role.permissions = perms
    return role


def delete_role(scope: OrgScope, role_id: str, *, actor: Grant | None) -> None:
    """Delete a custom role nobody holds.

    Args:
        actor: the member deleting it; ``None`` for the local operator (CLI).

    Raises:
        PermissionDeniedError: the role ranks above the actor's own.
        ConflictError: a built-in role, or one still assigned.
    """
    role = scope.get(Role, role_id)
    if role.is_builtin:
        raise ConflictError(f"the built-in role {role.name!r} cannot be deleted")
    if actor is not None and role.rank > actor.role_rank:
        raise PermissionDeniedError("you cannot delete a role ranked above your own")
    if scope.count(Membership, Membership.role_id == role.id):
        raise ConflictError(f"role {role.name!r} is still assigned; move its members first")
    for child in scope.list(Role, Role.parent_id == role.id):
        child.parent_id = role.parent_id
    scope.delete(role)


def _owner_count(scope: OrgScope) -> int:
    """Count the Owners, locking their memberships (PostgreSQL) until the caller commits.

    Without the lock two concurrent demotions could each see two Owners and leave none.
    """
    owner = scope.first(Role, Role.name == OWNER, Role.is_builtin.is_(True))
    if owner is None:
        return 0
    rows = scope.session.scalars(
        scope.select(Membership, Membership.role_id == owner.id).with_for_update()
    ).all()
    return len(rows)


def _refuse_last_owner(scope: OrgScope, role: Role) -> None:
    """Refuse to take ``role`` from its holder when it is the Owner role held only once."""
    if role.name == OWNER and role.is_builtin and _owner_count(scope) <= 1:
        raise PermissionDeniedError(NEEDS_AN_OWNER)


def add_member(scope: OrgScope, user_id: str, role_id: str) -> Membership:
    """Add a user to the organization with a role."""
    scope.get(Role, role_id)
    if scope.first(Membership, Membership.user_id == user_id) is not None:
        raise ConflictError("that person is already a member")
    if scope.session.get(User, user_id) is None:
        raise NotFoundError(f"user {user_id!r} not found")
    membership = scope.add(Membership(user_id=user_id, role_id=role_id))
    scope.session.flush()
    return membership


def change_member_role(
    scope: OrgScope, actor: Grant, membership_id: str, role_id: str
) -> Membership:
    """Give a member another role.

    Raises:
        PermissionDeniedError: the actor would grant a role above their own, or the last
            Owner would be demoted.
    """
    membership = scope.get(Membership, membership_id)
    new_role = scope.get(Role, role_id)
    old_role = scope.get(Role, membership.role_id)
    if new_role.rank > actor.role_rank or old_role.rank > actor.role_rank:
        raise PermissionDeniedError("you cannot assign or change a role above your own")
    model = org_model(scope)
    beyond = sorted(role_permissions(scope, new_role, model) - actor.grantable)
    if beyond:
        raise PermissionDeniedError(
            "you cannot assign a role with permissions you do not hold through your own "
            f"role ({', '.join(beyond)})"
        )
    if new_role.id != old_role.id:
        _refuse_last_owner(scope, old_role)
    membership.role_id = new_role.id
    return membership


def remove_member(scope: OrgScope, actor: Grant, membership_id: str) -> str:
    """Remove a member; returns the removed user's id.

    Raises:
        PermissionDeniedError: removing someone ranked above the actor, or the last Owner.
    """
    membership = scope.get(Membership, membership_id)
    role = scope.get(Role, membership.role_id)
    if role.rank > actor.role_rank:
        raise PermissionDeniedError("you cannot remove someone ranked above you")
    _refuse_last_owner(scope, role)
    user_id = membership.user_id
    for delegation in scope.list(Delegation, Delegation.to_user_id == user_id):
        delegation.revoked_at = utcnow()
    scope.delete(membership)
    return user_id


def delegate(
    scope: OrgScope,
    model: RbacModel | str,
    giver: Grant,
    *,
    to_user_id: str,
    permissions: Iterable[str],
    expires_at: datetime,
) -> Delegation:
    """Delegate a subset of the giver's own permissions to another member for a time.

    Only permissions held through the giver's own role can be delegated: a delegated
    permission is not passed on (it would not count anyway, see :func:`grant_for`).

    The expiry bounds and the permission vocabulary are the command's rules
    (:class:`paulyops.services.auth.delegations.Delegate`).

    Raises:
        ConflictError: not the enterprise model.
        PermissionDeniedError: a permission the giver does not hold through their own role.
        SpecValidationError: a delegation to oneself.
    """
    if not is_hierarchical(model):
        raise ConflictError("delegation needs the enterprise RBAC model")
    perms = sorted(set(permissions))
    lacking = sorted(set(perms) - giver.grantable)
    if lacking:
        raise PermissionDeniedError(
            "you can only delegate permissions you hold through your own role "
            f"(not {', '.join(lacking)})"
        )
    if to_user_id == giver.user_id:
        raise SpecValidationError(
            "bad recipient", [FieldError("toUserId", "cannot delegate to yourself")]
        )
    if scope.first(Membership, Membership.user_id == to_user_id) is None:
        raise NotFoundError("the recipient is not a member of this organization")
    delegation = scope.add(
        Delegation(
            from_user_id=giver.user_id,
            to_user_id=to_user_id,
            permissions=perms,
            expires_at=expires_at,
        )
    )
    scope.session.flush()
    return delegation


def revoke_delegation(scope: OrgScope, delegation_id: str, *, actor: Grant) -> Delegation:
    """End a delegation now.

    Its giver may end it, its recipient may hand it back, and anyone else only when they
    rank above the giver (a Manager cannot end what an Admin decided). A giver who is no
    longer a member outranks nobody.

    Raises:
        PermissionDeniedError: the actor is neither and does not outrank the giver.
    """
    delegation = scope.get(Delegation, delegation_id)
    if actor.user_id not in (delegation.from_user_id, delegation.to_user_id):
        giver_rank = member_rank(scope, delegation.from_user_id)
        if giver_rank is not None and giver_rank >= actor.role_rank:
            raise PermissionDeniedError(
                "only the member who gave this delegation, the member who received it, or "
                "someone ranked above the giver can end it"
            )
    delegation.revoked_at = delegation.revoked_at or utcnow()
    return delegation


__all__ = [
    "NEEDS_AN_OWNER",
    "Grant",
    "add_member",
    "change_member_role",
    "create_custom_role",
    "delegate",
    "delete_role",
    "grant_for",
    "member_rank",
    "memberships_of",
    "org_model",
    "refuse_ungrantable",
    "remove_member",
    "revoke_delegation",
    "role_permissions",
    "seed_roles",
    "update_role_permissions",
]
