"""The publisher's side of a catalog: a TUF repository on disk, written with ``tuf.api``.

A catalog directory is what gets hosted (a static web server, a bucket, a folder carried
to an air-gapped site)::

    DIR/metadata/1.root.json ...  N.root.json, root.json (the newest root)
    DIR/metadata/timestamp.json   N.snapshot.json  N.targets.json  N.<publisher>.json
    DIR/targets/<sha256>.<id>-<version>.pauly

Consistent snapshots (versioned metadata names, hash-prefixed targets) mean a reader never
sees half an update: every new file gets a new name, and ``timestamp.json``, written last,
switches to the new state in one rename.

The TUF role keys live in a separate keys directory, never hosted, and are separate from
the authors' package signing keys (DESIGN.md, "Catalogs (TUF)"): the top-level
``targets`` role delegates ``<publisher>.*`` to one role per publisher, so a publisher's
key can list only packages in its own namespace. Yanked versions travel in each target's
signed ``custom`` field; revoked author keys and package versions in the signed
``x-paulyops-revocations`` field of the top-level targets metadata.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from paulyops.core.errors import ConfigError, ConflictError, NotFoundError
from paulyops.core.security.signatures import (
    generate_key,
    load_private_key,
    save_private_key,
)
from paulyops.services.marketplace.errors import PackageError
from paulyops.services.marketplace.integrity import SIGNATURE_NAME
from paulyops.services.marketplace.validate import TrustedKey, validate_package

TOP_ROLES: Final = ("root", "targets", "snapshot", "timestamp")
#: Default lifetimes (DESIGN.md): the online-ish roles expire soon, so a frozen catalog
#: is noticed within a week; root, kept offline, lasts a year.
DEFAULT_EXPIRY_DAYS: Final = {"timestamp": 7, "snapshot": 30, "targets": 90, "root": 365}
REVOCATIONS_FIELD: Final = "x-paulyops-revocations"
CUSTOM_FIELD: Final = "paulyops"
PACKAGE_SUFFIX: Final = ".pauly"
KEY_SUFFIX: Final = ".key"
_SERIALIZER: Final = JSONSerializer(compact=False)


def default_keys_dir(directory: Path) -> Path:
    """Return the keys directory used when none is given: ``<DIR>-keys`` beside it."""
    return directory.parent / f"{directory.name}-keys"


def root_fingerprint(data: bytes) -> str:
    """Return the fingerprint of a root metadata file: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def target_path(agent_id: str, version: str) -> str:
    """Return the target name of one package version (matched by ``<publisher>.*``)."""
    return f"{agent_id}-{version}{PACKAGE_SUFFIX}"


def _expiry(role: str, days: dict[str, int] | None = None) -> datetime:
    lifetimes = {**DEFAULT_EXPIRY_DAYS, **(days or {})}
    key = role if role in TOP_ROLES else "targets"
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=lifetimes[key])


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class KeyRing:
    """The private keys of a catalog's TUF roles, one PEM file per key (mode 0600).

    A file is named ``<role>.<tuf key id>.key``; publisher delegations use the role name
    ``publisher-<name>``. Keys are looked up by the key ids the metadata names, so old
    root keys kept after a rotation are simply no longer used.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create(self, role: str) -> CryptoSigner:
        """Generate, save and return a new key for ``role``."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = generate_key()
        signer = CryptoSigner(key)
        save_private_key(key, self.directory / f"{role}.{signer.public_key.keyid}{KEY_SUFFIX}")
        return signer

    def signers(self, role: str, keyids: Iterable[str]) -> list[CryptoSigner]:
        """Return the signers this ring holds for ``role`` among ``keyids``."""
        out = []
        for keyid in keyids:
            path = self.directory / f"{role}.{keyid}{KEY_SUFFIX}"
            if path.is_file():
                out.append(CryptoSigner(load_private_key(path)))
        return out


@dataclass
class _State:
    """A catalog's current metadata, loaded from its directory."""

    root: Metadata[Root]
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    delegated: dict[str, Metadata[Targets]] = field(default_factory=dict)
    #: roles made in this change, not written yet: they keep version 1
    new: set[str] = field(default_factory=set)


def _metadata_dir(directory: Path) -> Path:
    return directory / "metadata"


def _load(directory: Path) -> _State:
    meta = _metadata_dir(directory)
    if not (meta / "timestamp.json").is_file():
        raise NotFoundError(
            f"{directory}: not a catalog (no metadata/timestamp.json); "
            f"create one with `paulyops marketplace catalog init {directory}`"
        )
    timestamp = Metadata[Timestamp].from_file(str(meta / "timestamp.json"))
    snapshot = Metadata[Snapshot].from_file(
        str(meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json")
    )
    root = Metadata[Root].from_file(str(meta / "root.json"))
    files = snapshot.signed.meta
    targets = Metadata[Targets].from_file(
        str(meta / f"{files['targets.json'].version}.targets.json")
    )
    delegated = {
        name.removesuffix(".json"): Metadata[Targets].from_file(
            str(meta / f"{info.version}.{name}")
        )
        for name, info in files.items()
        if name != "targets.json"
    }
    return _State(root, timestamp, snapshot, targets, delegated)


def _sign(md: Metadata[Any], signers: Sequence[CryptoSigner], what: str, threshold: int) -> None:
    if len(signers) < threshold:
        raise ConfigError(
            f"{what}: needs {threshold} signature(s), the keys directory holds "
            f"{len(signers)} of its keys"
        )
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)


def _bump(signed: Signed, role: str, days: dict[str, int] | None, *, new: bool = False) -> None:
    if not new:
        signed.version += 1
    signed.expires = _expiry(role, days)


class _Writer:
    """Re-signs changed roles, then snapshot and timestamp, and writes them in safe order."""

    def __init__(
        self, directory: Path, keys: KeyRing, state: _State, days: dict[str, int] | None
    ) -> None:
        self.directory = directory
        self.keys = keys
        self.state = state
        self.days = days

    def _sign_top(self, md: Metadata[Any], role: str) -> None:
        spec = self.state.root.signed.roles[role]
        _sign(md, self.keys.signers(role, spec.keyids), f"{role}.json", spec.threshold)

    def _sign_delegated(self, name: str) -> None:
        delegations = self.state.targets.signed.delegations
        # the role was created with its delegation
        assert delegations is not None
        assert delegations.roles is not None
        spec = delegations.roles[name]
        md = self.state.delegated[name]
        _sign(md, self.keys.signers(f"publisher-{name}", spec.keyids), f"{name}.json", 1)

    def commit(self, *, targets: bool, delegated: Iterable[str] = ()) -> None:
        """Write new versions of the changed roles plus a new snapshot and timestamp."""
        meta = _metadata_dir(self.directory)
        files: dict[str, bytes] = {}
        for name in delegated:
            md = self.state.delegated[name]
            _bump(md.signed, name, self.days, new=name in self.state.new)
            self._sign_delegated(name)
            files[f"{name}.json"] = md.to_bytes(_SERIALIZER)
        if targets:
            _bump(self.state.targets.signed, "targets", self.days, new="targets" in self.state.new)
            self._sign_top(self.state.targets, "targets")
            files["targets.json"] = self.state.targets.to_bytes(_SERIALIZER)
        snapshot = self.state.snapshot
        for name, data in files.items():
            version = (
                self.state.targets if name == "targets.json" else self.state.delegated[name[:-5]]
            ).signed.version
            snapshot.signed.meta[name] = MetaFile.from_data(version, data, ["sha256"])
            _write_atomic(meta / f"{version}.{name}", data)
        _bump(snapshot.signed, "snapshot", self.days, new="snapshot" in self.state.new)
        self._sign_top(snapshot, "snapshot")
        snap_bytes = snapshot.to_bytes(_SERIALIZER)
        _write_atomic(meta / f"{snapshot.signed.version}.snapshot.json", snap_bytes)
        timestamp = self.state.timestamp
        timestamp.signed.snapshot_meta = MetaFile.from_data(
            snapshot.signed.version, snap_bytes, ["sha256"]
        )
        _bump(timestamp.signed, "timestamp", self.days, new="timestamp" in self.state.new)
        self._sign_top(timestamp, "timestamp")
        _write_atomic(meta / "timestamp.json", timestamp.to_bytes(_SERIALIZER))


@dataclass(frozen=True, slots=True)
class CatalogInfo:
    """What ``catalog init`` made: where, and the root fingerprint to hand out."""

    directory: Path
    keys_dir: Path
    root_path: Path
    fingerprint: str


def _write_root(directory: Path, root: Metadata[Root]) -> Path:
    data = root.to_bytes(_SERIALIZER)
    meta = _metadata_dir(directory)
    path = meta / f"{root.signed.version}.root.json"
    _write_atomic(path, data)
    _write_atomic(meta / "root.json", data)
    return path


def init_catalog(
    directory: Path,
    keys_dir: Path | None = None,
    *,
    root_keys: int = 1,
    root_threshold: int = 1,
    expiry_days: dict[str, int] | None = None,
) -> CatalogInfo:
    """Create an empty catalog in ``directory`` and new keys for its TUF roles.

    Args:
        directory: the folder to host; created, must not hold a catalog yet.
        keys_dir: where the role keys go (default :func:`default_keys_dir`); never host it.
        root_keys: how many root keys to make.
        root_threshold: how many of them must sign a new root.
        expiry_days: lifetimes per role, overriding :data:`DEFAULT_EXPIRY_DAYS`.

    Raises:
        ConfigError: a bad threshold.
        ConflictError: the folder already holds a catalog, or the keys folder holds keys.
    """
    keys_dir = keys_dir or default_keys_dir(directory)
    if not 1 <= root_threshold <= root_keys:
        raise ConfigError(
            f"--root-threshold: expected 1 to {root_keys} (the number of root keys), "
            f"got {root_threshold}"
        )
    if _metadata_dir(directory).exists():
        raise ConflictError(f"{directory}: already holds a catalog (metadata/ exists)")
    if keys_dir.exists() and any(keys_dir.iterdir()):
        raise ConflictError(f"{keys_dir}: already holds keys; refusing to mix catalogs")
    if keys_dir.resolve().is_relative_to(directory.resolve()):
        raise ConfigError(
            f"{keys_dir}: the keys folder must not be inside the catalog folder, "
            "which is published as a whole"
        )
    keys = KeyRing(keys_dir)
    root = Root(expires=_expiry("root", expiry_days), consistent_snapshot=True)
    root_signers = [keys.create("root") for _ in range(root_keys)]
    for signer in root_signers:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = root_threshold
    role_signers = {}
    for role in ("targets", "snapshot", "timestamp"):
        role_signers[role] = keys.create(role)
        root.add_key(role_signers[role].public_key, role)
    root_md = Metadata(root)
    _sign(root_md, root_signers, "root.json", root_threshold)
    (directory / "targets").mkdir(parents=True, exist_ok=True)
    _metadata_dir(directory).mkdir()
    targets = Metadata(
        Targets(
            expires=_expiry("targets", expiry_days),
            delegations=Delegations(keys={}, roles={}),
            unrecognized_fields={REVOCATIONS_FIELD: {"keys": [], "versions": []}},
        )
    )
    state = _State(
        root=root_md,
        timestamp=Metadata(Timestamp(expires=_expiry("timestamp", expiry_days))),
        snapshot=Metadata(Snapshot(expires=_expiry("snapshot", expiry_days))),
        targets=targets,
        new={"targets", "snapshot", "timestamp"},
    )
    root_path = _write_root(directory, root_md)
    _Writer(directory, keys, state, expiry_days).commit(targets=True)
    return CatalogInfo(directory, keys_dir, root_path, root_fingerprint(root_path.read_bytes()))


@dataclass(frozen=True, slots=True)
class Published:
    """One package version added to a catalog."""

    agent_id: str
    version: str
    target: str
    length: int
    sha256: str
    publisher: str
    created_delegation: bool
    already_present: bool = False


def _check_package(package: Path, trusted: Sequence[TrustedKey]) -> tuple[Any, bytes]:
    """Validate a package for publishing; return its manifest and bytes."""
    data = package.read_bytes()
    report = validate_package(package, trusted=trusted, allow_unsigned=not trusted)
    blocking = [c for c in report.failures() if trusted or c.name != "signature"]
    if blocking:
        report.raise_for_failure()
    with zipfile.ZipFile(package) as archive:
        if SIGNATURE_NAME not in archive.namelist():
            raise PackageError(
                f"{package}: not signed; a catalog carries only signed packages "
                "(`paulyops package sign PKG --key FILE`)"
            )
    assert report.manifest is not None  # every check passed
    return report.manifest, data


def publish_package(
    package: Path,
    directory: Path,
    keys_dir: Path | None = None,
    *,
    trusted: Sequence[TrustedKey] = (),
    expiry_days: dict[str, int] | None = None,
) -> Published:
    """Add a signed package under its publisher's delegation and re-sign the catalog.

    The first package of a publisher creates its delegation (``<publisher>.*``) with a
    new key. A version already published with the same bytes is left as it is; with
    other bytes it is refused (published versions never change).

    Args:
        package: the signed ``.pauly`` file.
        directory: the catalog folder.
        keys_dir: its keys (default :func:`default_keys_dir`).
        trusted: author keys to check the package signature against (when empty the
            signature must exist but is checked by each instance that installs it).
        expiry_days: lifetimes per role.

    Raises:
        PackageError: the package fails validation or is unsigned.
        ConflictError: the version is published already with other bytes.
        NotFoundError: ``directory`` is not a catalog.
    """
    keys = KeyRing(keys_dir or default_keys_dir(directory))
    manifest, data = _check_package(package, trusted)
    state = _load(directory)
    publisher = manifest.publisher
    if publisher in TOP_ROLES:
        raise ConfigError(f"publisher {publisher!r}: the name of a TUF role; cannot be delegated")
    name = target_path(manifest.id, manifest.version)
    digest = hashlib.sha256(data).hexdigest()
    delegations = state.targets.signed.delegations
    assert delegations is not None  # init_catalog makes them
    assert delegations.roles is not None
    created = publisher not in delegations.roles
    if created:
        signer = keys.create(f"publisher-{publisher}")
        delegations.keys[signer.public_key.keyid] = signer.public_key
        delegations.roles[publisher] = DelegatedRole(
            name=publisher,
            keyids=[signer.public_key.keyid],
            threshold=1,
            terminating=True,
            paths=[f"{publisher}.*"],
        )
        state.delegated[publisher] = Metadata(Targets(expires=_expiry(publisher, expiry_days)))
        state.new.add(publisher)
    role = state.delegated[publisher]
    existing = role.signed.targets.get(name)
    if existing is not None:
        if existing.hashes.get("sha256") == digest:
            return Published(
                manifest.id, manifest.version, name, len(data), digest, publisher, False, True
            )
        raise ConflictError(
            f"{name}: version {manifest.version} is published already with other bytes; "
            "published versions never change (publish a new version)"
        )
    target = TargetFile.from_data(name, data, ["sha256"])
    target.unrecognized_fields["custom"] = {
        CUSTOM_FIELD: {
            "id": manifest.id,
            "version": manifest.version,
            "name": manifest.name,
            "description": manifest.description,
            "publisher": publisher,
            "yanked": False,
        }
    }
    role.signed.targets[name] = target
    _write_atomic(directory / "targets" / f"{digest}.{name}", data)
    _Writer(directory, keys, state, expiry_days).commit(targets=created, delegated=[publisher])
    return Published(manifest.id, manifest.version, name, len(data), digest, publisher, created)


def yank_version(
    directory: Path,
    agent_id: str,
    version: str,
    keys_dir: Path | None = None,
    *,
    reason: str = "",
    expiry_days: dict[str, int] | None = None,
) -> None:
    """Mark one published version yanked (listed, but never newly installed).

    Raises:
        NotFoundError: the version is not in the catalog.
    """
    state = _load(directory)
    publisher = agent_id.partition(".")[0]
    name = target_path(agent_id, version)
    role = state.delegated.get(publisher)
    if role is None or name not in role.signed.targets:
        raise NotFoundError(f"{agent_id} {version}: not in the catalog {directory}")
    custom = role.signed.targets[name].unrecognized_fields["custom"][CUSTOM_FIELD]
    custom["yanked"] = True
    custom["yankedReason"] = reason
    keys = KeyRing(keys_dir or default_keys_dir(directory))
    _Writer(directory, keys, state, expiry_days).commit(targets=False, delegated=[publisher])


def revoke(
    directory: Path,
    keys_dir: Path | None = None,
    *,
    key_id: str | None = None,
    package: tuple[str, str] | None = None,
    expiry_days: dict[str, int] | None = None,
) -> None:
    """Revoke an author key id or one package version, in the signed top-level targets.

    Raises:
        ConfigError: neither or both given.
    """
    if (key_id is None) == (package is None):
        raise ConfigError("revoke: give exactly one of an author key id or ID==VERSION")
    state = _load(directory)
    fields = state.targets.signed.unrecognized_fields.setdefault(
        REVOCATIONS_FIELD, {"keys": [], "versions": []}
    )
    if key_id is not None and key_id not in fields["keys"]:
        fields["keys"].append(key_id)
    if package is not None:
        entry = {"id": package[0], "version": package[1]}
        if entry not in fields["versions"]:
            fields["versions"].append(entry)
    keys = KeyRing(keys_dir or default_keys_dir(directory))
    _Writer(directory, keys, state, expiry_days).commit(targets=True)


def renew(
    directory: Path, keys_dir: Path | None = None, *, expiry_days: dict[str, int] | None = None
) -> int:
    """Re-sign targets, every delegation, snapshot and timestamp with fresh expiries.

    Returns the new timestamp version. The one fix for metadata that expired: an instance
    refuses expired metadata and nothing on its side can change that.
    """
    state = _load(directory)
    keys = KeyRing(keys_dir or default_keys_dir(directory))
    _Writer(directory, keys, state, expiry_days).commit(
        targets=True, delegated=list(state.delegated)
    )
    return state.timestamp.signed.version


def rotate_root(
    directory: Path,
    keys_dir: Path | None = None,
    *,
    new_keys: int = 1,
    threshold: int = 1,
    expiry_days: dict[str, int] | None = None,
) -> CatalogInfo:
    """Replace the root keys: a new root signed by the old threshold and the new one.

    Instances that trust the old root follow the chain (each root signed by its
    predecessor's threshold), so no one needs the new root out of band.

    Raises:
        ConfigError: a bad threshold, or too few old root keys in the keys folder.
    """
    if not 1 <= threshold <= new_keys:
        raise ConfigError(f"--threshold: expected 1 to {new_keys}, got {threshold}")
    state = _load(directory)
    keys = KeyRing(keys_dir or default_keys_dir(directory))
    old_spec = state.root.signed.roles["root"]
    old_signers = keys.signers("root", old_spec.keyids)
    if len(old_signers) < old_spec.threshold:
        raise ConfigError(
            f"root.json: the current root needs {old_spec.threshold} signature(s); the keys "
            f"folder holds {len(old_signers)} of its keys"
        )
    root = state.root.signed
    for keyid in list(old_spec.keyids):
        root.revoke_key(keyid, "root")
    new_signers = [keys.create("root") for _ in range(new_keys)]
    for signer in new_signers:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = threshold
    _bump(root, "root", expiry_days)
    state.root.signatures.clear()
    for signer in [*old_signers[: old_spec.threshold], *new_signers]:
        state.root.sign(signer, append=True)
    path = _write_root(directory, state.root)
    return CatalogInfo(directory, keys.directory, path, root_fingerprint(path.read_bytes()))


__all__ = [
    "CUSTOM_FIELD",
    "DEFAULT_EXPIRY_DAYS",
    "REVOCATIONS_FIELD",
    "CatalogInfo",
    "KeyRing",
    "Published",
    "default_keys_dir",
    "init_catalog",
    "publish_package",
    "renew",
    "revoke",
    "root_fingerprint",
    "rotate_root",
    "target_path",
    "yank_version",
]
