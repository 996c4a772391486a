"""The closed vocabulary of permissions and the built-in roles of the three RBAC models.

Permissions are ``area:verb`` strings. Nothing outside :data:`PERMISSIONS` can be granted,
stored in a role, delegated or put on an API token. ``docs/security/rbac.md`` is generated
from this module's data by ``tests/services/auth/test_permissions.py``, so the documented
vocabulary cannot drift from the code.

The models (from the product brief):

* **simple** — Owner, Admin, User, Viewer; no custom roles.
* **granular** — the same built-in roles plus custom roles, each any subset of the vocabulary.
* **enterprise** — a hierarchy Owner > Admin > Manager > User > Viewer where each role
  inherits every permission of the roles below it, custom roles placed anywhere in it, and
  time-boxed delegation of a subset of one's own permissions to another member.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from paulyops.services.onboarding.errors import custom_error

PERMISSIONS: dict[str, str] = {
    "org:read": "See the organization's profile and settings summary",
    "org:update": "Change the organization's profile",
    "org:create": "Create another organization on this instance (platform administrators)",
    "members:read": "List members and their roles",
    "members:invite": "Invite people by a single-use link",
    "members:update": "Change a member's role",
    "members:remove": "Remove a member",
    "roles:read": "List roles and their permissions",
    "roles:manage": "Create, change and delete custom roles and the hierarchy",
    "delegations:manage": "Delegate one's own permissions to another member for a time",
    "security:read": "See security settings (timeouts, second factor, encryption)",
    "security:update": "Change security settings",
    "tokens:manage": "Create and revoke API tokens",
    "storage:read": "List storage connections",
    "storage:manage": "Add, change, test and remove storage connections",
    "agents:read": "List installed agents and their runs",
    "agents:install": "Install, update and uninstall agents",
    "agents:configure": "Change agent settings, enable and disable agents",
    "agents:run": "Start agent runs by hand",
    "documents:read": "See documents found in storage, their journey and results",
    "documents:review": "Pick the class or agent of documents waiting for review; keep rules",
    "marketplace:read": "Browse the agent marketplace",
    "marketplace:manage": (
        "Upload and verify agent packages for the organization; set its unsigned-package policy"
    ),
    "marketplace:trust": (
        "Trust and revoke publisher keys and catalog sources (platform administrators)"
    ),
    "audit:read": "Read the audit log and verify its chain",
    "audit:export": "Export the audit log",
    "health:read": "See health details (pool numbers, errors)",
    "metrics:read": (
        "Scrape the Prometheus metrics at /metrics (platform administrators; a scraper's token)"
    ),
    "ratelimits:manage": "See recent rate-limit blocks and edit the allowlist",
}

ALL = frozenset(PERMISSIONS)
# Instance-wide powers: only platform administrators hold them, never an organization role
# (an organization's admin must not change what applies to every other organization).
PLATFORM_PERMISSIONS = frozenset(
    {"org:create", "ratelimits:manage", "health:read", "marketplace:trust", "metrics:read"}
)
# The instance-wide permissions a platform administrator may put on an API token: read-only
# monitoring, so a Prometheus scraper's token can be limited to exactly these (DESIGN.md).
# Nothing that changes the instance goes on a token.
TOKEN_PLATFORM_PERMISSIONS = frozenset({"metrics:read", "health:read"})


class RbacModel(StrEnum):
    """The brief's three RBAC models."""

    SIMPLE = "simple"
    GRANULAR = "granular"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True, slots=True)
class RoleTemplate:
    """A built-in role: its name, permissions and rank (higher ranks manage lower ones)."""

    name: str
    description: str
    permissions: frozenset[str]
    rank: int


_VIEWER = frozenset(
    {
        "org:read",
        "members:read",
        "roles:read",
        "storage:read",
        "agents:read",
        "marketplace:read",
        "documents:read",
    }
)
_USER = _VIEWER | {"agents:run", "documents:review"}
_MANAGER = _USER | {"members:invite", "agents:configure", "audit:read", "delegations:manage"}
_ADMIN = ALL - (PLATFORM_PERMISSIONS - {"health:read"})
# What counts as "admin" for the organization's "second factor for admins" rule: every
# permission beyond what a plain User (and so a Viewer) holds. It is decided by permission,
# never by rank, so a custom role, a Manager or a member holding a delegated
# `security:update` is covered too; a permission added to the vocabulary later counts as
# admin unless it is also given to the User role.
SECOND_FACTOR_PERMISSIONS = ALL - _USER
_OWNER = ALL - (PLATFORM_PERMISSIONS - {"health:read"})

OWNER = "Owner"
ADMIN = "Admin"
MANAGER = "Manager"
USER = "User"
VIEWER = "Viewer"

_TEMPLATES = {
    OWNER: RoleTemplate(
        OWNER, "Everything, including removing the organization's admins", _OWNER, 100
    ),
    ADMIN: RoleTemplate(ADMIN, "Manages members, settings, storage and agents", _ADMIN, 80),
    MANAGER: RoleTemplate(MANAGER, "Runs day-to-day work and invites people", _MANAGER, 60),
    USER: RoleTemplate(USER, "Uses agents and sees the organization's setup", _USER, 40),
    VIEWER: RoleTemplate(VIEWER, "Reads, changes nothing", _VIEWER, 20),
}

# Every model seeds Owner, Admin, User and Viewer (DESIGN.md); enterprise adds Manager and
# arranges them as a hierarchy, each role inheriting from the one listed after it.
BUILTIN_ROLES: dict[RbacModel, tuple[str, ...]] = {
    RbacModel.SIMPLE: (OWNER, ADMIN, USER, VIEWER),
    RbacModel.GRANULAR: (OWNER, ADMIN, USER, VIEWER),
    RbacModel.ENTERPRISE: (OWNER, ADMIN, MANAGER, USER, VIEWER),
}

# Longest delegation an enterprise member may grant; a delegation is a stopgap (holidays,
# handovers), not a second role assignment.
MAX_DELEGATION_DAYS = 30


def role_templates(model: RbacModel | str) -> list[RoleTemplate]:
    """Return the built-in roles of ``model``, highest rank first."""
    return [_TEMPLATES[name] for name in BUILTIN_ROLES[RbacModel(model)]]


def allows_custom_roles(model: RbacModel | str) -> bool:
    """Whether the model allows custom roles (granular and enterprise)."""
    return RbacModel(model) is not RbacModel.SIMPLE


def is_hierarchical(model: RbacModel | str) -> bool:
    """Whether roles inherit from the roles below them (enterprise)."""
    return RbacModel(model) is RbacModel.ENTERPRISE


def unknown_permissions(permissions: set[str] | frozenset[str] | list[str]) -> list[str]:
    """Return the entries of ``permissions`` that are not in the vocabulary, sorted."""
    return sorted(set(permissions) - ALL)


def _known(permissions: list[str]) -> list[str]:
    unknown = unknown_permissions(permissions)
    if unknown:
        raise custom_error(
            "unknown_permission",
            f"unknown permission(s) {', '.join(unknown)}; see `roles:read`",
            allowed=sorted(ALL),
        )
    return sorted(set(permissions))


# The one rule for every permission list of a command (roles, tokens, delegations): names
# from the vocabulary, each once, sorted; at most the whole vocabulary.
PermissionNames = Annotated[
    list[str],
    Field(max_length=len(PERMISSIONS), description="permission names, e.g. storage:read"),
    AfterValidator(_known),
]


__all__ = [
    "ADMIN",
    "ALL",
    "BUILTIN_ROLES",
    "MANAGER",
    "MAX_DELEGATION_DAYS",
    "OWNER",
    "PERMISSIONS",
    "PLATFORM_PERMISSIONS",
    "SECOND_FACTOR_PERMISSIONS",
    "TOKEN_PLATFORM_PERMISSIONS",
    "USER",
    "VIEWER",
    "PermissionNames",
    "RbacModel",
    "RoleTemplate",
    "allows_custom_roles",
    "is_hierarchical",
    "role_templates",
    "unknown_permissions",
]
