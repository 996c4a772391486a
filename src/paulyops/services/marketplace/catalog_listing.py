"""What a catalog's verified metadata lists, each entry checked against its namespace.

Publisher ``acme``'s delegation must be exactly the path pattern ``acme.*``, and each
target it lists must be ``<id>-<version>.pauly`` with an id starting ``acme.`` and a
signed ``custom.paulyops`` description naming that file. Anything else is left out of
the listing, with its reason, so one misbehaving publisher cannot place packages in
another's namespace. Yanked versions stay listed (marked); revoked versions are marked
and revoked author keys returned for the fetch to check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tuf.api.metadata import DelegatedRole, Metadata, Targets

from paulyops.services.marketplace.publish import CUSTOM_FIELD, REVOCATIONS_FIELD, target_path

NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
TOP_ROLES: Final = ("timestamp", "snapshot", "targets")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One package version a refreshed catalog lists (verified by tuf at refresh time)."""

    source: str
    agent_id: str
    version: str
    name: str
    description: str
    publisher: str
    target: str
    length: int
    sha256: str
    yanked: bool = False
    yanked_reason: str = ""
    revoked: str | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """What a catalog's verified metadata lists, and what was rejected and why."""

    entries: list[CatalogEntry] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    revoked_keys: frozenset[str] = frozenset()


def delegation_problem(role: DelegatedRole) -> str | None:
    """Return why a delegation is not a publisher namespace, or ``None`` when it is."""
    if not NAME_PATTERN.fullmatch(role.name) or role.name in (*TOP_ROLES, "root"):
        return f"delegation {role.name!r}: not a publisher namespace"
    if role.paths != [f"{role.name}.*"]:
        return (
            f"delegation {role.name!r}: must cover exactly the paths {role.name}.*, "
            f"got {role.paths or role.path_hash_prefixes}"
        )
    return None


def _custom(info: Any) -> dict[str, Any] | None:
    custom = info.custom if isinstance(info.custom, dict) else {}
    value = custom.get(CUSTOM_FIELD)
    return value if isinstance(value, dict) else None


def listing_of(source: str, roles: Mapping[str, bytes]) -> Listing:
    """Return the entries of a catalog's verified metadata, rejecting those out of place.

    Args:
        source: the catalog's name (for the entries).
        roles: role name -> metadata bytes, as a refresh stored them.
    """
    if "targets" not in roles:
        return Listing()
    top = Metadata[Targets].from_bytes(roles["targets"]).signed
    revocations = top.unrecognized_fields.get(REVOCATIONS_FIELD) or {}
    revoked_keys = frozenset(str(k) for k in revocations.get("keys", []))
    revoked_versions = {
        (str(v.get("id")), str(v.get("version"))) for v in revocations.get("versions", [])
    }
    rejected = {
        path: f"{path}: listed by the catalog's top-level targets, outside every publisher's "
        "delegation"
        for path in top.targets
    }
    entries = []
    delegated = top.delegations.roles if top.delegations and top.delegations.roles else {}
    for role_name, role in delegated.items():
        problem = delegation_problem(role)
        if problem is not None or role_name not in roles:
            if problem is not None:
                rejected[role_name] = problem
            continue
        for path, info in Metadata[Targets].from_bytes(roles[role_name]).signed.targets.items():
            custom = _custom(info)
            agent_id = str(custom.get("id", "")) if custom else ""
            version = str(custom.get("version", "")) if custom else ""
            if not role.is_delegated_path(path) or not agent_id.startswith(f"{role_name}."):
                rejected[path] = (
                    f"{path}: listed by publisher {role_name!r} outside its namespace {role_name}.*"
                )
                continue
            if custom is None or path != target_path(agent_id, version):
                rejected[path] = (
                    f"{path}: its signed description does not name this file "
                    f"(expected {target_path(agent_id, version)})"
                )
                continue
            revoked = None
            if (agent_id, version) in revoked_versions:
                revoked = f"{agent_id} {version} is revoked by the catalog"
            entries.append(
                CatalogEntry(
                    source=source,
                    agent_id=agent_id,
                    version=version,
                    name=str(custom.get("name", agent_id)),
                    description=str(custom.get("description", "")),
                    publisher=role_name,
                    target=path,
                    length=info.length,
                    sha256=str(info.hashes.get("sha256", "")),
                    yanked=bool(custom.get("yanked", False)),
                    yanked_reason=str(custom.get("yankedReason", "")),
                    revoked=revoked,
                )
            )
    entries.sort(key=lambda e: (e.agent_id, e.version))
    return Listing(entries, rejected, revoked_keys)


__all__ = [
    "NAME_PATTERN",
    "TOP_ROLES",
    "CatalogEntry",
    "Listing",
    "delegation_problem",
    "listing_of",
]
