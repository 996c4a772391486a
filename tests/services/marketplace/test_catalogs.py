"""Catalogs secured like TUF repositories: real ``tuf``, real files, a real http server.

Every attack is made the way an attacker (or a broken mirror) would: by changing the
files of a catalog the publisher tools wrote, re-signing with the right role key where
the attack needs it. Each refusal has its own message, stores nothing, and leaves the
private work folder empty.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Timestamp
from tuf.api.serialization.json import JSONSerializer

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog, CatalogMetadata
from paulyops.core.errors import ConfigError, NotFoundError
from paulyops.core.logging import add_alert_hook
from paulyops.core.security.signatures import generate_key
from paulyops.services.actor import CLI
from paulyops.services.marketplace import catalogs, publish
from paulyops.services.marketplace.catalogs import CatalogError, FingerprintRequiredError
from paulyops.services.marketplace.errors import PackageError
from paulyops.services.marketplace.fetchers import HttpFetcher

from .packages import signed_package, trust

SERIALIZER = JSONSerializer(compact=False)


@dataclass
class Catalog:
    """A catalog folder, its keys, an author key and the root to pin."""

    directory: Path
    keys: Path
    author: Ed25519PrivateKey
    packages: Path

    @property
    def meta(self) -> Path:
        return self.directory / "metadata"

    def root(self) -> bytes:
        return (self.meta / "1.root.json").read_bytes()

    def publish(self, version: str = "1.0.0", agent_id: str = "acme.hello") -> publish.Published:
        path = self.packages / f"{agent_id}-{version}.pauly"
        path.write_bytes(signed_package(self.author, agent_id=agent_id, version=version))
        return publish.publish_package(path, self.directory, self.keys)

    def signers(self, role: str) -> list[Any]:
        root = Metadata.from_file(str(self.meta / "root.json")).signed
        return publish.KeyRing(self.keys).signers(role, root.roles[role].keyids)

    def write_timestamp(self, mutate: Callable[[Timestamp], None]) -> None:
        """Re-sign timestamp.json (version + 1) after ``mutate`` -- as its key holder."""
        md = Metadata[Timestamp].from_file(str(self.meta / "timestamp.json"))
        mutate(md.signed)
        md.signed.version += 1
        md.signatures.clear()
        md.sign(self.signers("timestamp")[0])
        (self.meta / "timestamp.json").write_bytes(md.to_bytes(SERIALIZER))

    def snapshot_file(self, version: int) -> Path:
        return self.meta / f"{version}.snapshot.json"

    def point_timestamp_at(self, snapshot_version: int) -> None:
        data = self.snapshot_file(snapshot_version).read_bytes()

        def mutate(ts: Timestamp) -> None:
            ts.snapshot_meta = MetaFile.from_data(snapshot_version, data, ["sha256"])

        self.write_timestamp(mutate)

    def current_snapshot(self) -> Metadata[Snapshot]:
        ts = Metadata[Timestamp].from_file(str(self.meta / "timestamp.json")).signed
        return Metadata[Snapshot].from_file(str(self.snapshot_file(ts.snapshot_meta.version)))


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    packages = tmp_path / "packages"
    packages.mkdir()
    info = publish.init_catalog(tmp_path / "catalog", tmp_path / "keys")
    made = Catalog(info.directory, info.keys_dir, generate_key(), packages)
    made.publish("1.0.0")
    return made


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The parent of the refreshes' private folders: must be empty after every call."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def _add(db: Database, catalog: Catalog, name: str = "main") -> None:
    catalogs.add_source(db, name, str(catalog.directory), CLI, root=catalog.root())


def _refresh(db: Database, work: Path, name: str = "main", **kw: Any) -> catalogs.RefreshResult:
    try:
        return catalogs.refresh_catalog(db, name, CLI, work_parent=work, **kw)
    finally:
        assert list(work.iterdir()) == []


def _stored_versions(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {r.role: r.version for r in session.scalars(select(CatalogMetadata))}


def _audit_actions(db: Database) -> list[tuple[str, str]]:
    with db.session() as session:
        rows = session.scalars(select(AuditLog).order_by(AuditLog.seq))
        return [(r.action, r.outcome) for r in rows]


def _refused(db: Database, work: Path, reason: str, **kw: Any) -> CatalogError:
    before = _stored_versions(db)
    with pytest.raises(CatalogError) as caught:
        _refresh(db, work, **kw)
    assert caught.value.reason == reason, caught.value.message
    assert _stored_versions(db) == before
    assert ("catalog.refresh_refused", "failure") in _audit_actions(db)
    return caught.value


def test_refresh_lists_and_fetches_a_published_package(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """A refreshed catalog lists its packages; a fetched one passes the package validator."""
    _add(db, catalog)
    result = _refresh(db, work)
    assert result.changed
    assert result.versions == {
        "root": 1,
        "timestamp": 2,
        "snapshot": 2,
        "targets": 2,
        "acme": 1,
    }
    assert _stored_versions(db) == result.versions
    with db.session() as session:
        entries = catalogs.list_entries(session, text="hello")
        assert catalogs.list_entries(session, text="nothing-like-this") == []
        shown = catalogs.show_entry(session, "acme.hello")
        with pytest.raises(NotFoundError):
            catalogs.show_entry(session, "acme.other")
    assert [(e.agent_id, e.version, e.publisher, e.yanked) for e in entries] == [
        ("acme.hello", "1.0.0", "acme", False)
    ]
    assert shown == entries
    fetched = catalogs.fetch_package(
        db, "main", "acme.hello", "1.0.0", CLI, trusted=trust(catalog.author), work_parent=work
    )
    assert list(work.iterdir()) == []
    assert fetched.report.is_ok
    assert fetched.report.signed_by is not None
    assert len(fetched.data) == entries[0].length
    assert not _refresh(db, work).changed


def test_fetched_package_signature_is_checked_against_the_trust_store(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """A package TUF accepted is still refused when its author key is not trusted."""
    _add(db, catalog)
    with pytest.raises(PackageError, match="not a trusted key"):
        catalogs.fetch_package(db, "main", "acme.hello", "1.0.0", CLI, trusted=[], work_parent=work)
    assert list(work.iterdir()) == []


def test_add_without_root_shows_the_fingerprint_to_confirm(db: Database, catalog: Catalog) -> None:
    """Without --root the catalog's root is read, and only a matching fingerprint pins it."""
    with pytest.raises(FingerprintRequiredError) as caught:
        catalogs.add_source(db, "main", str(catalog.directory), CLI)
    fingerprint = caught.value.fingerprint
    assert fingerprint in caught.value.message
    with pytest.raises(ConfigError, match="do not trust this catalog"):
        catalogs.add_source(db, "main", str(catalog.directory), CLI, fingerprint="0" * 64)
    view = catalogs.add_source(db, "main", str(catalog.directory), CLI, fingerprint=fingerprint)
    assert view.root_sha256 == fingerprint
    with db.session() as session:
        assert [s.name for s in catalogs.list_sources(session)] == ["main"]
    assert ("catalog_source.added", "success") in _audit_actions(db)
    catalogs.remove_source(db, "main", CLI)
    assert _stored_versions(db) == {}
    assert ("catalog_source.removed", "success") in _audit_actions(db)


def test_add_refuses_a_root_not_signed_by_its_threshold(
    db: Database, catalog: Catalog, tmp_path: Path
) -> None:
    """A root whose signature does not verify cannot be pinned."""
    md = Metadata.from_bytes(catalog.root())
    md.signatures.clear()
    with pytest.raises(ConfigError, match="not signed by its own root threshold"):
        catalogs.add_source(db, "main", str(catalog.directory), CLI, root=md.to_bytes(SERIALIZER))


def test_expired_timestamp_is_refused(db: Database, catalog: Catalog, work: Path) -> None:
    """A frozen catalog (timestamp past its expiry) is refused, even if its signature is good."""
    _add(db, catalog)
    _refresh(db, work)

    def expire(ts: Timestamp) -> None:
        ts.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    catalog.write_timestamp(expire)
    err = _refused(db, work, "expired")
    assert "timestamp.json is expired" in err.message
    assert "re-sign" in err.message


def test_renew_fixes_expiring_metadata(db: Database, catalog: Catalog, work: Path) -> None:
    """`renew` re-signs every role with fresh expiries and higher versions."""
    _add(db, catalog)
    before = _refresh(db, work).versions
    publish.renew(catalog.directory, catalog.keys)
    after = _refresh(db, work).versions
    assert all(after[r] == before[r] + 1 for r in ("timestamp", "snapshot", "targets", "acme"))


def test_old_timestamp_is_refused(db: Database, catalog: Catalog, work: Path) -> None:
    """A mirror serving yesterday's timestamp.json (a replay) is refused as a rollback."""
    old = (catalog.meta / "timestamp.json").read_bytes()
    catalog.publish("1.1.0")
    _add(db, catalog)
    _refresh(db, work)
    (catalog.meta / "timestamp.json").write_bytes(old)
    err = _refused(db, work, "rollback")
    assert "sources repin main" in err.message


def test_rolled_back_snapshot_is_refused(db: Database, catalog: Catalog, work: Path) -> None:
    """A new timestamp pointing at an older snapshot is refused."""
    catalog.publish("1.1.0")
    _add(db, catalog)
    versions = _refresh(db, work).versions
    catalog.point_timestamp_at(versions["snapshot"] - 1)
    err = _refused(db, work, "rollback")
    assert "snapshot" in err.message


def test_rolled_back_targets_are_refused(db: Database, catalog: Catalog, work: Path) -> None:
    """A new snapshot listing an older version of a publisher's targets is refused."""
    catalog.publish("1.1.0")
    _add(db, catalog)
    versions = _refresh(db, work).versions
    snap = catalog.current_snapshot()
    old = versions["acme"] - 1
    snap.signed.meta["acme.json"] = MetaFile.from_data(
        old, (catalog.meta / f"{old}.acme.json").read_bytes(), ["sha256"]
    )
    snap.signed.version += 1
    snap.signatures.clear()
    snap.sign(catalog.signers("snapshot")[0])
    catalog.snapshot_file(snap.signed.version).write_bytes(snap.to_bytes(SERIALIZER))
    catalog.point_timestamp_at(snap.signed.version)
    err = _refused(db, work, "rollback")
    assert "acme.json" in err.message


def test_metadata_that_differs_from_its_signed_hash_is_refused(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """A new snapshot file changed after the timestamp signed its hash is refused."""
    _add(db, catalog)
    version = _refresh(db, work).versions["snapshot"]
    catalog.publish("1.1.0")
    path = catalog.snapshot_file(version + 1)
    data = bytearray(path.read_bytes())
    at = data.index(b'"sig": "') + len(b'"sig": "')
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    path.write_bytes(bytes(data))
    err = _refused(db, work, "mismatch")
    assert "differ" in err.message


def test_target_with_other_bytes_than_signed_is_refused(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """A package file replaced on the server (same length) is refused by its signed hash."""
    _add(db, catalog)
    _refresh(db, work)
    published = catalog.publish("1.0.0")
    target = catalog.directory / "targets" / f"{published.sha256}.{published.target}"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CatalogError) as caught:
        catalogs.fetch_package(
            db, "main", "acme.hello", "1.0.0", CLI, trusted=trust(catalog.author), work_parent=work
        )
    assert caught.value.reason == "mismatch"
    assert "acme.hello-1.0.0.pauly: its bytes differ from the signed hash" in caught.value.message
    assert list(work.iterdir()) == []


def test_package_outside_its_publishers_namespace_is_refused(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """A publisher's delegation that lists another namespace's package is refused for it."""
    evil = catalog.packages / "evil.pauly"
    evil.write_bytes(signed_package(catalog.author, agent_id="evil.tool"))
    state = publish._load(catalog.directory)
    target = TargetFile.from_data("evil.tool-1.0.0.pauly", evil.read_bytes(), ["sha256"])
    target.unrecognized_fields["custom"] = {
        "paulyops": {"id": "evil.tool", "version": "1.0.0", "publisher": "acme"}
    }
    state.delegated["acme"].signed.targets[target.path] = target
    publish._Writer(catalog.directory, publish.KeyRing(catalog.keys), state, None).commit(
        targets=False, delegated=["acme"]
    )
    _add(db, catalog)
    result = _refresh(db, work)
    reason = "evil.tool-1.0.0.pauly: listed by publisher 'acme' outside its namespace acme.*"
    assert result.listing.rejected["evil.tool-1.0.0.pauly"] == reason
    with db.session() as session:
        assert [e.agent_id for e in catalogs.list_entries(session)] == ["acme.hello"]
    with pytest.raises(CatalogError) as caught:
        catalogs.fetch_package(
            db, "main", "evil.tool", "1.0.0", CLI, trusted=trust(catalog.author), work_parent=work
        )
    assert caught.value.reason == "namespace"
    assert reason in caught.value.message
    assert list(work.iterdir()) == []


def test_yanked_and_revoked_versions_are_refused(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """Yanked versions stay listed but are not fetched; revoked keys and versions neither."""
    catalog.publish("1.1.0")
    publish.yank_version(catalog.directory, "acme.hello", "1.0.0", catalog.keys, reason="bug")
    _add(db, catalog)
    _refresh(db, work)
    with db.session() as session:
        entries = {e.version: e for e in catalogs.list_entries(session)}
    assert entries["1.0.0"].yanked
    assert entries["1.0.0"].yanked_reason == "bug"
    fetch = functools.partial(
        catalogs.fetch_package,
        db,
        "main",
        "acme.hello",
        trusted=trust(catalog.author),
        work_parent=work,
    )
    with pytest.raises(CatalogError, match=r"acme.hello 1.0.0 is yanked \(bug\)"):
        fetch("1.0.0", CLI)
    publish.revoke(catalog.directory, catalog.keys, package=("acme.hello", "1.1.0"))
    with pytest.raises(CatalogError, match=r"acme\.hello 1\.1\.0 is revoked by the catalog"):
        fetch("1.1.0", CLI)
    catalog.publish("1.2.0")
    key_id = fetch("1.2.0", CLI).report.signed_by
    assert key_id is not None
    publish.revoke(catalog.directory, catalog.keys, key_id=key_id)
    with pytest.raises(CatalogError, match=f"signed by key {key_id}, revoked by the catalog"):
        fetch("1.2.0", CLI)
    assert list(work.iterdir()) == []


def test_threshold_root_rotation_is_followed(db: Database, tmp_path: Path, work: Path) -> None:
    """A 2-of-2 root rotated to new keys (signed by both thresholds) is accepted."""
    info = publish.init_catalog(
        tmp_path / "catalog", tmp_path / "keys", root_keys=2, root_threshold=2
    )
    catalog = Catalog(info.directory, info.keys_dir, generate_key(), tmp_path)
    catalog.publish("1.0.0")
    _add(db, catalog)
    assert _refresh(db, work).versions["root"] == 1
    publish.rotate_root(catalog.directory, catalog.keys, new_keys=3, threshold=2)
    result = _refresh(db, work)
    assert result.versions["root"] == 2
    new_root = Metadata.from_bytes(next(r.data for r in _rows(db) if r.role == "root")).signed
    assert len(new_root.roles["root"].keyids) == 3
    assert new_root.roles["root"].threshold == 2


def test_root_rotation_short_of_the_old_threshold_is_refused(
    db: Database, tmp_path: Path, work: Path
) -> None:
    """A new root carrying only one of the two signatures the old root requires is refused."""
    info = publish.init_catalog(
        tmp_path / "catalog", tmp_path / "keys", root_keys=2, root_threshold=2
    )
    catalog = Catalog(info.directory, info.keys_dir, generate_key(), tmp_path)
    catalog.publish("1.0.0")
    _add(db, catalog)
    _refresh(db, work)
    old_keyids = set(Metadata.from_bytes(catalog.root()).signed.roles["root"].keyids)
    publish.rotate_root(catalog.directory, catalog.keys, new_keys=1, threshold=1)
    path = catalog.meta / "2.root.json"
    md = Metadata.from_bytes(path.read_bytes())
    md.signatures.pop(sorted(old_keyids & set(md.signatures))[0])
    path.write_bytes(md.to_bytes(SERIALIZER))
    err = _refused(db, work, "signature")
    assert "root" in err.message


def _rows(db: Database) -> list[CatalogMetadata]:
    with db.session() as session:
        return list(session.scalars(select(CatalogMetadata)))


def test_repin_is_the_audited_way_past_a_rollback(
    db: Database, catalog: Catalog, work: Path, tmp_path: Path
) -> None:
    """A catalog restored from an older copy is refused until an operator repins it."""
    backup = tmp_path / "backup"
    shutil.copytree(catalog.directory, backup)
    catalog.publish("1.1.0")
    _add(db, catalog)
    _refresh(db, work)
    shutil.rmtree(catalog.directory)
    shutil.copytree(backup, catalog.directory)
    _refused(db, work, "rollback")
    catalogs.repin_source(db, "main", catalog.root(), CLI)
    assert ("catalog_source.repinned", "success") in _audit_actions(db)
    result = _refresh(db, work)
    assert result.versions["timestamp"] == 2
    assert [e.version for e in result.listing.entries] == ["1.0.0"]


def test_rebuilt_catalog_with_new_keys_needs_repin(
    db: Database, catalog: Catalog, work: Path, tmp_path: Path
) -> None:
    """Metadata signed by keys the pinned root does not know is refused; a repin trusts it."""
    _add(db, catalog)
    _refresh(db, work)
    shutil.rmtree(catalog.directory)
    shutil.rmtree(catalog.keys)
    publish.init_catalog(catalog.directory, catalog.keys)
    catalog.publish("2.0.0")
    _refused(db, work, "signature")
    catalogs.repin_source(db, "main", catalog.root(), CLI)
    assert [e.version for e in _refresh(db, work).listing.entries] == ["2.0.0"]


# --- over http ------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """Serves the catalog folder; names in ``server.endless`` answer with endless bytes."""

    def log_message(self, format: str, *args: Any) -> None:  # stdlib's signature
        pass

    def do_GET(self) -> None:
        endless: set[str] = self.server.endless  # type: ignore[attr-defined]
        if any(self.path.endswith(name) for name in endless):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            try:
                for _ in range(1024):  # 64 MiB at most, should the client not hang up
                    self.wfile.write(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        super().do_GET()


@pytest.fixture
def http_catalog(catalog: Catalog) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    handler = functools.partial(_Handler, directory=str(catalog.directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.endless = set()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_catalog_refreshes_and_lists(
    db: Database, catalog: Catalog, http_catalog: tuple[str, Any], work: Path
) -> None:
    """An http catalog refreshes like a folder one and lists the same packages."""
    url, _server = http_catalog
    catalogs.add_source(db, "web", url, CLI, root=catalog.root())
    result = _refresh(db, work, name="web")
    assert [e.target for e in result.listing.entries] == ["acme.hello-1.0.0.pauly"]
    fetched = catalogs.fetch_package(
        db, "web", "acme.hello", "1.0.0", CLI, trusted=trust(catalog.author), work_parent=work
    )
    assert fetched.report.is_ok


def test_endless_metadata_is_capped(
    db: Database, catalog: Catalog, http_catalog: tuple[str, Any], work: Path
) -> None:
    """A server answering timestamp.json with endless data is cut off at the cap."""
    url, server = http_catalog
    catalogs.add_source(db, "web", url, CLI, root=catalog.root())
    server.endless.add("/timestamp.json")
    err = _refused(db, work, "too-large", name="web")
    assert "16384" in err.message


def test_endless_package_is_capped_at_its_signed_length(
    db: Database, catalog: Catalog, http_catalog: tuple[str, Any], work: Path
) -> None:
    """A package download that goes on past its signed length is refused."""
    url, server = http_catalog
    catalogs.add_source(db, "web", url, CLI, root=catalog.root())
    server.endless.add(".pauly")
    fetcher = HttpFetcher(socket_timeout=5)
    with pytest.raises(CatalogError) as caught:
        catalogs.fetch_package(
            db,
            "web",
            "acme.hello",
            "1.0.0",
            CLI,
            trusted=trust(catalog.author),
            fetcher=fetcher,
            work_parent=work,
        )
    fetcher.close()
    assert caught.value.reason == "too-large"
    assert list(work.iterdir()) == []


def test_unreachable_catalog_is_reported(db: Database, catalog: Catalog, work: Path) -> None:
    """A catalog that cannot be read fails with a clear message and changes nothing."""
    _add(db, catalog)
    shutil.rmtree(catalog.directory)
    catalog.directory.mkdir()
    err = _refused(db, work, "unreachable")
    assert "cannot be read" in err.message


def test_add_refuses_a_file_that_is_not_a_root(db: Database, catalog: Catalog) -> None:
    """Other metadata or junk given as --root is refused with that reason."""
    for data in ((catalog.meta / "1.targets.json").read_bytes(), b"not json"):
        with pytest.raises(ConfigError, match="not TUF root metadata"):
            catalogs.add_source(db, "main", str(catalog.directory), CLI, root=data)


def test_delegation_wider_than_its_namespace_is_rejected(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """A publisher delegated more than ``<publisher>.*`` gets none of its entries listed."""
    state = publish._load(catalog.directory)
    delegations = state.targets.signed.delegations
    assert delegations is not None
    assert delegations.roles is not None
    delegations.roles["acme"].paths = ["*"]
    publish._Writer(catalog.directory, publish.KeyRing(catalog.keys), state, None).commit(
        targets=True
    )
    _add(db, catalog)
    result = _refresh(db, work)
    assert result.listing.entries == []
    assert result.listing.rejected["acme"] == (
        "delegation 'acme': must cover exactly the paths acme.*, got ['*']"
    )


# --- expired metadata, accepted by an audited repin ------------------------------------

LAPSED = {"timestamp": -1, "snapshot": -1, "targets": -1}


def _audit_rows(db: Database, action: str) -> list[AuditLog]:
    with db.session() as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """The security events logged meanwhile."""
    received: list[dict[str, Any]] = []
    remove = add_alert_hook(received.append)
    try:
        yield received
    finally:
        remove()


def _lapse(db: Database, catalog: Catalog, work: Path) -> dict[str, int]:
    """Pin and refresh the catalog, then let its publisher re-sign it already expired."""
    _add(db, catalog)
    _refresh(db, work)
    publish.renew(catalog.directory, catalog.keys, expiry_days=LAPSED)
    err = _refused(db, work, "expired")
    assert "timestamp.json is expired" in err.message
    assert "sources repin main --root FILE --accept-expired" in err.message
    snapshot = catalog.current_snapshot().signed
    return {
        "timestamp": Metadata.from_file(str(catalog.meta / "timestamp.json")).signed.version,
        "snapshot": snapshot.version,
        "targets": snapshot.meta["targets.json"].version,
        "acme": snapshot.meta["acme.json"].version,
    }


def test_repin_accepting_expired_metadata_brings_the_listing_back(
    db: Database, catalog: Catalog, work: Path, events: list[dict[str, Any]]
) -> None:
    """`repin --accept-expired` stores what the catalog serves now, audited and logged."""
    lapsed = _lapse(db, catalog, work)
    view = catalogs.repin_source(
        db, "main", catalog.root(), CLI, accept_expired=True, work_parent=work
    )
    assert list(work.iterdir()) == []
    assert view.accepted_expired == lapsed
    with db.session() as session:
        assert [e.agent_id for e in catalogs.list_entries(session)] == ["acme.hello"]
    (row,) = _audit_rows(db, "catalog_source.repinned")
    assert row.actor_type == "cli"
    accepted = row.changes["acceptedExpired"]
    assert accepted["timestamp"]["version"] == lapsed["timestamp"]
    data = (catalog.meta / "timestamp.json").read_bytes()
    assert accepted["timestamp"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert row.changes["acceptedBy"].startswith("cli")
    assert [e["kind"] for e in events] == ["marketplace.catalog_expired_accepted"]
    assert events[0]["source"] == "main"
    assert events[0]["accepted"]["timestamp"] == lapsed["timestamp"]
    # Refreshes keep using exactly that metadata, and say so; packages can be fetched.
    result = _refresh(db, work)
    assert result.accepted_expired == view.accepted_expired
    assert not result.changed
    fetched = catalogs.fetch_package(
        db, "main", "acme.hello", "1.0.0", CLI, trusted=trust(catalog.author), work_parent=work
    )
    assert fetched.report.is_ok
    assert list(work.iterdir()) == []


def test_accepted_expired_metadata_still_refuses_a_rollback(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """After accepting expired metadata, older metadata is still refused as a rollback."""
    old = (catalog.meta / "timestamp.json").read_bytes()
    _lapse(db, catalog, work)
    catalogs.repin_source(db, "main", catalog.root(), CLI, accept_expired=True, work_parent=work)
    (catalog.meta / "timestamp.json").write_bytes(old)
    err = _refused(db, work, "rollback")
    assert "sources repin main" in err.message


def test_newer_expired_metadata_is_refused_again(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """Only the exact versions accepted pass: a newer, still expired timestamp is refused."""
    lapsed = _lapse(db, catalog, work)
    catalogs.repin_source(db, "main", catalog.root(), CLI, accept_expired=True, work_parent=work)

    def expire(ts: Timestamp) -> None:
        ts.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    catalog.write_timestamp(expire)
    err = _refused(db, work, "expired")
    assert f"timestamp.json is expired: version {lapsed['timestamp'] + 1}" in err.message
    assert f"accepted version {lapsed['timestamp']} only" in err.message
    # A second repin accepts the new one, audited again.
    view = catalogs.repin_source(
        db, "main", catalog.root(), CLI, accept_expired=True, work_parent=work
    )
    assert view.accepted_expired["timestamp"] == lapsed["timestamp"] + 1
    assert len(_audit_rows(db, "catalog_source.repinned")) == 2


def test_expired_metadata_with_other_bytes_is_refused(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """The acceptance binds the bytes: same version, other content, still expired: refused."""
    _lapse(db, catalog, work)
    catalogs.repin_source(db, "main", catalog.root(), CLI, accept_expired=True, work_parent=work)
    # The stored copy is what tuf starts from; replace it as another machine might have.
    with db.write_session() as session:
        row = session.scalars(
            select(CatalogMetadata).where(CatalogMetadata.role == "timestamp")
        ).one()
        md = Metadata[Timestamp].from_bytes(row.data)
        md.signed.unrecognized_fields["x-other"] = "bytes"
        md.signatures.clear()
        md.sign(catalog.signers("timestamp")[0])
        row.data = md.to_bytes(SERIALIZER)
    err = _refused(db, work, "expired")
    assert "its bytes differ from the ones the repin accepted" in err.message


def test_renewed_catalog_ends_the_acceptance(db: Database, catalog: Catalog, work: Path) -> None:
    """Once the publisher re-signs, the acceptance lapses: a later expiry is refused again."""
    _lapse(db, catalog, work)
    catalogs.repin_source(db, "main", catalog.root(), CLI, accept_expired=True, work_parent=work)
    publish.renew(catalog.directory, catalog.keys)
    result = _refresh(db, work)
    assert result.accepted_expired == {}
    with db.session() as session:
        (view,) = catalogs.list_sources(session)
    assert view.accepted_expired == {}
    (row,) = [
        r for r in _audit_rows(db, "catalog.refreshed") if "acceptedExpired" in (r.changes or {})
    ]
    assert row.changes["acceptedExpired"]["to"] == {}
    publish.renew(catalog.directory, catalog.keys, expiry_days=LAPSED)
    # Back to tuf's own expiry check, as if nothing had ever been accepted.
    err = _refused(db, work, "expired")
    assert "(timestamp.json is expired)" in err.message


def test_plain_repin_does_not_accept_expired_metadata(
    db: Database, catalog: Catalog, work: Path, events: list[dict[str, Any]]
) -> None:
    """Without --accept-expired a repin changes nothing about expiry: still refused."""
    _lapse(db, catalog, work)
    view = catalogs.repin_source(db, "main", catalog.root(), CLI)
    assert view.accepted_expired == {}
    _refused(db, work, "expired")
    assert events == []


def test_accept_expired_repin_refuses_other_faults(
    db: Database, catalog: Catalog, work: Path
) -> None:
    """Accepting expiry accepts nothing else: a catalog with new keys is refused, unchanged."""
    _lapse(db, catalog, work)
    before = _stored_versions(db)
    pinned = catalog.root()
    shutil.rmtree(catalog.directory)
    shutil.rmtree(catalog.keys)
    publish.init_catalog(catalog.directory, catalog.keys)
    catalog.publish("2.0.0")
    with pytest.raises(CatalogError) as caught:
        catalogs.repin_source(db, "main", pinned, CLI, accept_expired=True, work_parent=work)
    assert caught.value.reason == "signature"
    assert list(work.iterdir()) == []
    assert _stored_versions(db) == before
    assert ("catalog_source.repin_refused", "failure") in _audit_actions(db)
    assert _audit_rows(db, "catalog_source.repinned") == []
