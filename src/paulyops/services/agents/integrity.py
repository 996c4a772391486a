"""Integrity of installed agents: verify the unpack cache, repair it, quarantine on revocation.

The database holds the truth (each stored archive and its sha256); the per-machine cache
folder ``<data dir>/agents/cache/<sha256>`` is only a copy (DESIGN.md, "Package
integrity"). So:

* a missing, modified or extra file in the cache is reported and :func:`repair`
  re-extracts the folder from the stored archive;
* a stored archive whose bytes no longer match its sha256 quarantines the installations
  that run it — only those; every other agent keeps running — and repair cannot help:
  the package must come again from its catalog or an upload;
* a revoked key or package version quarantines the installations made from it, in the
  revocation's own transaction (:func:`quarantine_revoked`, called by
  :func:`paulyops.services.marketplace.trust.revoke`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from paulyops.core.db.models import AgentInstallation, AgentPackage, PackageRevocation
from paulyops.core.db.scoped import OrgScope
from paulyops.services.actor import SYSTEM, Actor
from paulyops.services.agents import lifecycle
from paulyops.services.agents.installations import IntegrityView, RepairView
from paulyops.services.agents.unpack import archive_files, cache_problems, unpack
from paulyops.services.marketplace.errors import ArchiveError
from paulyops.services.marketplace.integrity import CHECKSUMS_NAME

DAMAGED = "the stored archive no longer matches the sha256 recorded when it was verified"


def _advice(agent_id: str) -> str:
    return (
        f"the stored package of {agent_id} is damaged and cannot be repaired from itself: "
        f"uninstall it (`paulyops agents uninstall {agent_id}`) and install it again from "
        "its catalog or a fresh upload"
    )


def _archive_state(
    session: Session, inst: AgentInstallation
) -> tuple[dict[str, bytes] | None, str]:
    """Return the stored archive's files, or None and why they cannot be trusted."""
    row = session.get(AgentPackage, inst.package_id) if inst.package_id else None
    if row is None:
        return None, "its stored package is gone"
    if inst.package_sha256 and inst.package_sha256 != row.sha256:
        return None, "its stored package is not the one that was installed"
    data = bytes(
        session.scalars(select(AgentPackage.archive).where(AgentPackage.id == row.id)).one()
    )
    try:
        return archive_files(data, row.sha256), ""
    except ArchiveError:
        return None, DAMAGED


def _problems(folder: Path, files: dict[str, bytes]) -> list[str]:
    if not folder.is_dir() or folder.is_symlink():
        return [f"missing: {name}" for name in sorted([*files, CHECKSUMS_NAME])]
    return cache_problems(folder, files)


def verify_installed(
    scope: OrgScope,
    cache: Path,
    *,
    actor: Actor = SYSTEM,
    quarantine_damaged: bool = True,
) -> list[IntegrityView]:
    """Check every installation of the organization against its stored archive.

    Reports missing, modified and extra files in the cache folder, and re-checks the
    stored archive's sha256; with ``quarantine_damaged`` (the default) an installation
    whose stored archive no longer matches is quarantined, and only that one.
    """
    out = []
    for inst in scope.list(AgentInstallation, order_by=AgentInstallation.agent_id):
        files, why = _archive_state(scope.session, inst)
        quarantined = False
        if files is None:
            if quarantine_damaged and inst.status != lifecycle.QUARANTINED:
                lifecycle.quarantine(scope, inst.id, why, actor=actor)
                quarantined = True
            out.append(
                IntegrityView(
                    installation_id=inst.id,
                    agent_id=inst.agent_id,
                    version=inst.version,
                    status=inst.status,
                    archive_ok=False,
                    problems=[f"archive: {why}"],
                    quarantined=quarantined,
                    advice=_advice(inst.agent_id),
                )
            )
            continue
        assert inst.package_sha256 is not None
        problems = _problems(cache / inst.package_sha256, files)
        out.append(
            IntegrityView(
                installation_id=inst.id,
                agent_id=inst.agent_id,
                version=inst.version,
                status=inst.status,
                archive_ok=True,
                problems=problems,
                quarantined=False,
                advice=(f"run `paulyops agents repair {inst.agent_id}`" if problems else None),
            )
        )
    return out


def repair(
    scope: OrgScope, ref: str | None, cache: Path, *, actor: Actor = SYSTEM
) -> list[RepairView]:
    """Re-extract the cache folder of one installation (or all) from the stored archive.

    A damaged stored archive is not repaired (and its installation is quarantined): the
    answer says to install the package again from its catalog or an upload.

    Raises:
        NotFoundError: ``ref`` is not installed in this organization.
    """
    if ref:
        rows = [lifecycle.get_installation(scope, ref)]
    else:
        rows = list(scope.list(AgentInstallation, order_by=AgentInstallation.agent_id))
    out = []
    for inst in rows:
        files, why = _archive_state(scope.session, inst)
        if files is None:
            if inst.status != lifecycle.QUARANTINED:
                lifecycle.quarantine(scope, inst.id, why, actor=actor)
            out.append(
                RepairView(
                    installation_id=inst.id,
                    agent_id=inst.agent_id,
                    version=inst.version,
                    repaired=False,
                    fixed=[],
                    message=_advice(inst.agent_id),
                )
            )
            continue
        assert inst.package_sha256 is not None
        assert inst.package_id is not None
        problems = _problems(cache / inst.package_sha256, files)
        if problems:
            data = bytes(
                scope.session.scalars(
                    select(AgentPackage.archive).where(AgentPackage.id == inst.package_id)
                ).one()
            )
            unpack(data, inst.package_sha256, cache)
            lifecycle.record_event(scope, actor, inst, "repaired", {"fixed": problems[:50]})
        out.append(
            RepairView(
                installation_id=inst.id,
                agent_id=inst.agent_id,
                version=inst.version,
                repaired=bool(problems),
                fixed=problems,
                message=(
                    f"re-extracted {inst.agent_id} {inst.version} from its stored archive"
                    if problems
                    else f"{inst.agent_id} {inst.version}: nothing to repair"
                ),
            )
        )
    return out


def quarantine_revoked(
    session: Session, revocation: PackageRevocation, *, actor: Actor = SYSTEM
) -> list[str]:
    """Quarantine every installation (of any organization) made from a revoked key or version.

    An update waiting for a grant whose package is revoked is dropped. Returns the
    quarantined installations' ids. Called in the revocation's transaction.
    """
    if revocation.kind == "key":
        match = AgentPackage.key_fingerprint == revocation.key_fingerprint
        what = f"key {revocation.key_id} was revoked"
    else:
        match = (AgentPackage.agent_id == revocation.agent_id) & (
            AgentPackage.version == revocation.version
        )
        what = f"{revocation.agent_id} {revocation.version} was revoked"
    reason = what + (f": {revocation.reason}" if revocation.reason else "")
    packages = list(session.scalars(select(AgentPackage.id).where(match)))
    if not packages:
        return []
    rows = session.scalars(
        select(AgentInstallation).where(
            or_(
                AgentInstallation.package_id.in_(packages),
                AgentInstallation.pending_package_id.in_(packages),
            )
        )
    ).all()
    done = []
    for inst in rows:
        scope = OrgScope(session, inst.organization_id)
        if inst.pending_package_id in packages:
            inst.pending_package_id = inst.pending_version = None
        if inst.package_id in packages:
            lifecycle.quarantine(scope, inst.id, reason, actor=actor)
            done.append(inst.id)
    session.flush()
    return done


__all__ = ["DAMAGED", "quarantine_revoked", "repair", "verify_installed"]
