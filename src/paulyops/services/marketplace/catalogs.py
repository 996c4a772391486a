"""Catalog sources on the instance side: pin, refresh, list and fetch, with ``tuf``'s client.

A catalog is a TUF repository (made by :mod:`.publish`) in a folder or at an http(s) URL.
``sources add`` pins a root obtained out of band; every refresh then runs
``tuf.ngclient.Updater`` on a private temporary copy of the metadata the database holds,
so each machine starts from the same last-seen state and the rollback, freeze,
mix-and-match and endless-data checks are tuf's own. What tuf accepted is written back
to ``catalog_metadata`` in one transaction; a refusal changes nothing and leaves nothing
on disk.

On top of tuf, each listed package must be in its publisher's namespace: the delegation
of publisher ``acme`` must be exactly the path pattern ``acme.*``, and every target it
lists must be ``<id>-<version>.pauly`` with an id starting ``acme.``. Rolled-back metadata
(a catalog rebuilt on purpose), a new root (after a key compromise) and expired metadata
(a publisher who let it lapse) are accepted only through :func:`repin_source`, which
writes an audit row.

Accepting expired metadata is bounded: the repin records, per role, the exact version
and sha256 of the expired metadata it saw; later refreshes accept expired metadata only
when it is byte for byte one of those. A newer version that is expired too is refused
again, a rollback is refused as always, and once the publisher re-signs (metadata that
is not expired) the acceptance of that role lapses for good. ``tuf`` 7 has no public
setting for the time it checks expiry against, so in that one case the updater's
reference time is moved back (:func:`_check_expiry_ourselves`) and the expiry of every
role is checked here instead, against the acceptance, right after tuf's refresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from sqlalchemy import delete, select
from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization import DeserializationError
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from paulyops.core.db import Session
from paulyops.core.db.engine import Database
from paulyops.core.db.models import CatalogMetadata, CatalogSource, utcnow
from paulyops.core.errors import (
    ConfigError,
    ConflictError,
    ExternalServiceError,
    NotFoundError,
)
from paulyops.core.logging import security_event
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.marketplace.catalog_listing import (
    NAME_PATTERN,
    TOP_ROLES,
    CatalogEntry,
    Listing,
    delegation_problem,
    listing_of,
)
from paulyops.services.marketplace.fetchers import DirectoryFetcher, HttpFetcher
from paulyops.services.marketplace.publish import root_fingerprint, target_path
from paulyops.services.marketplace.validate import Report, TrustedKey, validate_package

#: Caps for metadata whose length is not signed by its parent (tuf's defaults are larger:
#: a catalog of a few thousand packages fits well within these).
CONFIG: Final = UpdaterConfig(
    max_root_rotations=32,
    max_delegations=256,
    root_max_length=256 * 1024,
    timestamp_max_length=16 * 1024,
    snapshot_max_length=2 * 1024 * 1024,
    targets_max_length=4 * 1024 * 1024,
    app_user_agent=None,
)


class CatalogError(ExternalServiceError):
    """A catalog's metadata or package was refused (or could not be read).

    Args:
        source: the catalog's name.
        reason: a stable code: ``expired``, ``rollback``, ``mismatch``, ``too-large``,
            ``slow``, ``signature``, ``namespace``, ``revoked``, ``yanked``, ``invalid`` or
            ``unreachable``.
        message: the one clear sentence shown to the operator.
    """

    def __init__(self, source: str, reason: str, message: str) -> None:
        super().__init__(f"catalog {source!r}: {message}")
        self.source = source
        self.reason = reason


class FingerprintRequiredError(ConfigError):
    """``sources add`` fetched the catalog's root: the operator must confirm its fingerprint."""

    def __init__(self, fingerprint: str, location: str) -> None:
        super().__init__(
            f"{location}: the catalog's root has fingerprint {fingerprint}; check it with the "
            "publisher (out of band) and run again with --fingerprint " + fingerprint
        )
        self.fingerprint = fingerprint


# --- views ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceView:
    """A catalog source as the CLI and the console show it."""

    name: str
    location: str
    kind: str
    root_sha256: str
    versions: Mapping[str, int]
    last_refreshed_at: datetime | None
    accepted_expired: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """The outcome of one refresh: the role versions now trusted and the listing.

    ``accepted_expired`` names the roles (and versions) in use although expired, because
    an operator accepted exactly them with ``sources repin --accept-expired``.
    """

    source: str
    versions: Mapping[str, int]
    changed: bool
    listing: Listing
    accepted_expired: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FetchedPackage:
    """A package downloaded through a catalog and accepted by the package validator."""

    entry: CatalogEntry
    data: bytes
    report: Report


def _accepted_versions(accepted: Mapping[str, Any]) -> dict[str, int]:
    roles = accepted.get("roles") or {}
    return {role: int(entry["version"]) for role, entry in roles.items()}


def _view(row: CatalogSource) -> SourceView:
    return SourceView(
        row.name,
        row.location,
        row.kind,
        row.root_sha256,
        dict(row.versions),
        row.last_refreshed_at,
        _accepted_versions(row.accepted_expired or {}),
    )


@dataclass(frozen=True, slots=True)
class _Source:
    """What a refresh needs of a source row, detached from any session."""

    id: str
    name: str
    kind: str
    location: str
    versions: Mapping[str, int]
    accepted: Mapping[str, Any]

    @classmethod
    def of(cls, row: CatalogSource) -> _Source:
        return cls(
            row.id,
            row.name,
            row.kind,
            row.location,
            dict(row.versions),
            dict(row.accepted_expired or {}),
        )


# --- locations and fetchers -------------------------------------------------------------


def _parse_location(location: str) -> tuple[str, str]:
    """Return (kind, normalized location) of a catalog given as URL or folder."""
    if location.startswith(("http://", "https://")):
        return "http", location.rstrip("/")
    if "://" in location:
        raise ConfigError(f"{location}: a catalog is an http(s) URL or a folder")
    path = Path(location).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{location}: no such folder")
    return "dir", os.path.abspath(path)


def _base_url(kind: str, location: str) -> str:
    return Path(location).as_uri() if kind == "dir" else location


def default_fetcher(kind: str, location: str) -> FetcherInterface:
    """Return the fetcher of a source: a folder reader or the http fetcher."""
    if kind == "dir":
        return DirectoryFetcher(Path(location))
    return HttpFetcher()


# --- roots --------------------------------------------------------------------------------


def _check_root(data: bytes, what: str) -> Metadata[Root]:
    """Parse a root and check it is signed by its own threshold."""
    try:
        root = Metadata[Root].from_bytes(data)
        root.verify_delegate(Root.type, root)
    except exceptions.UnsignedMetadataError as err:
        raise ConfigError(f"{what}: not signed by its own root threshold: {err}") from None
    except (DeserializationError, ValueError, KeyError) as err:
        raise ConfigError(f"{what}: not TUF root metadata: {err}") from None
    if not isinstance(root.signed, Root):
        raise ConfigError(f"{what}: not TUF root metadata (it is {root.signed.type})")
    return root


def _download_root(kind: str, location: str, fetcher: FetcherInterface) -> bytes:
    url = f"{_base_url(kind, location)}/metadata/root.json"
    try:
        return fetcher.download_bytes(url, CONFIG.root_max_length)
    except exceptions.DownloadError as err:
        raise ExternalServiceError(f"{location}: cannot read its root: {err}") from None


def _get(session: Session, name: str) -> CatalogSource:
    row = session.scalars(select(CatalogSource).where(CatalogSource.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(f"catalog source {name!r}: not found (see `sources list`)")
    return row


def _stored(session: Session, source_id: str) -> dict[str, bytes]:
    rows = session.scalars(select(CatalogMetadata).where(CatalogMetadata.source_id == source_id))
    return {row.role: row.data for row in rows}


def add_source(
    db: Database,
    name: str,
    location: str,
    actor: Actor,
    *,
    root: bytes | None = None,
    fingerprint: str | None = None,
    fetcher: FetcherInterface | None = None,
) -> SourceView:
    """Pin a catalog: a root obtained out of band, or the catalog's own after confirmation.

    Args:
        db: the instance database.
        name: a short name for the source (lowercase letters, digits, ``-``).
        location: an http(s) URL or a folder.
        actor: who adds it (audited).
        root: the root metadata file's bytes, obtained out of band.
        fingerprint: the sha256 of the root the operator confirmed; required when no
            ``root`` is given (the catalog's ``metadata/root.json`` is then read).
        fetcher: how to read the catalog (default: by its kind).

    Raises:
        FingerprintRequiredError: no root and no fingerprint: shows the fingerprint.
        ConfigError: a bad name, location, root, or a fingerprint that does not match.
        ConflictError: a source of that name exists.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"name: expected lowercase letters, digits and '-' (at most 64), got {name!r}"
        )
    kind, normalized = _parse_location(location)
    if root is None:
        probe = fetcher or default_fetcher(kind, normalized)
        try:
            root = _download_root(kind, normalized, probe)
        finally:
            if fetcher is None and isinstance(probe, HttpFetcher):
                probe.close()
        if fingerprint is None:
            raise FingerprintRequiredError(root_fingerprint(root), location)
    digest = root_fingerprint(root)
    if fingerprint is not None and fingerprint.lower() != digest:
        raise ConfigError(
            f"--fingerprint: the root has fingerprint {digest}, not {fingerprint}; "
            "do not trust this catalog until the publisher confirms the right one"
        )
    parsed = _check_root(root, "--root")
    with db.write_session() as session:
        if session.scalars(select(CatalogSource).where(CatalogSource.name == name)).first():
            raise ConflictError(f"catalog source {name!r}: exists already")
        row = CatalogSource(
            name=name,
            location=normalized,
            kind=kind,
            root_sha256=digest,
            versions={"root": parsed.signed.version},
        )
        session.add(row)
        session.flush()
        session.add(
            CatalogMetadata(source_id=row.id, role="root", version=parsed.signed.version, data=root)
        )
        actors.record(
            session,
            actor,
            "catalog_source.added",
            organization_id=None,
            target_type="catalog_source",
            target_id=row.id,
            changes={"name": name, "location": normalized, "rootSha256": digest},
        )
        session.flush()
        return _view(row)


def list_sources(session: Session) -> list[SourceView]:
    """Return every catalog source, by name."""
    rows = session.scalars(select(CatalogSource).order_by(CatalogSource.name))
    return [_view(row) for row in rows]


def remove_source(db: Database, name: str, actor: Actor) -> None:
    """Forget a catalog source and its metadata (packages already stored stay).

    Raises:
        NotFoundError: no such source.
    """
    with db.write_session() as session:
        row = _get(session, name)
        session.execute(delete(CatalogMetadata).where(CatalogMetadata.source_id == row.id))
        session.delete(row)
        actors.record(
            session,
            actor,
            "catalog_source.removed",
            organization_id=None,
            target_type="catalog_source",
            target_id=row.id,
            changes={"name": name, "location": row.location},
        )


def _who(actor: Actor) -> str:
    """Name the actor for an acceptance record: the user or token, or the OS login."""
    if actor.id:
        return f"{actor.type}:{actor.id}"
    if actor.type == "cli":
        with contextlib.suppress(KeyError, OSError):  # no passwd entry in some containers
            return f"cli:{getpass.getuser()}"
    return actor.type


def repin_source(
    db: Database,
    name: str,
    root: bytes,
    actor: Actor,
    *,
    accept_expired: bool = False,
    fetcher: FetcherInterface | None = None,
    work_parent: Path | None = None,
) -> SourceView:
    """Trust a new root and forget the last-seen versions: the audited way past a refusal.

    After a plain repin the next refresh accepts the catalog's current metadata even if
    its versions are lower than before (a catalog rebuilt on purpose), and follows the
    new root's keys (after a key compromise). Expired metadata is still refused.

    With ``accept_expired`` the catalog is read right away (every check but expiry, from
    the new root) and its metadata stored; each role found expired is accepted by its
    exact version and sha256, recorded on the source and in the audit row, and logged as
    a security event. Refreshes then keep using exactly that metadata; any other expired
    metadata, newer or older, is refused again (see the module docstring).

    Args:
        db: the instance database.
        name: the source's name.
        root: the root metadata file's bytes, obtained out of band.
        actor: who repins (audited).
        accept_expired: accept the expired metadata the catalog serves now.
        fetcher: how to read the catalog (default: by its kind); only with ``accept_expired``.
        work_parent: where the private temporary folder goes (default: the system's).

    Raises:
        NotFoundError: no such source.
        ConfigError: the file is not a root signed by its own threshold.
        CatalogError: with ``accept_expired``: the catalog was refused for another reason
            than expiry (nothing changed).
    """
    parsed = _check_root(root, "--root")
    digest = root_fingerprint(root)
    fetched: _Refreshed | None = None
    accepted: dict[str, Any] = {}
    if accept_expired:
        with db.session() as session:
            source = dataclasses.replace(
                _Source.of(_get(session, name)),
                versions={"root": parsed.signed.version},
                accepted={},
            )
        used = fetcher or default_fetcher(source.kind, source.location)
        try:
            with _work_dir(work_parent) as work:
                try:
                    fetched = _run_updater(
                        source, {"root": root}, work, used, accept_any_expired=True
                    )
                except CatalogError as err:
                    _audit_refusal(db, actor, source.id, err, "catalog_source.repin_refused")
                    raise
        finally:
            if fetcher is None and isinstance(used, HttpFetcher):
                used.close()
        if fetched.expired:
            accepted = {
                "at": utcnow().isoformat(timespec="seconds"),
                "by": _who(actor),
                "roles": fetched.expired,
            }
    with db.write_session() as session:
        row = _get(session, name)
        before = {
            "rootSha256": row.root_sha256,
            "versions": dict(row.versions),
            "acceptedExpired": _accepted_versions(row.accepted_expired or {}),
        }
        roles = fetched.roles if fetched else {"root": root}
        versions = fetched.versions if fetched else {"root": parsed.signed.version}
        session.execute(delete(CatalogMetadata).where(CatalogMetadata.source_id == row.id))
        for role, data in roles.items():
            session.add(
                CatalogMetadata(source_id=row.id, role=role, version=versions[role], data=data)
            )
        row.root_sha256 = digest
        row.versions = versions
        row.accepted_expired = accepted
        changes: dict[str, Any] = {"name": name, "before": before, "rootSha256": digest}
        if fetched is not None:
            row.last_refreshed_at = utcnow()
            changes["versions"] = versions
            changes["acceptExpired"] = True
            changes["acceptedExpired"] = fetched.expired
            changes["acceptedBy"] = _who(actor)
        actors.record(
            session,
            actor,
            "catalog_source.repinned",
            organization_id=None,
            target_type="catalog_source",
            target_id=row.id,
            changes=changes,
        )
        session.flush()
        view = _view(row)
    if accepted:
        security_event(
            "marketplace.catalog_expired_accepted",
            source=name,
            accepted=_accepted_versions(accepted),
            by=accepted["by"],
        )
    return view


# --- refresh --------------------------------------------------------------------------------


_REPIN_HINT = (
    "if the publisher rebuilt the catalog on purpose, accept it with "
    "`paulyops marketplace sources repin {name} --root FILE` (audited)"
)


_EXPIRED_HINT = (
    "the publisher must re-sign it (`paulyops marketplace catalog renew DIR`); to use it "
    "meanwhile, accept exactly this metadata with "
    "`paulyops marketplace sources repin {name} --root FILE --accept-expired` (audited)"
)

#: The reference time tuf checks expiry against while this module checks it instead.
_LONG_AGO: Final = datetime(2000, 1, 1, tzinfo=UTC)


def _refusal(name: str, err: Exception) -> CatalogError:
    """Translate one of tuf's errors into a refusal with its own clear message."""
    if isinstance(err, exceptions.ExpiredMetadataError):
        return CatalogError(
            name,
            "expired",
            f"refused expired metadata ({err}); " + _EXPIRED_HINT.format(name=name),
        )
    if isinstance(err, exceptions.BadVersionNumberError):
        return CatalogError(
            name,
            "rollback",
            f"refused rolled-back metadata ({err}); " + _REPIN_HINT.format(name=name),
        )
    if isinstance(err, exceptions.LengthOrHashMismatchError):
        return CatalogError(
            name,
            "mismatch",
            f"refused a file whose bytes differ from the length or hash its signed "
            f"metadata gives ({err})",
        )
    if isinstance(err, exceptions.UnsignedMetadataError):
        return CatalogError(
            name, "signature", f"refused metadata not signed by its role's threshold ({err})"
        )
    if isinstance(err, exceptions.DownloadLengthMismatchError):
        return CatalogError(
            name, "too-large", f"refused a download larger than its signed size ({err})"
        )
    if isinstance(err, exceptions.SlowRetrievalError):
        return CatalogError(name, "slow", f"a download timed out ({err})")
    if isinstance(err, exceptions.DownloadError):
        cause = err.__cause__ or err
        return CatalogError(name, "unreachable", f"cannot be read: {cause}")
    return CatalogError(name, "invalid", f"refused invalid metadata ({err})")


@dataclass
class _Refreshed:
    source_id: str
    name: str
    roles: dict[str, bytes]
    versions: dict[str, int]
    changed: bool
    updater: Updater
    listing: Listing
    #: the roles in use although expired: ``{role: {version, sha256, expires}}``
    expired: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def _materialize(work: Path, stored: Mapping[str, bytes]) -> Path:
    meta = work / "metadata"
    meta.mkdir(mode=0o700)
    for role, data in stored.items():
        if role != "root":
            (meta / f"{quote(role, '')}.json").write_bytes(data)
    return meta


def _read_back(meta: Path, roles: Sequence[str]) -> dict[str, bytes]:
    history = meta / "root_history"
    newest = max(int(p.name.split(".")[0]) for p in history.glob("*.root.json"))
    out = {"root": (history / f"{newest}.root.json").read_bytes()}
    for role in roles:
        path = meta / f"{quote(role, '')}.json"
        if path.is_file():
            out[role] = path.read_bytes()
    return out


def _versions(roles: Mapping[str, bytes]) -> dict[str, int]:
    return {role: Metadata.from_bytes(data).signed.version for role, data in roles.items()}


@contextlib.contextmanager
def _work_dir(parent: Path | None) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="paulyops-catalog-", dir=parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_expiry_ourselves(updater: Updater, when: datetime, name: str) -> None:
    """Make ``updater`` check expiry against ``when`` instead of the current time.

    tuf 7 (and python-tuf's main branch as of 2026-12) offers no public setting for the
    reference time: ``TrustedMetadataSet`` takes the current time when the updater is made
    and compares every role's ``expires`` with its ``reference_time`` attribute, which is
    all this changes. Moving it back turns off tuf's expiry checks only; signatures,
    thresholds, versions, hashes and lengths are checked as always, and the caller checks
    expiry itself afterwards (:func:`_expired_roles`). Should a tuf upgrade move that
    attribute, this refuses rather than accept anything expired.
    """
    trusted = getattr(updater, "_trusted_set", None)
    if trusted is None or not isinstance(getattr(trusted, "reference_time", None), datetime):
        raise CatalogError(
            name,
            "invalid",
            "this version of tuf cannot check metadata against another time; "
            "accepted expired metadata cannot be used",
        )
    trusted.reference_time = when


def _expired_roles(
    roles: Mapping[str, bytes], now: datetime, order: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Return each role whose metadata is expired at ``now``, in ``order``."""
    out: dict[str, dict[str, Any]] = {}
    for role in order:
        data = roles.get(role)
        if data is None:
            continue
        signed = Metadata.from_bytes(data).signed
        if signed.is_expired(now):
            out[role] = {
                "version": signed.version,
                "sha256": hashlib.sha256(data).hexdigest(),
                "expires": signed.expires.isoformat(),
            }
    return out


def _check_accepted(source: _Source, expired: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse expired metadata unless the source's repin accepted exactly these bytes."""
    roles = source.accepted.get("roles") or {}
    for role, seen in expired.items():
        accepted = roles.get(role)
        what = f"{role}.json is expired: version {seen['version']}, expired {seen['expires']}"
        if accepted is None:
            why = "; the last repin did not accept it"
        elif accepted["version"] != seen["version"]:
            when = source.accepted.get("at")
            why = f"; the repin of {when} accepted version {accepted['version']} only"
        elif accepted["sha256"] != seen["sha256"]:
            why = "; its bytes differ from the ones the repin accepted"
        else:
            continue
        raise CatalogError(
            source.name,
            "expired",
            f"refused expired metadata ({what}{why}); " + _EXPIRED_HINT.format(name=source.name),
        )


def _run_updater(
    source: _Source,
    stored: Mapping[str, bytes],
    work: Path,
    fetcher: FetcherInterface,
    *,
    accept_any_expired: bool = False,
) -> _Refreshed:
    """Run tuf's refresh from ``stored`` and check the result against ``source``.

    Args:
        source: the source (its last-seen versions and accepted expired metadata).
        stored: the metadata to start from, by role (at least ``root``).
        work: an empty private folder.
        fetcher: how to read the catalog.
        accept_any_expired: a repin with ``--accept-expired``: expired metadata is
            returned in ``expired`` instead of refused.
    """
    name = source.name
    now = datetime.now(UTC)
    ourselves = accept_any_expired or bool(source.accepted.get("roles"))
    meta = _materialize(work, stored)
    base = _base_url(source.kind, source.location)
    try:
        updater = Updater(
            metadata_dir=str(meta),
            metadata_base_url=f"{base}/metadata/",
            target_base_url=f"{base}/targets/",
            target_dir=str(work / "targets"),
            fetcher=fetcher,
            config=CONFIG,
            bootstrap=stored["root"],
        )
        if ourselves:
            _check_expiry_ourselves(updater, _LONG_AGO, name)
        updater.refresh()
        top = Metadata[Targets].from_file(str(meta / "targets.json")).signed
        delegated = top.delegations.roles if top.delegations and top.delegations.roles else {}
        loaded = []
        for role in delegated.values():
            if delegation_problem(role) is None:
                # get_targetinfo loads and verifies the role's metadata on the way (tuf's
                # public path to delegated metadata); the probe name itself is never listed.
                updater.get_targetinfo(f"{role.name}.-")
                loaded.append(role.name)
    except (exceptions.RepositoryError, exceptions.DownloadError) as err:
        raise _refusal(name, err) from err
    order = [*TOP_ROLES, *loaded]
    roles = _read_back(meta, order)
    versions = _versions(roles)
    for role_name, seen in source.versions.items():
        if role_name in versions and versions[role_name] < seen:
            raise CatalogError(
                name,
                "rollback",
                f"refused rolled-back metadata ({role_name} version {versions[role_name]} is older "
                f"than the version {seen} seen before); " + _REPIN_HINT.format(name=name),
            )
    expired: dict[str, dict[str, Any]] = {}
    if ourselves:
        expired = _expired_roles(roles, now, ["root", *order])
        if not accept_any_expired:
            _check_accepted(source, expired)
        # Anything tuf loads from here on (a package download) is checked at the real time.
        _check_expiry_ourselves(updater, now, name)
    changed = versions != dict(source.versions)
    return _Refreshed(
        source.id, name, roles, versions, changed, updater, listing_of(name, roles), expired
    )


def _audit_refusal(
    db: Database,
    actor: Actor,
    source_id: str,
    err: CatalogError,
    action: str = "catalog.refresh_refused",
) -> None:
    with db.write_session() as session:
        actors.record(
            session,
            actor,
            action,
            organization_id=None,
            target_type="catalog_source",
            target_id=source_id,
            outcome="failure",
            changes={"reason": err.reason, "message": err.message},
        )


def _still_accepted(accepted: Mapping[str, Any], result: _Refreshed) -> dict[str, Any]:
    """Keep the acceptance of the roles still in use expired; drop the rest for good."""
    if not result.expired:
        return {}
    return {**accepted, "roles": dict(result.expired)}


def _store(db: Database, actor: Actor, result: _Refreshed) -> None:
    with db.write_session() as session:
        row = _get(session, result.name)
        if any(result.versions.get(r, 0) < v for r, v in row.versions.items()):
            return  # another machine stored newer metadata meanwhile: keep it
        session.execute(delete(CatalogMetadata).where(CatalogMetadata.source_id == row.id))
        for role, data in result.roles.items():
            session.add(
                CatalogMetadata(
                    source_id=row.id, role=role, version=result.versions[role], data=data
                )
            )
        row.versions = result.versions
        row.last_refreshed_at = utcnow()
        before = _accepted_versions(row.accepted_expired or {})
        row.accepted_expired = _still_accepted(row.accepted_expired or {}, result)
        after = _accepted_versions(row.accepted_expired)
        if result.changed or before != after:
            changes: dict[str, Any] = {"versions": result.versions}
            if before != after:
                changes["acceptedExpired"] = {"from": before, "to": after}
            actors.record(
                session,
                actor,
                "catalog.refreshed",
                organization_id=None,
                target_type="catalog_source",
                target_id=row.id,
                changes=changes,
            )


@contextlib.contextmanager
def _refreshed(
    db: Database,
    name: str,
    actor: Actor,
    fetcher: FetcherInterface | None,
    work_parent: Path | None,
) -> Iterator[tuple[_Refreshed, Path]]:
    with db.session() as session:
        source = _Source.of(_get(session, name))
        stored = _stored(session, source.id)
    used = fetcher or default_fetcher(source.kind, source.location)
    try:
        with _work_dir(work_parent) as work:
            try:
                result = _run_updater(source, stored, work, used)
            except CatalogError as err:
                _audit_refusal(db, actor, source.id, err)
                raise
            _store(db, actor, result)
            yield result, work
    finally:
        if fetcher is None and isinstance(used, HttpFetcher):
            used.close()


def refresh_catalog(
    db: Database,
    name: str,
    actor: Actor,
    *,
    fetcher: FetcherInterface | None = None,
    work_parent: Path | None = None,
) -> RefreshResult:
    """Fetch and verify a catalog's newest metadata and store what tuf accepted.

    Args:
        db: the instance database.
        name: the source's name.
        actor: who asked (a changed catalog and every refusal are audited).
        fetcher: how to read it (default: by its kind).
        work_parent: where the private temporary folder goes (default: the system's).

    Raises:
        NotFoundError: no such source.
        CatalogError: the metadata was refused (expired and not accepted by a repin,
            rolled back, mismatched, too large, badly signed) or could not be read;
            nothing was stored.
    """
    with _refreshed(db, name, actor, fetcher, work_parent) as (result, _work):
        return RefreshResult(
            name,
            result.versions,
            result.changed,
            result.listing,
            {role: int(entry["version"]) for role, entry in result.expired.items()},
        )


def list_entries(
    session: Session, *, text: str | None = None, source: str | None = None
) -> list[CatalogEntry]:
    """Return the package versions every refreshed catalog lists, optionally filtered.

    Args:
        session: a read session.
        text: words that must all appear in the id, name or description (any case).
        source: only this catalog.
    """
    query = select(CatalogSource).order_by(CatalogSource.name)
    if source is not None:
        query = query.where(CatalogSource.name == source)
    words = (text or "").lower().split()
    out = []
    for row in session.scalars(query):
        for entry in listing_of(row.name, _stored(session, row.id)).entries:
            haystack = f"{entry.agent_id} {entry.name} {entry.description}".lower()
            if all(word in haystack for word in words):
                out.append(entry)
    return out


def show_entry(session: Session, agent_id: str) -> list[CatalogEntry]:
    """Return every listed version of one agent, in every catalog.

    Raises:
        NotFoundError: no refreshed catalog lists it.
    """
    found = [e for e in list_entries(session) if e.agent_id == agent_id]
    if not found:
        raise NotFoundError(f"{agent_id}: no catalog lists it (run `catalog refresh` first?)")
    return found


def fetch_package(
    db: Database,
    name: str,
    agent_id: str,
    version: str,
    actor: Actor,
    *,
    trusted: Sequence[TrustedKey],
    allow_unsigned: bool = False,
    allow_yanked: bool = False,
    fetcher: FetcherInterface | None = None,
    work_parent: Path | None = None,
) -> FetchedPackage:
    """Refresh a catalog, download one package version and validate it.

    The download is capped at the signed length and checked against the signed hash by
    tuf; the package then goes through the package validator like any other, its
    ``SIGNATURE`` checked against ``trusted`` (the instance trust store). Nothing is
    kept on disk: the caller stores the returned bytes.

    Raises:
        CatalogError: refused metadata, a version out of its publisher's namespace,
            revoked or yanked, bytes that differ from the signed hash, or too many bytes.
        NotFoundError: the catalog does not list that version.
        PackageError: the package failed validation.
    """
    with _refreshed(db, name, actor, fetcher, work_parent) as (result, work):
        wanted = target_path(agent_id, version)
        if wanted in result.listing.rejected:
            raise CatalogError(name, "namespace", result.listing.rejected[wanted])
        entry = next((e for e in result.listing.entries if e.target == wanted), None)
        if entry is None:
            raise NotFoundError(f"{agent_id} {version}: catalog {name!r} does not list it")
        if entry.revoked:
            raise CatalogError(name, "revoked", f"{entry.revoked}; refused")
        if entry.yanked and not allow_yanked:
            why = f" ({entry.yanked_reason})" if entry.yanked_reason else ""
            raise CatalogError(name, "yanked", f"{agent_id} {version} is yanked{why}; refused")
        try:
            info = result.updater.get_targetinfo(wanted)
            if info is None:
                raise CatalogError(
                    name, "namespace", f"{wanted}: no delegation of the catalog covers it"
                )
            path = result.updater.download_target(info, str(work / "package.pauly"))
        except (exceptions.RepositoryError, exceptions.DownloadError) as err:
            refusal = _refusal(name, err)
            if refusal.reason == "mismatch":
                refusal = CatalogError(
                    name, "mismatch", f"{wanted}: its bytes differ from the signed hash; refused"
                )
            _audit_refusal(db, actor, result.source_id, refusal)
            raise refusal from err
        data = Path(path).read_bytes()
        # Validate the very bytes returned, not the file they came from.
        report = validate_package(io.BytesIO(data), trusted=trusted, allow_unsigned=allow_unsigned)
        report.raise_for_failure()
        if report.signed_by in result.listing.revoked_keys:
            raise CatalogError(
                name,
                "revoked",
                f"{wanted}: signed by key {report.signed_by}, revoked by the catalog",
            )
        manifest = report.manifest
        if manifest is None or (manifest.id, manifest.version) != (agent_id, version):
            raise CatalogError(
                name, "mismatch", f"{wanted}: the package inside is not {agent_id} {version}"
            )
        return FetchedPackage(entry, data, report)


__all__ = [
    "CONFIG",
    "CatalogEntry",
    "CatalogError",
    "FetchedPackage",
    "FingerprintRequiredError",
    "Listing",
    "RefreshResult",
    "SourceView",
    "add_source",
    "default_fetcher",
    "fetch_package",
    "list_entries",
    "list_sources",
    "listing_of",
    "refresh_catalog",
    "remove_source",
    "repin_source",
    "show_entry",
]
