"""Browse and search the marketplace: the agents an organization may see, as plain views.

An organization sees the instance-wide packages (catalog and bundled) and its own
uploads, never another organization's. Each version carries a **trust badge**, decided
from where it came from and how it was verified, never from the instance's URL:

* ``bundled`` — ships inside PaulyOps and is trusted as part of it;
* ``verified-publisher`` — signed by a key the instance trusts for the id's namespace;
* ``organization-local`` — uploaded by this organization, signed by a trusted key;
* ``unsigned-allowed`` — unsigned, accepted only under the organization's
  unsigned-package mode.

Trust is read live: a version whose key or version was revoked since it was stored is
marked ``revoked`` with the reason. Bundled agents are read from the distribution
(:mod:`~paulyops.services.marketplace.bundled`) at each listing, checked like any package,
and shown to every organization; a modified one (its files no longer match its
``CHECKSUMS``) is left out, never shown as trusted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import AgentPackage, PackageRevocation
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError
from paulyops.services.commands import Command
from paulyops.services.marketplace.bundled import BundledAgent, trusted_agents
from paulyops.services.marketplace.capabilities import describe, is_capability
from paulyops.services.marketplace.integrity import CHECKSUMS_NAME
from paulyops.services.onboarding.spec import Industry

Badge = Literal["bundled", "verified-publisher", "organization-local", "unsigned-allowed"]
BADGE_LABELS: dict[str, str] = {
    "bundled": "Bundled with PaulyOps",
    "verified-publisher": "Verified publisher",
    "organization-local": "Uploaded by your organization",
    "unsigned-allowed": "Unsigned (developer mode)",
}
BADGE_HELP: dict[str, str] = {
    "bundled": "Ships inside PaulyOps and is trusted as part of it.",
    "verified-publisher": "Signed by a publisher key this instance trusts for its namespace.",
    "organization-local": (
        "Uploaded by your organization and signed by a trusted key; only your organization sees it."
    ),
    "unsigned-allowed": (
        "Not signed. Accepted only because your organization allows unsigned packages."
    ),
}


class SearchAgents(Command):
    """Search the marketplace: free text, and optional filters."""

    q: str = Field("", max_length=200, description="words in the id, name or description")
    industry: Industry | None = Field(None, description="only agents suited to this industry")
    capability: str | None = Field(
        None, max_length=80, description="only agents asking for this capability"
    )
    publisher: str | None = Field(None, max_length=40, description="only this publisher")


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class CapabilityView(_View):
    """A capability an agent asks for, with its plain-words description."""

    name: str
    description: str


class VersionView(_View):
    """One stored version of an agent."""

    version: str
    sha256: str
    size: int
    source: str
    signature_state: str
    key_id: str | None
    badge: Badge
    badge_label: str
    organization_local: bool
    revoked: bool
    revoked_reason: str | None
    created_at: datetime


class AgentSummary(_View):
    """An agent in a listing: its newest version's facts."""

    id: str
    name: str
    description: str
    publisher: str
    latest_version: str
    versions: int
    badge: Badge
    badge_label: str
    signature_state: str
    industries: list[str]
    capabilities: list[str]
    revoked: bool


class AgentDetail(AgentSummary):
    """An agent in full: every version, and what it asks for in plain words."""

    license: str
    key_id: str | None
    capability_details: list[CapabilityView]
    media_types: list[str]
    document_classes: list[str]
    consumes: list[str]
    agent_dependencies: dict[str, str]
    library_dependencies: dict[str, str]
    secret_settings: list[str]
    all_versions: list[VersionView]


def capability_words(names: list[str]) -> list[CapabilityView]:
    """Return each capability with the words the console shows for it."""
    return [
        CapabilityView(name=n, description=describe(n) if is_capability(n) else "unknown")
        for n in names
    ]


def _badge(row: AgentPackage) -> Badge:
    if row.signature_state == "bundled" or row.source == "bundled":
        return "bundled"
    if row.signature_state != "signed":
        return "unsigned-allowed"
    return "organization-local" if row.organization_id else "verified-publisher"


def _sort_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _revocations(session: Session) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    keys: dict[str, str] = {}
    versions: dict[tuple[str, str], str] = {}
    for row in session.scalars(select(PackageRevocation)):
        if row.kind == "key" and row.key_fingerprint:
            keys[row.key_fingerprint] = row.reason or "key revoked"
        elif row.agent_id and row.version:
            versions[(row.agent_id, row.version)] = row.reason or "version revoked"
    return keys, versions


def _visible_rows(visible: OrgScope | Session) -> list[AgentPackage]:
    session = visible.session if isinstance(visible, OrgScope) else visible
    stmt = select(AgentPackage)
    if isinstance(visible, OrgScope):
        stmt = stmt.where(
            (AgentPackage.organization_id.is_(None))
            | (AgentPackage.organization_id == visible.organization_id)
        )
    else:
        stmt = stmt.where(AgentPackage.organization_id.is_(None))
    return list(session.scalars(stmt))


def _version_view(
    row: AgentPackage, keys: dict[str, str], versions: dict[tuple[str, str], str]
) -> VersionView:
    reason = versions.get((row.agent_id, row.version))
    if reason is None and row.key_fingerprint:
        reason = keys.get(row.key_fingerprint)
    badge = _badge(row)
    return VersionView(
        version=row.version,
        sha256=row.sha256,
        size=row.size,
        source=row.source,
        signature_state=row.signature_state,
        key_id=row.key_id,
        badge=badge,
        badge_label=BADGE_LABELS[badge],
        organization_local=row.organization_id is not None,
        revoked=reason is not None,
        revoked_reason=reason,
        created_at=row.created_at,
    )


def package_versions(session: Session, package_ids: Iterable[str | None]) -> dict[str, VersionView]:
    """Return the stored versions with these package ids, by id, with their badge and trust.

    For the packages an organization's installations run (the caller passes only those),
    so the console shows each installed agent's trust badge without listing the marketplace.
    """
    ids = sorted({i for i in package_ids if i})
    if not ids:
        return {}
    keys, versions = _revocations(session)
    rows = session.scalars(select(AgentPackage).where(AgentPackage.id.in_(ids)))
    return {row.id: _version_view(row, keys, versions) for row in rows}


def _bundled_row(agent: BundledAgent) -> AgentPackage:
    """Return a bundled agent as an unsaved package row (read here, never stored)."""
    manifest = agent.manifest
    assert manifest is not None  # only trusted agents come here
    committed = agent.folder / CHECKSUMS_NAME
    return AgentPackage(
        organization_id=None,
        agent_id=manifest.id,
        version=manifest.version,
        name=manifest.name,
        publisher=manifest.publisher,
        manifest=manifest.model_dump(mode="json", by_alias=True),
        source="bundled",
        sha256=agent.sha256,
        checksums_sha256=agent.report.checksums_sha256,
        size=len(agent.archive),
        signature_state="bundled",
        key_id=None,
        key_fingerprint=None,
        created_at=datetime.fromtimestamp(committed.stat().st_mtime, UTC),
    )


def _grouped(visible: OrgScope | Session) -> dict[str, list[tuple[AgentPackage, VersionView]]]:
    session = visible.session if isinstance(visible, OrgScope) else visible
    keys, versions = _revocations(session)
    groups: dict[str, list[tuple[AgentPackage, VersionView]]] = defaultdict(list)
    for row in _visible_rows(visible):
        groups[row.agent_id].append((row, _version_view(row, keys, versions)))
    for agent in trusted_agents():
        row = _bundled_row(agent)
        if all(other.version != row.version for other, _view in groups[row.agent_id]):
            groups[row.agent_id].append((row, _version_view(row, keys, versions)))
    for items in groups.values():
        items.sort(key=lambda item: _sort_key(item[0].version), reverse=True)
    return groups


def _latest(
    items: list[tuple[AgentPackage, VersionView]],
) -> tuple[AgentPackage, VersionView]:
    live = [item for item in items if not item[1].revoked]
    return (live or items)[0]


def _summary_fields(items: list[tuple[AgentPackage, VersionView]]) -> dict[str, Any]:
    row, view = _latest(items)
    manifest = row.manifest
    return {
        "id": row.agent_id,
        "name": row.name,
        "description": str(manifest.get("description", "")),
        "publisher": row.publisher,
        "latest_version": row.version,
        "versions": len(items),
        "badge": view.badge,
        "badge_label": view.badge_label,
        "signature_state": row.signature_state,
        "industries": list(manifest.get("industries", [])),
        "capabilities": list(manifest.get("capabilities", [])),
        "revoked": view.revoked,
    }


def _matches(summary: dict[str, Any], query: SearchAgents) -> bool:
    if query.industry is not None and query.industry.value not in summary["industries"]:
        return False
    if query.capability and query.capability not in summary["capabilities"]:
        return False
    if query.publisher and query.publisher.strip().lower() != summary["publisher"]:
        return False
    haystack = " ".join((summary["id"], summary["name"], summary["description"])).casefold()
    return all(word in haystack for word in query.q.casefold().split())


def search_agents(visible: OrgScope | Session, query: SearchAgents) -> list[AgentSummary]:
    """Return the agents matching ``query``, by name.

    Args:
        visible: an organization's scope (instance-wide packages and its own uploads), or
            a session for the instance-wide packages only (the CLI without ``--org``).
        query: the search text and filters.
    """
    out = []
    for items in _grouped(visible).values():
        fields = _summary_fields(items)
        if _matches(fields, query):
            out.append(AgentSummary(**fields))
    return sorted(out, key=lambda s: (s.name.casefold(), s.id))


def agent_detail(visible: OrgScope | Session, agent_id: str) -> AgentDetail:
    """Return one agent with every visible version.

    Raises:
        NotFoundError: no such agent, or only another organization has it.
    """
    items = _grouped(visible).get(agent_id)
    if not items:
        raise NotFoundError(f"agent {agent_id[:120]!r} not found in the marketplace")
    row, _view = _latest(items)
    manifest = row.manifest
    handles = manifest.get("handles", {})
    dependencies = manifest.get("dependencies", {})
    settings = manifest.get("settings", {}).get("properties", {})
    return AgentDetail(
        **_summary_fields(items),
        license=str(manifest.get("license", "")),
        key_id=row.key_id,
        capability_details=capability_words(list(manifest.get("capabilities", []))),
        media_types=list(handles.get("mediaTypes", [])),
        document_classes=list(handles.get("documentClasses", [])),
        consumes=list(manifest.get("consumes", [])),
        agent_dependencies=dict(dependencies.get("agents", {})),
        library_dependencies=dict(dependencies.get("libraries", {})),
        secret_settings=sorted(
            name for name, prop in settings.items() if isinstance(prop, dict) and prop.get("secret")
        ),
        all_versions=[view for _row, view in items],
    )


__all__ = [
    "BADGE_HELP",
    "BADGE_LABELS",
    "AgentDetail",
    "AgentSummary",
    "Badge",
    "CapabilityView",
    "SearchAgents",
    "VersionView",
    "agent_detail",
    "capability_words",
    "package_versions",
    "search_agents",
]
