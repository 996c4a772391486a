"""The package validator: one service every front door uses (CLI, API, catalogs, install).

:func:`validate_package` streams the archive once, hashing every entry and writing
nothing, and returns a :class:`Report` of named checks, each ``ok``, ``failed`` (with one
message naming the file or field and the reason) or ``skipped`` (an earlier check it
depends on failed). :func:`unpack` writes a package into a fresh private staging folder
(0700), re-checking every byte as it goes, and removes the folder on any failure.
"""

from __future__ import annotations

import hashlib
import os
import platform as _platform
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import BinaryIO, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from paulyops import __version__
from paulyops.core.errors import FieldError
from paulyops.core.security.signatures import public_key_id, verify
from paulyops.services.marketplace.archive import Contents, Limits, scan
from paulyops.services.marketplace.errors import ArchiveError, ManifestError, PackageError
from paulyops.services.marketplace.integrity import (
    CHECKSUMS_NAME,
    INTEGRITY_FILES,
    SIGNATURE_NAME,
    parse_checksums,
    parse_signature,
    signed_message,
)
from paulyops.services.marketplace.manifest import MANIFEST_NAME, Manifest, parse_manifest

Status = Literal["ok", "failed", "skipped"]
CHECK_NAMES = ("archive", "checksums", "manifest", "signature", "compatibility", "dependencies")
STAGING_MODE = 0o700


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A publisher key the caller trusts, bound to its id namespace (``acme`` -> ``acme.*``)."""

    key: Ed25519PublicKey
    publisher: str

    @property
    def key_id(self) -> str:
        """The key's id."""
        return public_key_id(self.key)

    @property
    def fingerprint(self) -> str:
        """The sha256 (hex) of the raw public key: the key's full identity."""
        return key_fingerprint(self.key)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """Return the sha256 (hex) of a raw public key (its id is the first 8 characters)."""
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()


@dataclass(frozen=True, slots=True)
class RevokedKey:
    """A publisher key that was revoked: nothing it signed validates any more."""

    key: Ed25519PublicKey
    reason: str = ""

    @property
    def key_id(self) -> str:
        """The key's id."""
        return public_key_id(self.key)


@dataclass(frozen=True, slots=True)
class Revocations:
    """What the trust store revoked: keys, and package versions (id, version) -> reason."""

    keys: Sequence[RevokedKey] = ()
    versions: Mapping[tuple[str, str], str] = field(default_factory=dict)


NO_REVOCATIONS = Revocations()


@dataclass(frozen=True, slots=True)
class AvailableAgent:
    """An agent version dependencies may resolve to, with its own agent dependencies."""

    id: str
    version: str
    agents: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> AvailableAgent:
        """Describe the agent a manifest declares."""
        return cls(manifest.id, manifest.version, dict(manifest.dependencies.agents))


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _this_platform() -> str:
    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the package must be compatible with (default: this process)."""

    paulyops_version: str = __version__
    python_version: str = field(default_factory=_platform.python_version)
    platform: str = field(default_factory=_this_platform)
    library_version: Callable[[str], str | None] = _installed_version


@dataclass(frozen=True, slots=True)
class Check:
    """One named check of a package and its outcome."""

    name: str
    status: Status
    message: str
    field: str | None = None

    @property
    def is_ok(self) -> bool:
        """Whether the check passed."""
        return self.status == "ok"


@dataclass(slots=True)
class Report:
    """Every check of one package, in order, and what the checks established."""

    checks: list[Check] = field(default_factory=list)
    manifest: Manifest | None = None
    checksums_sha256: str | None = None
    signed_by: str | None = None
    signed_fingerprint: str | None = None

    @property
    def is_ok(self) -> bool:
        """Whether every check passed."""
        return all(check.is_ok for check in self.checks)

    def failures(self) -> list[Check]:
        """Return the failed checks."""
        return [check for check in self.checks if check.status == "failed"]

    def as_dict(self) -> dict[str, object]:
        """Return the JSON form (``package verify --json``)."""
        return {
            "ok": self.is_ok,
            "id": self.manifest.id if self.manifest else None,
            "version": self.manifest.version if self.manifest else None,
            "signedBy": self.signed_by,
            "checksumsSha256": self.checksums_sha256,
            "checks": [
                {"name": c.name, "status": c.status, "message": c.message, "field": c.field}
                for c in self.checks
            ],
        }

    def raise_for_failure(self) -> None:
        """Raise :class:`PackageError` naming every failed check, if any failed.

        Raises:
            PackageError: one ``FieldError`` per failed check (field = file or field).
        """
        failed = self.failures()
        if failed:
            errors = [FieldError(field=c.field or c.name, message=c.message) for c in failed]
            raise PackageError(f"package rejected: {failed[0].message}", errors)


class _CheckFailedError(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _check_checksums(contents: Contents) -> tuple[str, dict[str, str]]:
    raw = contents.small.get(CHECKSUMS_NAME)
    if raw is None:
        raise _CheckFailedError(
            f"{CHECKSUMS_NAME} is missing (build the package with `package build`)"
        )
    try:
        digests = parse_checksums(raw)
    except ValueError as err:
        raise _CheckFailedError(f"{CHECKSUMS_NAME}: {err}", CHECKSUMS_NAME) from None
    payload = set(contents.entries) - INTEGRITY_FILES
    for name in sorted(payload - set(digests)):
        raise _CheckFailedError(
            f"{name}: is in the archive but not listed in {CHECKSUMS_NAME}", name
        )
    for name in sorted(set(digests) - payload):
        raise _CheckFailedError(
            f"{name}: is listed in {CHECKSUMS_NAME} but not in the archive", name
        )
    for name in sorted(payload):
        if contents.entries[name].sha256 != digests[name]:
            raise _CheckFailedError(
                f"{name}: sha256 does not match {CHECKSUMS_NAME} (changed after build)", name
            )
    return hashlib.sha256(raw).hexdigest(), digests


def _check_manifest(contents: Contents, *, bundled: bool) -> Manifest:
    raw = contents.small.get(MANIFEST_NAME)
    if raw is None:
        raise _CheckFailedError(f"{MANIFEST_NAME} is missing", MANIFEST_NAME)
    try:
        manifest = parse_manifest(raw, bundled=bundled)
    except ManifestError as err:
        first = err.errors[0] if err.errors else None
        raise _CheckFailedError(
            err.message, f"{MANIFEST_NAME}:{first.field}" if first else None
        ) from None
    module = manifest.entry_module.replace(".", "/")
    if f"{module}.py" not in contents.entries and f"{module}/__init__.py" not in contents.entries:
        raise _CheckFailedError(
            f"{MANIFEST_NAME}: entrypoint: module {manifest.entry_module!r} is not in the "
            f"package (expected {module}.py or {module}/__init__.py)",
            f"{MANIFEST_NAME}:entrypoint",
        )
    return manifest


def _because(reason: str) -> str:
    return f" ({reason})" if reason else ""


def _check_revoked_version(manifest: Manifest | None, revoked: Revocations) -> None:
    if manifest is None:
        return
    reason = revoked.versions.get((manifest.id, manifest.version))
    if reason is not None:
        raise _CheckFailedError(
            f"{manifest.id} {manifest.version} was revoked by this instance{_because(reason)}",
            f"{MANIFEST_NAME}:version",
        )


def _check_unclaimed(manifest: Manifest | None, trusted: Sequence[TrustedKey]) -> None:
    """Refuse an unsigned package in a namespace a trusted key owns.

    Developer mode lets unsigned code in, never under a trusted publisher's name: an
    unsigned ``acme.reader 9.0`` would otherwise pass for the newest version of the
    verified ``acme.reader``.
    """
    if manifest is None:
        return
    owners = sorted({k.publisher for k in trusted if manifest.id.startswith(k.publisher + ".")})
    if owners:
        raise _CheckFailedError(
            f"{SIGNATURE_NAME} is missing: {manifest.id} is in {owners[0]}.*, which a trusted "
            "publisher key owns; only packages signed by that key are accepted there, even "
            "with unsigned packages allowed",
            SIGNATURE_NAME,
        )


def _check_signature(
    contents: Contents,
    manifest: Manifest | None,
    trusted: Sequence[TrustedKey],
    *,
    allow_unsigned: bool,
    bundled: bool,
    revoked: Revocations = NO_REVOCATIONS,
) -> tuple[TrustedKey | None, str]:
    _check_revoked_version(manifest, revoked)
    raw = contents.small.get(SIGNATURE_NAME)
    if raw is None:
        if bundled:
            return None, "unsigned; bundled with PaulyOps and trusted as part of it"
        if allow_unsigned:
            _check_unclaimed(manifest, trusted)
            return None, "unsigned; allowed by the unsigned-package setting (developer mode)"
        raise _CheckFailedError(
            f"{SIGNATURE_NAME} is missing: unsigned packages are refused unless allowed "
            "(--allow-unsigned)",
            SIGNATURE_NAME,
        )
    try:
        signature = parse_signature(raw)
    except ValueError as err:
        raise _CheckFailedError(f"{SIGNATURE_NAME}: {err}", SIGNATURE_NAME) from None
    checksums = contents.small[CHECKSUMS_NAME]
    message = signed_message(checksums)
    # A revoked key stays refused even where another list still trusts it.
    for gone in revoked.keys:
        if gone.key_id == signature.key_id and verify(gone.key, signature.value, message):
            raise _CheckFailedError(
                f"{SIGNATURE_NAME}: signed by key {signature.key_id}, which was revoked"
                f"{_because(gone.reason)}",
                SIGNATURE_NAME,
            )
    candidates = [t for t in trusted if t.key_id == signature.key_id]
    if not candidates:
        raise _CheckFailedError(
            f"{SIGNATURE_NAME}: signed by key {signature.key_id}, which is not a trusted key",
            SIGNATURE_NAME,
        )
    valid = [t for t in candidates if verify(t.key, signature.value, message)]
    if not valid:
        raise _CheckFailedError(
            f"{SIGNATURE_NAME}: does not verify with trusted key {signature.key_id}: "
            f"{CHECKSUMS_NAME} changed after signing, or the signature is forged",
            SIGNATURE_NAME,
        )
    if manifest is None:
        raise _CheckFailedError(
            f"{SIGNATURE_NAME}: cannot tell the package's namespace (manifest invalid)"
        )
    for key in valid:
        if manifest.id.startswith(key.publisher + "."):
            return key, f"signed by {key.key_id}, trusted for {key.publisher}.*"
    spaces = ", ".join(sorted(f"{k.publisher}.*" for k in valid))
    raise _CheckFailedError(
        f"{SIGNATURE_NAME}: key {signature.key_id} is trusted only for {spaces}, "
        f"not for {manifest.id}",
        SIGNATURE_NAME,
    )


def _in_range(version: str, spec: str) -> bool:
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def _check_compatibility(manifest: Manifest, runtime: Runtime) -> str:
    compat = manifest.compatibility
    if not _in_range(runtime.paulyops_version, compat.paulyops):
        raise _CheckFailedError(
            f"compatibility.paulyops: needs PaulyOps {compat.paulyops}, this is "
            f"{runtime.paulyops_version}",
            "compatibility.paulyops",
        )
    if not _in_range(runtime.python_version, compat.python):
        raise _CheckFailedError(
            f"compatibility.python: needs Python {compat.python}, this is {runtime.python_version}",
            "compatibility.python",
        )
    if runtime.platform not in compat.platforms:
        raise _CheckFailedError(
            f"compatibility.platforms: runs on {', '.join(compat.platforms)}, this is "
            f"{runtime.platform}",
            "compatibility.platforms",
        )
    return (
        f"PaulyOps {runtime.paulyops_version}, Python {runtime.python_version}, {runtime.platform}"
    )


def resolve_dependencies(manifest: Manifest, available: Iterable[AvailableAgent]) -> list[str]:
    """Return the agent versions the manifest's dependencies resolve to (``id==version``).

    The highest version in range wins; every agent appears once.

    Raises:
        PackageError: a dependency is missing, has no version in range, conflicts with
            another dependency's choice, or the dependencies form a cycle.
    """
    index: dict[str, list[AvailableAgent]] = {}
    for agent in available:
        index.setdefault(agent.id, []).append(agent)
    for versions in index.values():
        versions.sort(key=lambda a: Version(a.version), reverse=True)
    root = AvailableAgent.from_manifest(manifest)
    chosen: dict[str, AvailableAgent] = {root.id: root}

    def fail(message: str) -> PackageError:
        return PackageError(message, [FieldError(field="dependencies.agents", message=message)])

    def visit(agent: AvailableAgent, path: list[str]) -> None:
        for dep, spec in sorted(agent.agents.items()):
            if dep in path:
                cycle = " -> ".join([*path[path.index(dep) :], dep])
                raise fail(f"dependencies.agents: cycle {cycle}")
            if dep in chosen:
                if not _in_range(chosen[dep].version, spec):
                    raise fail(
                        f"dependencies.agents: {agent.id} needs {dep} {spec}, but "
                        f"{dep} {chosen[dep].version} is needed elsewhere"
                    )
                if dep not in path:
                    continue
            candidates = index.get(dep, [])
            if not candidates:
                raise fail(f"dependencies.agents: {agent.id} needs {dep}, which is not available")
            matching = [c for c in candidates if _in_range(c.version, spec)]
            if not matching:
                versions = ", ".join(c.version for c in candidates)
                raise fail(
                    f"dependencies.agents: {agent.id} needs {dep} {spec}; available: {versions}"
                )
            chosen[dep] = matching[0]
            visit(matching[0], [*path, dep])

    visit(root, [root.id])
    return [f"{a.id}=={a.version}" for a in chosen.values() if a.id != root.id]


def _check_dependencies(
    manifest: Manifest, available: Sequence[AvailableAgent], runtime: Runtime
) -> str:
    try:
        agents = resolve_dependencies(manifest, available)
    except PackageError as err:
        raise _CheckFailedError(err.message, "dependencies.agents") from None
    for name, spec in sorted(manifest.dependencies.libraries.items()):
        installed = runtime.library_version(name)
        if installed is None or not _in_range(installed, spec):
            have = f"{name} {installed} is installed" if installed else "it is not installed"
            raise _CheckFailedError(
                f"dependencies.libraries: needs {name}{spec} from the platform, but {have}",
                f"dependencies.libraries.{name}",
            )
    parts = agents + [f"{n}{s}" for n, s in sorted(manifest.dependencies.libraries.items())]
    return "resolved: " + ", ".join(parts) if parts else "no dependencies"


def validate_package(
    source: Path | BinaryIO,
    *,
    trusted: Sequence[TrustedKey] = (),
    allow_unsigned: bool = False,
    bundled: bool = False,
    limits: Limits | None = None,
    runtime: Runtime | None = None,
    available: Sequence[AvailableAgent] = (),
    revoked: Revocations = NO_REVOCATIONS,
) -> Report:
    """Run every check on a package, writing nothing; return the report.

    Args:
        source: the ``.pauly`` archive (path or seekable binary file).
        trusted: the publisher keys to accept signatures from.
        allow_unsigned: accept a package without ``SIGNATURE`` (developer mode).
        bundled: the package ships with PaulyOps (the ``paulyops.`` prefix is allowed and
            it is trusted as part of the distribution).
        limits: archive limits (default :class:`Limits`).
        runtime: what the package must be compatible with (default: this process).
        available: the agent versions dependencies may resolve to.
        revoked: revoked keys and package versions (the instance trust store's): a
            package signed by a revoked key, or of a revoked version, is refused.
    """
    runtime = runtime or Runtime()
    report = Report()

    def run(name: str, step: Callable[[], str]) -> bool:
        try:
            message = step()
        except _CheckFailedError as failed:
            report.checks.append(Check(name, "failed", failed.message, failed.field))
            return False
        report.checks.append(Check(name, "ok", message))
        return True

    def skip(names: Sequence[str], why: str) -> None:
        report.checks.extend(Check(n, "skipped", why) for n in names)

    contents = Contents()

    def archive() -> str:
        nonlocal contents
        try:
            contents = scan(source, limits)
        except ArchiveError as err:
            raise _CheckFailedError(err.message, err.entry) from None
        size = sum(e.size for e in contents.entries.values())
        return f"{len(contents.entries)} files, {size} bytes, canonical form"

    if not run("archive", archive):
        skip(CHECK_NAMES[1:], "skipped: the archive failed its safety checks")
        return report

    def checksums() -> str:
        report.checksums_sha256, digests = _check_checksums(contents)
        return f"{len(digests)} files match {CHECKSUMS_NAME}"

    checksums_ok = run("checksums", checksums)

    def manifest_step() -> str:
        report.manifest = _check_manifest(contents, bundled=bundled)
        return f"{report.manifest.id} {report.manifest.version}"

    manifest_ok = run("manifest", manifest_step)
    if checksums_ok:

        def signature() -> str:
            key, message = _check_signature(
                contents,
                report.manifest,
                trusted,
                allow_unsigned=allow_unsigned,
                bundled=bundled,
                revoked=revoked,
            )
            if key is not None:
                report.signed_by, report.signed_fingerprint = key.key_id, key.fingerprint
            return message

        run("signature", signature)
    else:
        skip(["signature"], f"skipped: {CHECKSUMS_NAME} failed")
    manifest = report.manifest
    if manifest_ok and manifest is not None:
        run("compatibility", lambda: _check_compatibility(manifest, runtime))
        run("dependencies", lambda: _check_dependencies(manifest, available, runtime))
    else:
        skip(["compatibility", "dependencies"], f"skipped: {MANIFEST_NAME} failed")
    return report


def _make_staging(dest: Path) -> None:
    try:
        dest.mkdir(mode=STAGING_MODE)
    except FileExistsError:
        raise ArchiveError(
            str(dest), "staging folder exists already; unpack needs a fresh one"
        ) from None
    os.chmod(dest, STAGING_MODE)


def unpack(
    source: Path,
    dest: Path,
    *,
    expected_checksums_sha256: str | None = None,
    limits: Limits | None = None,
) -> Path:
    """Write a package's files into the fresh private folder ``dest`` (created 0700).

    Every entry is checked again while it is written (the archive may have changed since
    it was validated); with ``expected_checksums_sha256`` (``Report.checksums_sha256``)
    the package must be the very one validated. On any failure ``dest`` is removed.

    Raises:
        ArchiveError: ``dest`` exists, or the archive fails a check.
    """
    _make_staging(dest)
    real = dest.resolve()
    try:
        files: list[BinaryIO] = []

        def sink(name: str) -> Callable[[bytes], None]:
            target = real.joinpath(*name.split("/"))
            if real not in target.parents:
                raise ArchiveError(name, "would be written outside the staging folder")
            target.parent.mkdir(mode=STAGING_MODE, parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fh = os.fdopen(os.open(target, flags, 0o600), "wb")
            files.append(fh)
            return fh.write  # type: ignore[return-value]  # write returns int; ignored

        try:
            contents = scan(source, limits, sink)
        finally:
            for fh in files:
                fh.close()
        digest, _ = _check_checksums(contents)
        if expected_checksums_sha256 is not None and digest != expected_checksums_sha256:
            raise ArchiveError(CHECKSUMS_NAME, "differs from the package that was validated")
    except _CheckFailedError as failed:
        shutil.rmtree(dest, ignore_errors=True)
        entry = failed.field or CHECKSUMS_NAME
        raise ArchiveError(entry, failed.message.removeprefix(f"{entry}: ")) from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def stage_package(
    source: Path,
    dest: Path,
    *,
    trusted: Sequence[TrustedKey] = (),
    allow_unsigned: bool = False,
    bundled: bool = False,
    limits: Limits | None = None,
    runtime: Runtime | None = None,
    available: Sequence[AvailableAgent] = (),
    revoked: Revocations = NO_REVOCATIONS,
) -> Report:
    """Validate a package and, only if every check passes, unpack it into ``dest``.

    The way in for installing: a rejected package writes nothing at all, and one that
    changes between validation and unpacking leaves no staging folder behind.

    Raises:
        PackageError: a check failed (nothing was written).
        ArchiveError: the archive changed after validation (``dest`` was removed).
    """
    report = validate_package(
        source,
        trusted=trusted,
        allow_unsigned=allow_unsigned,
        bundled=bundled,
        limits=limits,
        runtime=runtime,
        available=available,
        revoked=revoked,
    )
    report.raise_for_failure()
    unpack(source, dest, expected_checksums_sha256=report.checksums_sha256, limits=limits)
    return report


__all__ = [
    "CHECK_NAMES",
    "NO_REVOCATIONS",
    "AvailableAgent",
    "Check",
    "Report",
    "Revocations",
    "RevokedKey",
    "Runtime",
    "TrustedKey",
    "key_fingerprint",
    "resolve_dependencies",
    "stage_package",
    "unpack",
    "validate_package",
]
