"""The lifecycle of an organization's agents: one service for the CLI, the API and the console.

Every change is a use case: a scope (:class:`OrgScope`), a :class:`Command` and an
:class:`Actor`; it writes its own audit row and an :class:`AgentEvent` in the caller's
transaction, and every command has ``plan``: with it the change only answers what it would
touch (files, grants, settings, dependent agents) and changes nothing.

* **install** takes a stored package (the organization's own upload, or an instance-wide
  catalog or bundled one; a bundled agent not stored yet is built from the distribution
  once per process and stored), validates it again (trust store, revocations, the
  organization's unsigned-package policy, compatibility, dependencies among the agents
  installed here), and grants the capabilities it requests **all or nothing**: the
  command's ``grant`` must equal the request; nothing is granted implicitly. The archive
  is unpacked into the per-machine cache (``<data dir>/agents/cache/<sha256>``).
* **update** checks compatibility again (and that the agents depending on this one still
  accept the new version). A version asking for capabilities not granted yet waits for a
  new grant (``awaitingGrant``) while the current one keeps running. The switch is one
  transaction; the previous version is kept, and :func:`rollback` (called by the job
  layer when the new version fails its probation runs) switches back and says why.
* **uninstall** removes the cache folder (when no other installation uses it) and the
  secrets; history (audit rows, agent events, job rows) is kept.
* **enable / disable**, **configure** (settings validated against the manifest's JSON
  Schema; secret fields encrypted with the key ring, shown only as "set"), and
  :func:`run_settings` (what a run may see: a secret only with its ``secrets:<field>``).
* **quarantine / release** (an admin lifts a quarantine, audited).

Integrity checks of the unpack cache, repair and quarantine on revocation live in
:mod:`paulyops.services.agents.integrity`.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from packaging.version import InvalidVersion, Version
from pydantic import Field, model_validator
from sqlalchemy import func, or_, select
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AgentEvent, AgentInstallation, AgentPackage, Job, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, FieldError, NotFoundError
from paulyops.core.logging import security_event
from paulyops.core.security.fields import read_secret_json, write_secret_json
from paulyops.services import actor as actors
from paulyops.services.actor import SYSTEM, Actor
from paulyops.services.agents.installations import (
    ChangeOutcome,
    ChangePlan,
    GrantPlan,
    InstallationView,
    PendingUpdateView,
    SettingsPlan,
)
from paulyops.services.agents.jobs import requeue_installation
from paulyops.services.agents.unpack import ArchiveMismatchError, archive_files, remove_tree, unpack
from paulyops.services.commands import Command, invalid
from paulyops.services.marketplace.bundled import BundledAgent, trusted_agents
from paulyops.services.marketplace.capabilities import SECRETS_PREFIX, describe
from paulyops.services.marketplace.integrity import CHECKSUMS_NAME
from paulyops.services.marketplace.listing import capability_words
from paulyops.services.marketplace.manifest import Manifest, parse_manifest
from paulyops.services.marketplace.store import store_package, unsigned_allowed
from paulyops.services.marketplace.trust import trust_inputs
from paulyops.services.marketplace.validate import AvailableAgent, Report, validate_package

# Runs a freshly updated version must pass before it is trusted; a failure before that
# rolls back to the previous version (see :func:`record_run`).
PROBATION_RUNS = 3
ENABLED = "enabled"
DISABLED = "disabled"
QUARANTINED = "quarantined"
PLAN_ONLY = "plan only: nothing was changed"


# --- commands ------------------------------------------------------------------------------


class InstallAgent(Command):
    """Install one stored package version in the organization."""

    package_id: str | None = Field(None, max_length=40, description="a stored package's id")
    agent_id: str | None = Field(None, max_length=120, description="e.g. acme.invoice-reader")
    version: str | None = Field(None, max_length=40, description="default: the newest stored")
    grant: list[str] | None = Field(
        None,
        max_length=64,
        description="the capabilities granted: exactly the ones the agent requests",
    )
    plan: bool = Field(False, description="only show what would change")

    @model_validator(mode="after")
    def _one_package(self) -> InstallAgent:
        if not self.package_id and not self.agent_id:
            raise ValueError("agentId: name the agent (or give packageId)")
        return self


class UpdateAgent(Command):
    """Update an installed agent to another stored version."""

    version: str | None = Field(None, max_length=40, description="default: the newest stored")
    package_id: str | None = Field(None, max_length=40)
    grant: list[str] | None = Field(
        None, max_length=64, description="the capabilities the new version requests, all of them"
    )
    plan: bool = Field(False, description="only show what would change")


class PlanOnly(Command):
    """A change that takes nothing but whether to only preview it."""

    plan: bool = Field(False, description="only show what would change")


class ConfigureAgent(Command):
    """Change an installed agent's settings (secret fields are encrypted, never shown)."""

    settings: dict[str, Any] = Field(
        default_factory=dict, max_length=64, description="field -> value, by the agent's schema"
    )
    unset: list[str] = Field(default_factory=list, max_length=64, description="fields to clear")
    plan: bool = Field(False, description="only show what would change")


class ReleaseAgent(Command):
    """Lift a quarantine."""

    reason: str = Field("", max_length=500, description="why it is safe again (audited)")
    plan: bool = Field(False, description="only show what would change")


# --- lookups -------------------------------------------------------------------------------


def _visible(scope: OrgScope) -> Any:
    return or_(
        AgentPackage.organization_id.is_(None),
        AgentPackage.organization_id == scope.organization_id,
    )


def _version_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


@functools.cache
def _bundled_by_id() -> dict[str, BundledAgent]:
    """The trusted bundled agents, built once per process (their archives keyed by sha256)."""
    return {a.manifest.id: a for a in trusted_agents() if a.manifest is not None}


def bundled_archive(sha256: str) -> bytes | None:
    """Return the bundled archive with this sha256, built once per process, or None."""
    return next((a.archive for a in _bundled_by_id().values() if a.sha256 == sha256), None)


def store_bundled(session: Session, agent_id: str) -> AgentPackage | None:
    """Store the bundled agent ``agent_id`` instance-wide (once); return its row, or None.

    Raises:
        ConflictError: the same id and version is stored with other bytes.
    """
    agent = _bundled_by_id().get(agent_id)
    if agent is None or agent.manifest is None:
        return None
    stored = store_package(
        session,
        agent.archive,
        agent.report,
        organization_id=None,
        source="bundled",
        uploaded_by=None,
    )
    return session.get(AgentPackage, stored.id)


def fetch_from_catalog(
    db: Database,
    catalog: str,
    agent_id: str,
    version: str | None,
    *,
    actor: Actor,
) -> str:
    """Fetch one package version from a catalog into the instance store; return its id.

    The catalog is refreshed, the download checked against its signed hash and the
    package validated against the instance trust store
    (:func:`paulyops.services.marketplace.catalogs.fetch_package`); the very bytes are
    then stored instance-wide (``source = catalog``) with an instance audit row. Without
    ``version``: the newest the catalog lists that is neither yanked nor revoked. The
    same bytes stored already change nothing.

    Raises:
        NotFoundError: the catalog lists no such version.
        CatalogError: refused metadata, a revoked or yanked version, other bytes...
        PackageError: the package fails validation.
        ConflictError: the same id and version is stored with other bytes.
    """
    from paulyops.services.marketplace import catalogs

    if version is None:
        catalogs.refresh_catalog(db, catalog, actor)
    with db.session() as session:
        trusted, _revoked = trust_inputs(session)
        if version is None:
            listed = [
                e
                for e in catalogs.list_entries(session, source=catalog)
                if e.agent_id == agent_id and not e.yanked and not e.revoked
            ]
            if not listed:
                raise NotFoundError(f"{agent_id}: catalog {catalog!r} lists no usable version")
            version = max(listed, key=lambda e: _version_key(e.version)).version
    fetched = catalogs.fetch_package(db, catalog, agent_id, version, actor, trusted=trusted)
    with db.write_session() as session:
        stored = store_package(
            session,
            fetched.data,
            fetched.report,
            organization_id=None,
            source="catalog",
            uploaded_by=actor.id,
        )
        if stored.created:
            actors.record(
                session,
                actor,
                "marketplace.package_fetched",
                organization_id=None,
                target_type="agent_package",
                target_id=stored.id,
                changes={
                    "catalog": catalog,
                    "agentId": stored.agent_id,
                    "version": stored.version,
                    "sha256": stored.sha256,
                    "keyId": stored.key_id,
                },
            )
    return stored.id


def _find_package(
    scope: OrgScope,
    *,
    package_id: str | None,
    agent_id: str | None,
    version: str | None,
) -> AgentPackage:
    """Return the stored package the organization may install.

    Raises:
        NotFoundError: nothing stored matches (or it is another organization's).
    """
    session = scope.session
    if package_id:
        row = session.scalars(
            select(AgentPackage).where(AgentPackage.id == package_id, _visible(scope))
        ).first()
        if row is None:
            raise NotFoundError(f"package {package_id!r} not found")
        return row
    assert agent_id is not None
    criteria = [AgentPackage.agent_id == agent_id, _visible(scope)]
    if version:
        criteria.append(AgentPackage.version == version)
    rows = list(session.scalars(select(AgentPackage).where(*criteria)))
    if not rows:
        bundled = store_bundled(session, agent_id)
        if bundled is not None and (not version or bundled.version == version):
            return bundled
        what = f"{agent_id} {version}" if version else agent_id
        raise NotFoundError(
            f"{what}: no such package is stored (upload it, or fetch it from a catalog, first)"
        )
    # The newest version; the organization's own upload wins a tie.
    rows.sort(key=lambda r: (_version_key(r.version), r.organization_id is not None))
    return rows[-1]


def _installation(scope: OrgScope, ref: str) -> AgentInstallation:
    """Return the installation named by its id or its agent id, in this organization only.

    Raises:
        NotFoundError: not installed here (another organization's is never found).
    """
    ref = ref.strip()
    row = scope.first(
        AgentInstallation, or_(AgentInstallation.id == ref, AgentInstallation.agent_id == ref)
    )
    if row is None:
        raise NotFoundError(f"agent {ref!r} is not installed in this organization")
    return row


def _package(session: Session, package_id: str | None) -> AgentPackage | None:
    return session.get(AgentPackage, package_id) if package_id else None


def _manifest(row: AgentPackage | None) -> Manifest | None:
    if row is None:
        return None
    try:
        return parse_manifest(dict(row.manifest), bundled=row.source == "bundled")
    except Exception:  # a stored manifest that no longer parses is shown as unknown
        return None


def _archive(session: Session, row: AgentPackage) -> bytes:
    data = session.scalars(select(AgentPackage.archive).where(AgentPackage.id == row.id)).one()
    return bytes(data)


def archive_matches(session: Session, row: AgentPackage) -> bool:
    """Whether the stored archive's bytes still match the sha256 recorded for them."""
    return hashlib.sha256(_archive(session, row)).hexdigest() == row.sha256


def _installed_available(scope: OrgScope, *, exclude: str) -> list[AvailableAgent]:
    out = []
    for inst in scope.list(AgentInstallation, AgentInstallation.agent_id != exclude):
        manifest = _manifest(_package(scope.session, inst.package_id))
        if manifest is not None:
            out.append(AvailableAgent.from_manifest(manifest))
    return out


def dependents(scope: OrgScope, agent_id: str) -> list[tuple[str, str]]:
    """Return the installed agents that depend on ``agent_id``: (their id, version range)."""
    out = []
    for inst in scope.list(AgentInstallation, AgentInstallation.agent_id != agent_id):
        manifest = _manifest(_package(scope.session, inst.package_id))
        if manifest is not None and agent_id in manifest.dependencies.agents:
            out.append((inst.agent_id, manifest.dependencies.agents[agent_id]))
    return sorted(out)


def _validate(scope: OrgScope, row: AgentPackage, data: bytes) -> Manifest:
    """Validate a stored archive again, as if it had just arrived.

    Raises:
        PackageError: a check failed (each failure names its file or field).
        ArchiveMismatchError: the stored bytes no longer match their sha256.
    """
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise ArchiveMismatchError(
            "archive", "no longer matches the sha256 recorded when it was verified"
        )
    trusted, revoked = trust_inputs(scope.session)
    report: Report = validate_package(
        io.BytesIO(data),
        trusted=trusted,
        allow_unsigned=unsigned_allowed(scope),
        bundled=row.source == "bundled",
        available=_installed_available(scope, exclude=row.agent_id),
        revoked=revoked,
    )
    report.raise_for_failure()
    manifest = report.manifest
    assert manifest is not None
    if (manifest.id, manifest.version) != (row.agent_id, row.version):
        raise ConflictError(f"package {row.id}: the archive is not {row.agent_id} {row.version}")
    return manifest


def _files(sha256: str, data: bytes, cache: Path) -> list[str]:
    """The cache paths an unpack would write (none when the folder is there already)."""
    if (cache / sha256).is_dir():
        return []
    names = [*archive_files(data, sha256), CHECKSUMS_NAME]
    return [f"{sha256}/{name}" for name in sorted(names)]


def _users_of(session: Session, sha256: str) -> int:
    """How many installations (of any organization) use this unpack folder."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(AgentInstallation)
            .where(
                or_(
                    AgentInstallation.package_sha256 == sha256,
                    AgentInstallation.previous_sha256 == sha256,
                )
            )
        )
        or 0
    )


def _collect(session: Session, cache: Path | None, *shas: str | None) -> list[str]:
    """Remove the unpack folders no installation uses any more; return what was removed."""
    removed: list[str] = []
    if cache is None:
        return removed
    session.flush()
    for sha in {s for s in shas if s}:
        folder = cache / sha
        if _users_of(session, sha) == 0 and (folder.exists() or folder.is_symlink()):
            remove_tree(folder)
            removed.append(sha)
    return removed


def _unused_after(
    session: Session, inst: AgentInstallation, shas: Sequence[str | None]
) -> list[str]:
    """The folders no installation would use once ``inst`` stops using ``shas``."""
    out = []
    for sha in {s for s in shas if s}:
        mine = int(sha in {inst.package_sha256, inst.previous_sha256})
        if _users_of(session, sha) - mine <= 0:
            out.append(f"{sha}/")
    return sorted(out)


# --- events, audit and views ----------------------------------------------------------------


def _actor_name(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}" if actor.id else actor.type


def record_event(
    scope: OrgScope,
    actor: Actor,
    inst: AgentInstallation,
    kind: str,
    details: dict[str, Any],
) -> None:
    """Write the AgentEvent and the audit row of one change, in the caller's transaction."""
    scope.session.flush()
    body = {"installationId": inst.id, "version": inst.version, **details}
    scope.add(AgentEvent(installation_id=inst.id, agent_id=inst.agent_id, kind=kind, details=body))
    actors.record(
        scope.session,
        actor,
        f"agent.{kind}",
        organization_id=scope.organization_id,
        target_type="agent_installation",
        target_id=inst.id,
        changes={"agentId": inst.agent_id, **body},
    )
    scope.session.flush()


def _secrets(inst: AgentInstallation) -> dict[str, Any]:
    value = read_secret_json(inst, "config")
    return dict(value) if isinstance(value, dict) else {}


def view(scope: OrgScope, inst: AgentInstallation) -> InstallationView:
    """Return an installation as the front doors show it (secrets only as set / not set)."""
    row = _package(scope.session, inst.package_id)
    manifest = _manifest(row)
    secret_fields = manifest.secret_settings() if manifest else []
    stored_secrets = _secrets(inst) if inst.config else {}
    pending = None
    pending_row = _package(scope.session, inst.pending_package_id)
    if pending_row is not None:
        wanted = list(pending_row.manifest.get("capabilities", []))
        new = [c for c in wanted if c not in inst.granted_permissions]
        pending = PendingUpdateView(
            version=pending_row.version,
            package_id=pending_row.id,
            capabilities=capability_words(wanted),
            new_capabilities=capability_words(new),
        )
    return InstallationView(
        id=inst.id,
        agent_id=inst.agent_id,
        name=manifest.name if manifest else inst.agent_id,
        version=inst.version,
        package_id=inst.package_id,
        source=row.source if row else None,
        status=inst.status,
        enabled=inst.status == ENABLED,
        granted_capabilities=capability_words(list(inst.granted_permissions)),
        granted_by=inst.granted_by,
        granted_at=inst.granted_at,
        settings={k: v for k, v in inst.settings.items() if k not in secret_fields},
        secrets={f: "set" if f in stored_secrets else "not set" for f in secret_fields},
        previous_version=inst.previous_version,
        probation_runs_left=inst.probation_runs_left,
        awaiting_grant=pending,
        quarantined_reason=inst.quarantined_reason,
        quarantined_at=inst.quarantined_at,
        failure_count=inst.failure_count,
        last_error=inst.last_error,
        created_at=inst.created_at,
        updated_at=inst.updated_at,
    )


def list_installations(scope: OrgScope) -> list[InstallationView]:
    """Return the organization's installed agents, by agent id."""
    rows = scope.list(AgentInstallation, order_by=AgentInstallation.agent_id)
    return [view(scope, row) for row in rows]


def show(scope: OrgScope, ref: str) -> InstallationView:
    """Return one installed agent (by installation id or agent id).

    Raises:
        NotFoundError: not installed in this organization.
    """
    return view(scope, _installation(scope, ref))


def get_installation(scope: OrgScope, ref: str) -> AgentInstallation:
    """Return the installation row (for the job layer), by installation id or agent id.

    Raises:
        NotFoundError: not installed in this organization.
    """
    return _installation(scope, ref)


def _in_savepoint(scope: OrgScope, step: Callable[[], ChangeOutcome]) -> ChangeOutcome:
    """Run a plan in a savepoint that is always rolled back: a plan changes nothing,
    not even the bundled package a real install stores first."""
    nested = scope.session.begin_nested()
    try:
        return step()
    finally:
        nested.rollback()


# --- grants ------------------------------------------------------------------------------


def _grant_words(names: Sequence[str]) -> str:
    return "; ".join(f"{n} ({describe(n)})" for n in names)


def check_grant(agent_id: str, requested: Sequence[str], grant: Sequence[str] | None) -> None:
    """Refuse unless ``grant`` is exactly ``requested`` (all or nothing, nothing implicit).

    Raises:
        CommandError: a capability is missing from the grant or not requested (field ``grant``).
    """
    wanted, given = set(requested), set(grant or [])
    if given == wanted and (grant is not None or not wanted):
        return
    errors = [
        FieldError("grant", f"{name} is not requested by {agent_id}; grant only what it asks for")
        for name in sorted(given - wanted)
    ]
    if wanted - given:
        errors.append(
            FieldError(
                "grant",
                f"{agent_id} asks to: {_grant_words(sorted(wanted))}. Grant all of these or "
                "install nothing; nothing is granted implicitly",
            )
        )
    raise invalid(errors)


def _grant_plan(
    requested: Sequence[str], current: Sequence[str], grant: Sequence[str] | None
) -> GrantPlan:
    return GrantPlan(
        requested=capability_words(list(requested)),
        granted_now=sorted(current),
        new=sorted(set(requested) - set(current)),
        dropped=sorted(set(current) - set(requested)),
        grant_given=grant is not None and set(grant) == set(requested),
    )


# --- install ------------------------------------------------------------------------------


def install(scope: OrgScope, command: InstallAgent, *, actor: Actor, cache: Path) -> ChangeOutcome:
    """Install a stored package in the organization (see the module docstring).

    Raises:
        NotFoundError: no such stored package visible to the organization.
        ConflictError: the agent is installed already.
        PackageError: the package fails a check now (trust, revocation, compatibility...).
        CommandError: the grant is not exactly what the agent requests.
    """
    if command.plan:
        return _in_savepoint(scope, lambda: _install(scope, command, actor=actor, cache=cache))
    return _install(scope, command, actor=actor, cache=cache)


def _install(scope: OrgScope, command: InstallAgent, *, actor: Actor, cache: Path) -> ChangeOutcome:
    row = _find_package(
        scope, package_id=command.package_id, agent_id=command.agent_id, version=command.version
    )
    existing = scope.first(AgentInstallation, AgentInstallation.agent_id == row.agent_id)
    if existing is not None:
        raise ConflictError(
            f"{row.agent_id} is installed already (version {existing.version}); "
            "use update to change its version"
        )
    data = _archive(scope.session, row)
    manifest = _validate(scope, row, data)
    requested = list(manifest.capabilities)
    plan = ChangePlan(
        action="install",
        agent_id=row.agent_id,
        to_version=row.version,
        package_id=row.id,
        files_added=_files(row.sha256, data, cache),
        grants=_grant_plan(requested, [], command.grant),
        settings=SettingsPlan(set=sorted(manifest.settings.get("properties", {}))),
        notes=_install_notes(manifest),
    )
    if command.plan:
        return ChangeOutcome(applied=False, message=PLAN_ONLY, plan=plan)
    check_grant(row.agent_id, requested, command.grant)
    inst = scope.add(
        AgentInstallation(
            agent_id=row.agent_id,
            package_id=row.id,
            version=row.version,
            status=ENABLED,
            granted_permissions=sorted(requested),
            granted_by=_actor_name(actor),
            granted_at=utcnow(),
            settings={},
            failure_count=0,
            package_sha256=row.sha256,
            probation_runs_left=0,
        )
    )
    scope.session.flush()
    unpack(data, row.sha256, cache)
    record_event(
        scope,
        actor,
        inst,
        "installed",
        {"packageId": row.id, "source": row.source, "sha256": row.sha256, "granted": requested},
    )
    return ChangeOutcome(
        applied=True,
        message=f"Installed {row.agent_id} {row.version}",
        plan=plan,
        installation=view(scope, inst),
    )


def _install_notes(manifest: Manifest) -> list[str]:
    notes = []
    required = manifest.settings.get("required", [])
    if required:
        notes.append("needs settings before it can run: " + ", ".join(required))
    secrets = manifest.secret_settings()
    if secrets:
        notes.append("secret settings (set them with configure): " + ", ".join(secrets))
    return notes


def install_bundled(
    scope: OrgScope, agent_id: str, *, actor: Actor, cache: Path
) -> ChangeOutcome | None:
    """Install a bundled agent granted what it declares (setup's defaults); None if none.

    Raises:
        ConflictError: installed already, or stored with other bytes.
        PackageError: the bundled package fails a check.
    """
    agent = _bundled_by_id().get(agent_id)
    if agent is None or agent.manifest is None:
        return None
    command = InstallAgent(agent_id=agent_id, version=agent.manifest.version)
    command = command.model_copy(update={"grant": list(agent.manifest.capabilities)})
    return install(scope, command, actor=actor, cache=cache)


# --- update and rollback -----------------------------------------------------------------


def update(
    scope: OrgScope, ref: str, command: UpdateAgent, *, actor: Actor, cache: Path
) -> ChangeOutcome:
    """Update an installed agent; a version asking for new capabilities awaits a grant.

    Raises:
        NotFoundError: not installed here, or no such stored version.
        ConflictError: quarantined, or an installed agent depending on it refuses the version.
        PackageError: the new version fails a check.
        CommandError: a grant was given that is not exactly what the new version requests.
    """
    if command.plan:
        return _in_savepoint(scope, lambda: _update(scope, ref, command, actor=actor, cache=cache))
    return _update(scope, ref, command, actor=actor, cache=cache)


def _update(
    scope: OrgScope, ref: str, command: UpdateAgent, *, actor: Actor, cache: Path
) -> ChangeOutcome:
    inst = _installation(scope, ref)
    # Quarantined because its version (or key) was revoked: updating to a version that is
    # not revoked is the way out, and releases it. Any other quarantine: release first.
    revoked_out = inst.status == QUARANTINED and (
        revoked_reason(scope.session, _package(scope.session, inst.package_id)) is not None
    )
    if inst.status == QUARANTINED and not revoked_out:
        raise ConflictError(
            f"{inst.agent_id} is quarantined ({inst.quarantined_reason}); release it first"
        )
    package_id, version = command.package_id, command.version
    if not package_id and not version and inst.pending_package_id:
        package_id = inst.pending_package_id
    target = _find_package(scope, package_id=package_id, agent_id=inst.agent_id, version=version)
    if target.agent_id != inst.agent_id:
        raise ConflictError(f"package {target.id} is {target.agent_id}, not {inst.agent_id}")
    if revoked_out:
        if target.id == inst.package_id:
            raise ConflictError(
                f"{inst.agent_id} {inst.version} is revoked: update it to another stored "
                "version (--version) or uninstall it"
            )
        still = revoked_reason(scope.session, target)
        if still:
            raise ConflictError(f"{inst.agent_id}: {still}; choose another version")
    base = ChangePlan(
        action="update",
        agent_id=inst.agent_id,
        installation_id=inst.id,
        from_version=inst.version,
        to_version=target.version,
        package_id=target.id,
    )
    explicit = bool(package_id or version)
    newer = _version_key(target.version) > _version_key(inst.version)
    if target.id == inst.package_id or (not explicit and not newer):
        return ChangeOutcome(
            applied=False,
            message=f"{inst.agent_id} is up to date ({inst.version})",
            noop=True,
            plan=base,
            installation=view(scope, inst),
        )
    data = _archive(scope.session, target)
    manifest = _validate(scope, target, data)
    refusing = [
        f"{agent} (needs {spec})"
        for agent, spec in dependents(scope, inst.agent_id)
        if not _in_range(target.version, spec)
    ]
    requested = list(manifest.capabilities)
    new = sorted(set(requested) - set(inst.granted_permissions))
    plan = base.model_copy(
        update={
            "files_added": _files(target.sha256, data, cache),
            "files_removed": _unused_after(scope.session, inst, [inst.previous_sha256]),
            "grants": _grant_plan(requested, inst.granted_permissions, command.grant),
            "settings": SettingsPlan(
                removed=sorted(set(inst.settings) - set(manifest.settings.get("properties", {})))
            ),
            "dependents": [a for a, _spec in dependents(scope, inst.agent_id)],
            "notes": [f"refused by {r}" for r in refusing]
            + ([f"asks for new capabilities: {_grant_words(new)}"] if new else []),
        }
    )
    if command.plan:
        return ChangeOutcome(applied=False, message=PLAN_ONLY, plan=plan)
    if refusing:
        raise ConflictError(
            f"{inst.agent_id} {target.version} is refused by installed agents that depend on "
            f"it: {', '.join(refusing)}"
        )
    if command.grant is not None:
        check_grant(inst.agent_id, requested, command.grant)
    elif new:
        inst.pending_package_id, inst.pending_version = target.id, target.version
        record_event(
            scope, actor, inst, "update_awaiting_grant", {"to": target.version, "new": new}
        )
        return ChangeOutcome(
            applied=False,
            message=(
                f"{inst.agent_id} {target.version} asks for new capabilities: "
                f"{_grant_words(new)}. It waits for a grant; {inst.version} keeps running"
            ),
            plan=plan,
            installation=view(scope, inst),
        )
    unpack(data, target.sha256, cache)
    discarded = inst.previous_sha256
    inst.previous_package_id, inst.previous_version = inst.package_id, inst.version
    inst.previous_sha256, inst.previous_permissions = (
        inst.package_sha256,
        list(inst.granted_permissions),
    )
    inst.package_id, inst.version, inst.package_sha256 = target.id, target.version, target.sha256
    if set(requested) != set(inst.granted_permissions):
        inst.granted_by, inst.granted_at = _actor_name(actor), utcnow()
    inst.granted_permissions = sorted(requested)
    inst.probation_runs_left = PROBATION_RUNS
    inst.pending_package_id = inst.pending_version = None
    inst.failure_count = 0
    record_event(
        scope,
        actor,
        inst,
        "updated",
        {"from": inst.previous_version, "to": target.version, "granted": sorted(requested)},
    )
    _collect(scope.session, cache, discarded)
    message = f"Updated {inst.agent_id} {inst.previous_version} -> {target.version}"
    if revoked_out:
        # No automatic rollback to the revoked version it leaves.
        inst.probation_runs_left = 0
        back = _lift_quarantine(scope, actor, inst, f"updated to {target.version}")
        message += f"; released from quarantine ({back})"
    return ChangeOutcome(applied=True, message=message, plan=plan, installation=view(scope, inst))


def _in_range(version: str, spec: str) -> bool:
    from packaging.specifiers import SpecifierSet

    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def rollback(
    scope: OrgScope,
    installation_id: str,
    reason: str,
    *,
    actor: Actor = SYSTEM,
    cache: Path | None = None,
) -> InstallationView:
    """Switch an installation back to the version its last update replaced, and say why.

    The job layer calls this when a freshly updated version fails its probation runs
    (or its health probe). Records an AgentEvent ``rolled_back`` with the reason.

    Raises:
        NotFoundError: no such installation in this organization.
        ConflictError: there is no previous version to go back to.
    """
    inst = _installation(scope, installation_id)
    previous = _package(scope.session, inst.previous_package_id)
    if previous is None or inst.previous_version is None:
        raise ConflictError(f"{inst.agent_id} has no previous version to roll back to")
    failed_version, failed_sha = inst.version, inst.package_sha256
    inst.package_id, inst.version = previous.id, previous.version
    inst.package_sha256 = inst.previous_sha256 or previous.sha256
    inst.granted_permissions = list(inst.previous_permissions or [])
    inst.previous_package_id = inst.previous_version = inst.previous_sha256 = None
    inst.previous_permissions = None
    inst.probation_runs_left = 0
    inst.failure_count = 0
    inst.last_error = reason[:2000]
    record_event(
        scope,
        actor,
        inst,
        "rolled_back",
        {"from": failed_version, "to": inst.version, "reason": reason[:500]},
    )
    if cache is not None:
        unpack(_archive(scope.session, previous), previous.sha256, cache)
        _collect(scope.session, cache, failed_sha)
    return view(scope, inst)


def record_run(
    scope: OrgScope,
    installation_id: str,
    *,
    succeeded: bool,
    error: str | None = None,
    max_failures: int | None = None,
    actor: Actor = SYSTEM,
    cache: Path | None = None,
) -> str:
    """Note one finished run of an installation; return what followed.

    ``"ok"`` after a success (a probation run counted down, the failure count reset);
    ``"failed"`` after a failure; ``"rolled_back"`` when a version still on probation
    failed and the previous one is back; ``"quarantined"`` when ``max_failures``
    consecutive failures were reached.
    """
    inst = _installation(scope, installation_id)
    if succeeded:
        inst.failure_count = 0
        inst.probation_runs_left = max(0, inst.probation_runs_left - 1)
        scope.session.flush()
        return "ok"
    inst.failure_count += 1
    inst.last_error = (error or "the run failed")[:2000]
    if inst.probation_runs_left > 0 and inst.previous_package_id:
        why = f"version {inst.version} failed a run while on probation: {inst.last_error}"
        rollback(scope, inst.id, why, actor=actor, cache=cache)
        return "rolled_back"
    if max_failures is not None and inst.failure_count >= max_failures:
        quarantine(
            scope,
            inst.id,
            f"{inst.failure_count} consecutive failed runs; last: {inst.last_error}",
            actor=actor,
        )
        return "quarantined"
    scope.session.flush()
    return "failed"


# --- uninstall ---------------------------------------------------------------------------


def uninstall(
    scope: OrgScope, ref: str, command: PlanOnly, *, actor: Actor, cache: Path
) -> ChangeOutcome:
    """Uninstall an agent: its cache folder (if unused) and secrets go, history stays.

    Raises:
        NotFoundError: not installed here.
        ConflictError: installed agents depend on it.
    """
    inst = _installation(scope, ref)
    deps = [agent for agent, _spec in dependents(scope, inst.agent_id)]
    shas = [inst.package_sha256, inst.previous_sha256]
    secret_fields = sorted(_secrets(inst)) if inst.config else []
    plan = ChangePlan(
        action="uninstall",
        agent_id=inst.agent_id,
        installation_id=inst.id,
        from_version=inst.version,
        package_id=inst.package_id,
        files_removed=_unused_after(scope.session, inst, shas),
        grants=GrantPlan(dropped=sorted(inst.granted_permissions)),
        settings=SettingsPlan(removed=sorted(set(inst.settings) | set(secret_fields))),
        dependents=deps,
        notes=["audit rows, agent events and job records are kept"],
    )
    if command.plan:
        return ChangeOutcome(applied=False, message=PLAN_ONLY, plan=plan)
    if deps:
        raise ConflictError(f"{', '.join(deps)} depend on {inst.agent_id}: uninstall them first")
    record_event(scope, actor, inst, "uninstalled", {"packageId": inst.package_id})
    scope.session.execute(
        sa_update(Job)
        .where(
            Job.organization_id == scope.organization_id,
            Job.installation_id == inst.id,
            Job.status == "queued",
        )
        .values(status="cancelled", error="the agent was uninstalled")
    )
    write_secret_json(inst, "config", None)
    scope.delete(inst)
    _collect(scope.session, cache, *shas)
    return ChangeOutcome(applied=True, message=f"Uninstalled {inst.agent_id}", plan=plan)


# --- enable, disable, configure --------------------------------------------------------------


def set_enabled(
    scope: OrgScope, ref: str, enabled: bool, command: PlanOnly, *, actor: Actor
) -> ChangeOutcome:
    """Enable or disable an installed agent.

    Raises:
        NotFoundError: not installed here.
        ConflictError: enabling a quarantined agent (release it first).
    """
    inst = _installation(scope, ref)
    wanted = ENABLED if enabled else DISABLED
    plan = ChangePlan(
        action="enable" if enabled else "disable",
        agent_id=inst.agent_id,
        installation_id=inst.id,
        from_version=inst.version,
        to_version=inst.version,
        notes=[f"status {inst.status} -> {wanted}"] if inst.status != wanted else [],
    )
    if inst.status == QUARANTINED and enabled:
        raise ConflictError(
            f"{inst.agent_id} is quarantined ({inst.quarantined_reason}); release it first"
        )
    if command.plan:
        return ChangeOutcome(applied=False, message=PLAN_ONLY, plan=plan)
    if inst.status == QUARANTINED and inst.quarantined_from != DISABLED:
        # It stays quarantined; a release will leave it disabled.
        inst.quarantined_from = DISABLED
        record_event(scope, actor, inst, DISABLED, {"whileQuarantined": True})
        return ChangeOutcome(
            applied=True,
            message=f"{inst.agent_id} stays quarantined and will be disabled when released",
            plan=plan,
            installation=view(scope, inst),
        )
    if inst.status in {wanted, QUARANTINED}:
        return ChangeOutcome(
            applied=False,
            message=f"{inst.agent_id} is {inst.status} already",
            noop=True,
            plan=plan,
            installation=view(scope, inst),
        )
    inst.status = wanted
    if enabled:
        requeue_installation(scope, inst.id)
    record_event(scope, actor, inst, wanted, {})
    return ChangeOutcome(
        applied=True,
        message=f"{'Enabled' if enabled else 'Disabled'} {inst.agent_id}",
        plan=plan,
        installation=view(scope, inst),
    )


def _schema_errors(
    schema: dict[str, Any], values: dict[str, Any], secret_fields: set[str]
) -> list[FieldError]:
    errors = []
    # Any secret value as jsonschema might quote it (its messages repr the instance).
    hidden = [
        text
        for key in secret_fields
        if key in values
        for text in (str(values[key]), repr(values[key]))
        if len(text) >= 4
    ]
    for err in Draft202012Validator(schema).iter_errors(values):
        field = str(err.path[0]) if err.path else ""
        if err.validator == "required" and isinstance(err.message, str):
            field = err.message.split("'")[1] if "'" in err.message else field
            errors.append(FieldError(f"settings.{field}", "is required"))
            continue
        message = str(err.message)
        whole = not field and err.validator != "additionalProperties"
        if field in secret_fields or whole or any(text in message for text in hidden):
            # Never echo a secret value back: jsonschema's messages quote the value, and a
            # rule on the whole object (maxProperties, not, anyOf...) quotes every field.
            message = f"not a valid value (the '{err.validator}' rule of the schema)"
        errors.append(FieldError(f"settings.{field}" if field else "settings", message))
    return errors


def configure(scope: OrgScope, ref: str, command: ConfigureAgent, *, actor: Actor) -> ChangeOutcome:
    """Change settings, validated against the manifest's settings schema.

    Secret fields (``secret: true``) are encrypted with the key ring and never shown again;
    audit rows and events name the fields only, never values.

    Raises:
        NotFoundError: not installed here.
        CommandError: an unknown field, or a value the schema refuses (field ``settings.X``).
    """
    inst = _installation(scope, ref)
    manifest = _manifest(_package(scope.session, inst.package_id))
    schema: dict[str, Any] = (
        dict(manifest.settings) if manifest else {"type": "object", "properties": {}}
    )
    props: dict[str, Any] = dict(schema.get("properties", {}))
    secret_fields = set(manifest.secret_settings() if manifest else [])
    unknown = [k for k in sorted(set(command.settings) | set(command.unset)) if k not in props]
    if unknown:
        known = ", ".join(sorted(props)) or "none"
        raise invalid(
            [
                FieldError(f"settings.{k}", f"not a setting of {inst.agent_id} (it has: {known})")
                for k in unknown
            ]
        )
    plain = dict(inst.settings)
    secrets = _secrets(inst) if inst.config else {}
    for key, value in command.settings.items():
        (secrets if key in secret_fields else plain)[key] = value
    for key in command.unset:
        plain.pop(key, None)
        secrets.pop(key, None)
    errors = _schema_errors(schema, {**plain, **secrets}, secret_fields)
    if errors:
        raise invalid(errors)
    changes = SettingsPlan(
        set=sorted(k for k in command.settings if k not in secret_fields),
        secrets_set=sorted(k for k in command.settings if k in secret_fields),
        removed=sorted(command.unset),
    )
    plan = ChangePlan(
        action="configure",
        agent_id=inst.agent_id,
        installation_id=inst.id,
        from_version=inst.version,
        to_version=inst.version,
        settings=changes,
    )
    if command.plan:
        return ChangeOutcome(applied=False, message=PLAN_ONLY, plan=plan)
    inst.settings = plain
    write_secret_json(inst, "config", secrets or None)
    record_event(
        scope,
        actor,
        inst,
        "configured",
        {"set": changes.set, "secretsSet": changes.secrets_set, "removed": changes.removed},
    )
    return ChangeOutcome(
        applied=True,
        message=f"Configured {inst.agent_id}",
        plan=plan,
        installation=view(scope, inst),
    )


def run_settings(scope: OrgScope, installation_id: str) -> dict[str, Any]:
    """Return the settings a run of this installation may see.

    The schema's defaults, then the stored plain settings, then each secret field only
    when its ``secrets:<field>`` capability was granted. The job layer passes this as the
    run request's settings; nothing else of the installation's configuration leaves here.

    Raises:
        NotFoundError: no such installation in this organization.
    """
    inst = _installation(scope, installation_id)
    manifest = _manifest(_package(scope.session, inst.package_id))
    props: dict[str, Any] = dict(manifest.settings.get("properties", {})) if manifest else {}
    secret_fields = set(manifest.secret_settings() if manifest else [])
    out: dict[str, Any] = {
        k: p["default"]
        for k, p in props.items()
        if isinstance(p, dict) and "default" in p and k not in secret_fields
    }
    out.update({k: v for k, v in inst.settings.items() if k in props and k not in secret_fields})
    if inst.config:
        for key, value in _secrets(inst).items():
            if key in secret_fields and f"{SECRETS_PREFIX}{key}" in inst.granted_permissions:
                out[key] = value
    return out


def settings_for_run(scope: OrgScope, installation: AgentInstallation) -> dict[str, Any]:
    """:func:`run_settings` in the job layer's shape (it holds the row already)."""
    return run_settings(scope, installation.id)


# --- quarantine and release ---------------------------------------------------------------


def quarantine(
    scope: OrgScope,
    installation_id: str,
    reason: str,
    *,
    actor: Actor = SYSTEM,
    alert: bool = True,
) -> InstallationView:
    """Quarantine one installation (it runs no more until an admin releases it).

    The job layer calls this after N consecutive failures (``alert=False`` when the
    organization turned monitoring off: no security alert, the quarantine itself and its
    event stay); integrity checks and revocations call it too. Already quarantined: the
    first reason is kept.

    Raises:
        NotFoundError: no such installation in this organization.
    """
    inst = _installation(scope, installation_id)
    if inst.status == QUARANTINED:
        return view(scope, inst)
    inst.quarantined_from = inst.status
    inst.status = QUARANTINED
    inst.quarantined_reason = reason[:2000]
    inst.quarantined_at = utcnow()
    record_event(scope, actor, inst, "quarantined", {"reason": reason[:500]})
    if alert:
        security_event(
            "agent.quarantined",
            organization_id=scope.organization_id,
            agent_id=inst.agent_id,
            installation_id=inst.id,
            reason=reason[:200],
        )
    return view(scope, inst)


def revoked_reason(session: Session, row: AgentPackage | None) -> str | None:
    """Why a stored package may not run any more (its key or version revoked), or None."""
    if row is None:
        return None
    _trusted, revoked = trust_inputs(session)
    reason = revoked.versions.get((row.agent_id, row.version))
    if reason is not None:
        return f"{row.agent_id} {row.version} was revoked" + (f": {reason}" if reason else "")
    if row.key_fingerprint:
        from paulyops.services.marketplace.validate import key_fingerprint

        for key in revoked.keys:
            if key_fingerprint(key.key) == row.key_fingerprint:
                return f"key {row.key_id} was revoked" + (f": {key.reason}" if key.reason else "")
    return None


def _lift_quarantine(scope: OrgScope, actor: Actor, inst: AgentInstallation, reason: str) -> str:
    """End a quarantine in the caller's transaction (event, security event); the new status."""
    back = inst.quarantined_from if inst.quarantined_from in {ENABLED, DISABLED} else ENABLED
    was = inst.quarantined_reason
    inst.status = back
    inst.quarantined_reason = inst.quarantined_at = inst.quarantined_from = None
    inst.failure_count = 0
    requeue_installation(scope, inst.id)
    record_event(scope, actor, inst, "released", {"quarantinedFor": was, "reason": reason})
    security_event(
        "agent.released",
        severity="info",
        organization_id=scope.organization_id,
        agent_id=inst.agent_id,
        installation_id=inst.id,
    )
    return back


def release(scope: OrgScope, ref: str, command: ReleaseAgent, *, actor: Actor) -> ChangeOutcome:
    """Lift a quarantine (an admin's decision, audited and a security event).

    Raises:
        NotFoundError: not installed here.
        ConflictError: not quarantined, or the reason still holds (a damaged stored
            archive, a revoked key or version).
    """
    inst = _installation(scope, ref)
    if inst.status != QUARANTINED:
        raise ConflictError(f"{inst.agent_id} is not quarantined ({inst.status})")
    row = _package(scope.session, inst.package_id)
    back = inst.quarantined_from if inst.quarantined_from in {ENABLED, DISABLED} else ENABLED
    plan = ChangePlan(
        action="release",
        agent_id=inst.agent_id,
        installation_id=inst.id,
        from_version=inst.version,
        to_version=inst.version,
        notes=[f"quarantined because: {inst.quarantined_reason}", f"status -> {back}"],
    )
    if row is None:
        raise ConflictError(
            f"{inst.agent_id}: its stored package is gone; uninstall it and install it again"
        )
    if not archive_matches(scope.session, row):
        raise ConflictError(
            f"{inst.agent_id}: the stored archive is still damaged; uninstall it and install "
            "it again from the catalog or upload the package again"
        )
    still = revoked_reason(scope.session, row)
    if still:
        raise ConflictError(
            f"{inst.agent_id}: {still}; update it to a version that is not revoked "
            f"(`paulyops agents update {inst.agent_id} --version VERSION`, which also "
            "releases it) or uninstall it"
        )
    if command.plan:
        return ChangeOutcome(applied=False, message=PLAN_ONLY, plan=plan)
    _lift_quarantine(scope, actor, inst, command.reason)
    return ChangeOutcome(
        applied=True,
        message=f"Released {inst.agent_id} from quarantine ({back})",
        plan=plan,
        installation=view(scope, inst),
    )


__all__ = [
    "DISABLED",
    "ENABLED",
    "PROBATION_RUNS",
    "QUARANTINED",
    "ConfigureAgent",
    "InstallAgent",
    "PlanOnly",
    "ReleaseAgent",
    "UpdateAgent",
    "archive_matches",
    "bundled_archive",
    "check_grant",
    "configure",
    "dependents",
    "fetch_from_catalog",
    "get_installation",
    "install",
    "install_bundled",
    "list_installations",
    "quarantine",
    "record_event",
    "record_run",
    "release",
    "revoked_reason",
    "rollback",
    "run_settings",
    "set_enabled",
    "show",
    "store_bundled",
    "uninstall",
    "update",
    "view",
]
