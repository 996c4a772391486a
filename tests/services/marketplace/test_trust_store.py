"""The instance trust store, stored archives and the unsigned-package policy (services)."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import INSTANCE_CHAIN, AgentPackage, AuditLog
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.core.security.signatures import generate_key, public_key_id, public_key_pem
from paulyops.services.actor import Actor
from paulyops.services.commands import CommandError, parse
from paulyops.services.marketplace import listing, store, trust
from paulyops.services.marketplace.archive import Limits
from paulyops.services.marketplace.build import assemble
from paulyops.services.marketplace.errors import PackageError
from paulyops.services.marketplace.validate import TrustedKey
from tests.factories import make_org
from tests.services.marketplace.packages import agent_files, signed_package

ADMIN = Actor("user", "usr_admin", "127.0.0.1")


def _pem(key) -> str:
    return public_key_pem(key.public_key(), publisher="acme").decode()


def _trust(session, key, publisher="acme"):
    return trust.trust_key(
        session, trust.TrustKey(publisher=publisher, public_key=_pem(key)), actor=ADMIN
    )


def _upload(db, org_id, data: bytes, name="hello.pauly"):
    with db.write_session() as session:
        stored, _report = store.upload_package(
            OrgScope(session, org_id),
            store.UploadPackage(file_name=name),
            io.BytesIO(data),
            actor=ADMIN,
        )
        return stored


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def _actions(session, chain) -> list[str]:
    return list(
        session.scalars(
            select(AuditLog.action).where(AuditLog.chain == chain).order_by(AuditLog.seq)
        )
    )


def test_a_trusted_key_validates_its_namespace_and_is_audited(db):
    """After `trust add`, an upload signed by the key is stored with the instance row."""
    org = make_org(db, "acme")
    key = generate_key()
    with db.write_session() as session:
        view = _trust(session, key)
    assert view.key_id == public_key_id(key)
    assert view.namespace == "acme.*"
    stored = _upload(db, org.id, signed_package(key))
    assert stored.signature_state == "signed"
    assert stored.key_id == view.key_id
    with db.session() as session:
        assert "marketplace.key_trusted" in _actions(session, INSTANCE_CHAIN)
        assert "marketplace.package_uploaded" in _actions(session, org.id)
        row = session.get(AgentPackage, stored.id)
        assert row.archive == signed_package(key) or row.size == stored.size


def test_untrusted_key_outside_namespace_and_revoked_key_each_have_their_message(db):
    """Untrusted, wrong namespace and revoked: three distinct rejections, nothing stored."""
    org = make_org(db, "acme")
    trusted, stranger = generate_key(), generate_key()
    with db.write_session() as session:
        _trust(session, trusted)
    with pytest.raises(PackageError, match="which is not a trusted key"):
        _upload(db, org.id, signed_package(stranger))
    with pytest.raises(PackageError, match=r"trusted only for acme\.\*, not for other\.hello"):
        _upload(db, org.id, signed_package(trusted, agent_id="other.hello"))
    with db.write_session() as session:
        trust.revoke(
            session,
            trust.RevokeTrust(key=public_key_id(trusted), reason="laptop stolen"),
            actor=ADMIN,
        )
    with pytest.raises(PackageError, match=r"which was revoked \(laptop stolen\)"):
        _upload(db, org.id, signed_package(trusted))
    with db.session() as session:
        assert _count(session, AgentPackage) == 0
        assert "marketplace.key_revoked" in _actions(session, INSTANCE_CHAIN)


def test_a_revoked_key_is_never_trusted_again(db):
    """Adding a revoked key back is a conflict, whatever namespace it is offered for."""
    key = generate_key()
    with db.write_session() as session:
        _trust(session, key)
        trust.revoke(session, trust.RevokeTrust(key=public_key_id(key)), actor=ADMIN)
    with db.write_session() as session, pytest.raises(ConflictError, match="never trusted"):
        _trust(session, key, publisher="other")


def test_revoking_a_version_refuses_that_version_only(db):
    """A revoked id+version is refused; the next version of the same agent validates."""
    org = make_org(db, "acme")
    key = generate_key()
    with db.write_session() as session:
        _trust(session, key)
        trust.revoke(
            session,
            trust.RevokeTrust(agent_id="acme.hello", version="1.0.0", reason="bad build"),
            actor=ADMIN,
        )
    with pytest.raises(PackageError, match=r"acme\.hello 1\.0\.0 was revoked"):
        _upload(db, org.id, signed_package(key))
    assert _upload(db, org.id, signed_package(key, version="1.0.1")).created
    with db.session() as session:
        listed = trust.list_trust(session)
        assert [r.target for r in listed.revocations] == ["acme.hello 1.0.0"]


def test_revoke_needs_one_target_and_a_known_key(db):
    """A revocation names a key or an id+version, never both or neither; unknown keys 404."""
    with pytest.raises(CommandError):
        parse(trust.RevokeTrust, {"reason": "x"})
    with pytest.raises(CommandError):
        parse(trust.RevokeTrust, {"key": "abcdef12", "agentId": "acme.x", "version": "1.0.0"})
    with pytest.raises(CommandError):
        parse(trust.RevokeTrust, {"agentId": "acme.x"})
    with db.write_session() as session, pytest.raises(NotFoundError):
        trust.revoke(session, trust.RevokeTrust(key="abcdef12"), actor=ADMIN)


def test_the_reserved_namespace_and_non_keys_are_refused(db):
    """Nobody trusts a key for paulyops.*, and a file that is no public key is a 422."""
    key = generate_key()
    with db.write_session() as session:
        with pytest.raises(CommandError, match="reserved"):
            _trust(session, key, publisher="paulyops")
        with pytest.raises(CommandError, match="not an Ed25519 public key"):
            trust.trust_key(
                session, trust.TrustKey(publisher="acme", public_key="hello"), actor=ADMIN
            )


def test_unsigned_packages_need_the_policy_and_every_use_is_audited(db):
    """Off by default; turned on, an unsigned upload is stored with its own audit row."""
    org = make_org(db, "acme")
    unsigned = assemble(agent_files())
    with pytest.raises(PackageError, match="SIGNATURE is missing"):
        _upload(db, org.id, unsigned)
    with db.write_session() as session:
        store.set_unsigned_policy(
            OrgScope(session, org.id), store.SetUnsignedPolicy(allow_unsigned=True), actor=ADMIN
        )
    stored = _upload(db, org.id, unsigned)
    assert stored.signature_state == "unsigned"
    with db.session() as session:
        actions = _actions(session, org.id)
        assert "marketplace.unsigned_policy_changed" in actions
        assert "marketplace.unsigned_package_accepted" in actions
        detail = listing.agent_detail(OrgScope(session, org.id), "acme.hello")
        assert detail.badge == "unsigned-allowed"


def test_uploads_are_the_organizations_own(db):
    """Another organization neither lists nor reads an upload; the same bytes again are a no-op."""
    acme, other = make_org(db, "acme"), make_org(db, "other")
    key = generate_key()
    with db.write_session() as session:
        _trust(session, key)
    stored = _upload(db, acme.id, signed_package(key))
    assert not _upload(db, acme.id, signed_package(key)).created
    with db.session() as session:
        mine = listing.search_agents(OrgScope(session, acme.id), listing.SearchAgents())
        # Bundled agents are every organization's; the upload is acme's only.
        assert [(a.id, a.badge) for a in mine] == [
            ("paulyops.document-classifier", "bundled"),
            ("paulyops.file-processor", "bundled"),
            ("acme.hello", "organization-local"),
        ]
        theirs = listing.search_agents(OrgScope(session, other.id), listing.SearchAgents())
        assert [(a.id, a.badge) for a in theirs] == [
            ("paulyops.document-classifier", "bundled"),
            ("paulyops.file-processor", "bundled"),
        ]
        with pytest.raises(NotFoundError):
            listing.agent_detail(OrgScope(session, other.id), "acme.hello")
        with pytest.raises(NotFoundError):
            store.load_archive(session, stored.id, organization_id=other.id)
        assert store.load_archive(session, stored.id, organization_id=acme.id)
    # The other organization may upload the same id and version as its own.
    assert _upload(db, other.id, signed_package(key)).created


def test_same_version_with_other_bytes_is_a_conflict(db):
    """A second, different archive under an existing id and version is refused."""
    org = make_org(db, "acme")
    key = generate_key()
    with db.write_session() as session:
        _trust(session, key)
    _upload(db, org.id, signed_package(key))
    changed = assemble({**agent_files(), "extra.py": b"x = 1\n"}, key)
    with pytest.raises(ConflictError, match="already in this organization"):
        _upload(db, org.id, changed)


def test_an_upload_over_the_limit_is_refused_while_reading(db):
    """read_capped stops past the limit without reading the rest."""

    class Endless(io.RawIOBase):
        reads = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            Endless.reads += 1
            buffer[:] = b"x" * len(buffer)
            return len(buffer)

    with pytest.raises(PackageError, match="the limit is 1000000 bytes"):
        store.read_capped(io.BufferedReader(Endless()), 1_000_000)
    assert Endless.reads < 100
    limits = Limits(max_unpacked_bytes=1024, max_files=10)
    assert store.max_upload_bytes(limits) > limits.max_archive_bytes


def test_search_filters_by_text_industry_capability_and_publisher(db):
    """Each filter narrows the listing; the capability comes with its plain words."""
    org = make_org(db, "acme")
    key = generate_key()
    with db.write_session() as session:
        _trust(session, key)
    _upload(db, org.id, signed_package(key))
    with db.session() as session:
        scope = OrgScope(session, org.id)

        def ids(**query):
            return [a.id for a in listing.search_agents(scope, listing.SearchAgents(**query))]

        assert ids(q="counts WORDS") == ["acme.hello"]
        assert ids(q="invoice") == []
        assert ids(capability="alerts:raise") == ["acme.hello"]
        assert ids(capability="network") == []
        assert ids(publisher="acme") == ["acme.hello"]
        assert ids(publisher="other") == []
        assert ids(industry="legal") == []
        detail = listing.agent_detail(scope, "acme.hello")
        assert detail.capability_details[0].description.startswith("Raise alerts")
        assert detail.all_versions[0].key_id == public_key_id(key)


def test_the_trust_stores_inputs_stop_staging_and_leave_nothing_on_disk(db, tmp_path):
    """stage_package with the store's inputs refuses a revoked key's package; no folder."""
    from paulyops.services.marketplace.validate import stage_package

    key = generate_key()
    package = tmp_path / "hello.pauly"
    package.write_bytes(signed_package(key))
    with db.write_session() as session:
        _trust(session, key)
        trusted, revoked = trust.trust_inputs(session)
    assert stage_package(package, tmp_path / "ok", trusted=trusted, revoked=revoked).is_ok
    with db.write_session() as session:
        trust.revoke(session, trust.RevokeTrust(key=public_key_id(key)), actor=ADMIN)
        trusted, revoked = trust.trust_inputs(session)
    assert trusted == []
    with pytest.raises(PackageError, match="which was revoked"):
        stage_package(package, tmp_path / "staged", trusted=trusted, revoked=revoked)
    assert not (tmp_path / "staged").exists()
    # A revoked key stays refused even where a caller still lists it as trusted.
    with pytest.raises(PackageError, match="which was revoked"):
        stage_package(
            package,
            tmp_path / "staged",
            trusted=[TrustedKey(key=key.public_key(), publisher="acme")],
            revoked=revoked,
        )
    assert not (tmp_path / "staged").exists()
