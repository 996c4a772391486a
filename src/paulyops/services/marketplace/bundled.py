"""The agents bundled with PaulyOps: found in ``paulyops/bundled/``, checked at every load.

Each bundled agent is a source folder in the package format (``manifest.toml``, its code,
a committed ``CHECKSUMS``). Loading one builds its canonical archive from the files on
disk with the *committed* ``CHECKSUMS`` and runs the validator on it exactly as on any
package (archive safety, ``CHECKSUMS`` over every file, manifest schema, compatibility,
dependencies); a bundled agent needs no ``SIGNATURE``: it is trusted as part of the
distribution (badge ``bundled``). A folder whose files no longer match its ``CHECKSUMS``
is **modified** and is never loaded as trusted; one whose manifest is broken is
**invalid**. ``paulyops package checksums DIR`` regenerates a folder's ``CHECKSUMS``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from importlib.resources import files as package_files
from pathlib import Path
from typing import Final, Literal

from paulyops.core.logging import get_logger
from paulyops.services.marketplace.archive import write_canonical
from paulyops.services.marketplace.build import collect_sources
from paulyops.services.marketplace.errors import PackageSourceError
from paulyops.services.marketplace.integrity import CHECKSUMS_NAME, checksums_text
from paulyops.services.marketplace.manifest import MANIFEST_NAME, Manifest
from paulyops.services.marketplace.validate import AvailableAgent, Report, validate_package

log = get_logger(__name__)

BUNDLED_PACKAGE: Final = "paulyops.bundled"
BundledState = Literal["bundled", "modified", "invalid"]


@dataclass(frozen=True, slots=True)
class BundledAgent:
    """One bundled agent folder and what loading it found."""

    folder: Path
    state: BundledState
    reason: str
    report: Report
    archive: bytes

    @property
    def manifest(self) -> Manifest | None:
        """The validated manifest (None when it failed its checks)."""
        return self.report.manifest

    @property
    def is_trusted(self) -> bool:
        """Whether the agent passed every check and may be used as bundled."""
        return self.state == "bundled"

    @property
    def sha256(self) -> str:
        """The sha256 of the agent's canonical archive."""
        return hashlib.sha256(self.archive).hexdigest()


def bundled_root() -> Path:
    """Return the folder that holds the bundled agents."""
    return Path(str(package_files(BUNDLED_PACKAGE)))


def agent_folders(root: Path | None = None) -> list[Path]:
    """Return the bundled agents' folders (each holds a ``manifest.toml``), by name."""
    base = root or bundled_root()
    return sorted(p for p in base.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file())


def _archive(folder: Path) -> bytes:
    """Return the canonical archive of ``folder`` with its committed ``CHECKSUMS``."""
    entries = dict(collect_sources(folder))
    committed = folder / CHECKSUMS_NAME
    if committed.is_file():
        entries[CHECKSUMS_NAME] = committed.read_bytes()
    return write_canonical(entries)


def _state(report: Report) -> tuple[BundledState, str]:
    failed = {check.name: check for check in report.failures()}
    if not failed:
        return "bundled", "every check passed"
    for name in ("archive", "checksums"):
        if name in failed:
            return "modified", failed[name].message
    first = report.failures()[0]
    return "invalid", first.message


def load_agent(folder: Path, available: list[AvailableAgent] | None = None) -> BundledAgent:
    """Validate one bundled agent folder like any package (no signature needed)."""
    try:
        archive = _archive(folder)
    except PackageSourceError as err:
        report = Report()
        return BundledAgent(folder, "modified", str(err), report, b"")
    report = validate_package(io.BytesIO(archive), bundled=True, available=available or [])
    state, reason = _state(report)
    if state != "bundled":
        log.warning("bundled_agent_rejected", folder=folder.name, state=state, reason=reason)
    return BundledAgent(folder, state, reason, report, archive)


def _declared(folder: Path) -> AvailableAgent | None:
    try:
        report = validate_package(io.BytesIO(_archive(folder)), bundled=True)
    except PackageSourceError:
        return None
    manifest = report.manifest
    if manifest is None:
        return None
    return AvailableAgent(manifest.id, manifest.version, dict(manifest.dependencies.agents))


def load_all(root: Path | None = None) -> list[BundledAgent]:
    """Load and check every bundled agent (dependencies resolve among the bundled ones)."""
    folders = agent_folders(root)
    available = [a for f in folders if (a := _declared(f)) is not None]
    return [load_agent(folder, available) for folder in folders]


def trusted_agents(root: Path | None = None) -> list[BundledAgent]:
    """Return the bundled agents that passed every check (never a modified one)."""
    return [agent for agent in load_all(root) if agent.is_trusted]


def write_checksums(folder: Path) -> bytes:
    """Regenerate ``folder``'s ``CHECKSUMS`` from its files; return the new text.

    Raises:
        PackageSourceError: the folder cannot be packaged (no manifest, a link, ...).
    """
    text = checksums_text(collect_sources(folder))
    (folder / CHECKSUMS_NAME).write_bytes(text)
    return text


def stale_checksums(folder: Path) -> bool:
    """Return whether ``folder``'s committed ``CHECKSUMS`` differs from its files."""
    committed = folder / CHECKSUMS_NAME
    current = checksums_text(collect_sources(folder))
    return not committed.is_file() or committed.read_bytes() != current


__all__ = [
    "BUNDLED_PACKAGE",
    "BundledAgent",
    "BundledState",
    "agent_folders",
    "bundled_root",
    "load_agent",
    "load_all",
    "stale_checksums",
    "trusted_agents",
    "write_checksums",
]
