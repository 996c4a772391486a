"""provision(): all or nothing, idempotent per slug, conflicts, next steps, owner link."""

from __future__ import annotations

import base64
import copy
import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import (
    AgentConfig,
    AgentEvent,
    AgentInstallation,
    AuditLog,
    Membership,
    Organization,
    PasswordLink,
    Role,
    SecurityConfig,
    SetupToken,
    StorageConfig,
    User,
    utcnow,
)
from paulyops.core.errors import ConflictError, PermissionDeniedError
from paulyops.core.logging import correlation_scope
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.fields import bind_keyring
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.settings import decode_key, new_encryption_key
from paulyops.services import audit
from paulyops.services.actor import SYSTEM
from paulyops.services.auth import accounts, links
from paulyops.services.onboarding import provision as provisioning
from paulyops.services.onboarding.firstrun import ensure_setup_token
from paulyops.services.onboarding.provision import (
    ProvisionContext,
    ProvisionResult,
    provision,
)
from paulyops.services.onboarding.spec import SetupSpec, parse_spec

JWT_SECRET = "test-jwt-secret-" + "x" * 32
PUBLIC_URL = "http://paulyops.test"
# Rows provision() writes; after a failed provision none of them may remain.
PROVISIONED_MODELS = (
    Organization,
    Role,
    User,
    Membership,
    StorageConfig,
    SecurityConfig,
    AgentConfig,
    AgentInstallation,
    AgentEvent,
    AuditLog,
)


def body(name: str = "Acme Corp", *, email: str | None = None, **sections: Any) -> dict[str, Any]:
    """Return a wire SetupSpec for ``name`` with two credential-less cloud providers."""
    slug = name.lower().replace(" ", "-")
    raw: dict[str, Any] = {
        "organization": {"name": name, "industry": "finance", "complianceLevel": "soc2"},
        "storage": {"providers": ["google-drive", "dropbox"], "backupStrategy": "hybrid"},
        "owner": {"email": email or f"owner@{slug}.example.com", "name": f"Owner of {name}"},
    }
    raw.update(sections)
    return raw


def spec_of(name: str = "Acme Corp", **kwargs: Any) -> SetupSpec:
    """Return the parsed SetupSpec of :func:`body`."""
    return parse_spec(body(name, **kwargs))


def context(data_dir: Path, **kwargs: Any) -> ProvisionContext:
    """Return a provisioning context for the CLI-like system actor."""
    return ProvisionContext(
        actor=SYSTEM, jwt_secret=JWT_SECRET, public_url=PUBLIC_URL, data_dir=data_dir, **kwargs
    )


def count(db: Database, model: Any) -> int:
    """Return the number of rows of ``model``."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def counts(db: Database) -> dict[str, int]:
    """Return the row count of every model provision() writes, by table."""
    return {model.__tablename__: count(db, model) for model in PROVISIONED_MODELS}


@pytest.fixture
def keyring(db: Database) -> KeyRing:
    """Give the database's sessions an encryption key ring, as the app and CLI do at start."""
    ring = KeyRing(decode_key(new_encryption_key()))
    bind_keyring(db, ring)
    return ring


def _fail_on_second_call(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = provisioning._storage_row

    def flaky(*args: Any, **kwargs: Any) -> StorageConfig:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected: storage backend refused the second provider")
        return original(*args, **kwargs)

    monkeypatch.setattr(provisioning, "_storage_row", flaky)
    return calls


def test_failure_at_second_storage_provider_leaves_nothing_behind(db, tmp_path, monkeypatch):
    """A failure while writing the 2nd storage provider rolls back every row and audit entry.

    Fault injection at the edge: every spec that passes validation also passes the
    database's constraints, so no real input makes the second provider's flush fail;
    replacing ``_storage_row`` with one that raises on its second call puts the failure
    in the middle of the transaction, after the organization, roles, owner, membership,
    first storage row and their audit rows were flushed.
    """
    calls = _fail_on_second_call(monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        provision(db, spec_of(), context(tmp_path))
    assert len(calls) == 2
    assert counts(db) == dict.fromkeys(counts(db), 0)
    assert audit.verify(db, audit.verifying_key(new_encryption_key())).is_ok


def test_failure_at_last_step_leaves_nothing_behind(db, tmp_path):
    """A failure at the very last step (consuming a setup token that is gone) undoes it all."""
    before = counts(db)
    with pytest.raises(PermissionDeniedError, match="setup token"):
        provision(db, spec_of(), context(tmp_path, setup_token_id="stk_01JGONE0000000000000000000"))
    assert counts(db) == before == dict.fromkeys(before, 0)


def test_failure_does_not_consume_the_setup_token(db, tmp_path, monkeypatch):
    """After a failed provision the setup token and its file are still there to retry."""
    secret = ensure_setup_token(db, tmp_path, actor=SYSTEM, force=True)
    assert secret is not None
    with db.session() as session:
        token_id = session.scalars(select(SetupToken.id)).one()
    audit_rows = count(db, AuditLog)
    _fail_on_second_call(monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        provision(db, spec_of(), context(tmp_path, setup_token_id=token_id))
    with db.session() as session:
        assert session.get(SetupToken, token_id).consumed_at is None
    assert (tmp_path / "setup-token").is_file()
    assert count(db, AuditLog) == audit_rows
    assert count(db, Organization) == 0


def test_success_after_a_failed_attempt(db, tmp_path, monkeypatch):
    """Retrying the same spec after a failure creates the organization exactly once."""
    _fail_on_second_call(monkeypatch)
    with pytest.raises(RuntimeError):
        provision(db, spec_of(), context(tmp_path))
    monkeypatch.undo()
    result = provision(db, spec_of(), context(tmp_path))
    assert result.created
    assert count(db, Organization) == 1
    assert count(db, StorageConfig) == 2


def test_same_spec_is_idempotent(db, tmp_path):
    """The same spec again returns the same id, created=False, and writes nothing.

    Its owner never set a password, so the repeat hands out a new one-time link (issue
    10.7: the first run's link may never have been shown); it still writes nothing.
    """
    first = provision(db, spec_of(), context(tmp_path))
    after_first = counts(db)
    again = provision(db, spec_of(), context(tmp_path))
    assert first.created
    assert not again.created
    assert again.organization_id == first.organization_id
    assert again.owner_password_link is not None
    assert "/set-password?token=" in again.owner_password_link
    assert counts(db) == after_first


def test_same_spec_with_other_key_order_and_case_is_idempotent(db, tmp_path):
    """Answers that differ only in key order and choice case are the same spec."""
    first = provision(db, spec_of(), context(tmp_path))
    raw = body()
    raw["organization"] = {"complianceLevel": "SOC2", "industry": " Finance ", "name": "Acme Corp"}
    again = provision(db, parse_spec(raw), context(tmp_path))
    assert again.organization_id == first.organization_id
    assert not again.created


def test_different_spec_same_slug_conflicts(db, tmp_path):
    """A different spec whose name has the same slug is a ConflictError and changes nothing."""
    provision(db, spec_of(), context(tmp_path))
    before = counts(db)
    other = body("ACME  corp!", email="owner@acme-corp.example.com")
    other["storage"] = {"providers": ["local"], "backupStrategy": "local"}
    with pytest.raises(ConflictError, match="acme-corp"):
        provision(db, parse_spec(other), context(tmp_path))
    assert counts(db) == before


@pytest.mark.usefixtures("keyring")
def test_next_steps_name_missing_credentials_per_provider(db, tmp_path):
    """nextSteps name each provider without credentials and the settings it still needs."""
    raw = body()
    raw["storage"]["providers"] = [
        {"type": "s3", "name": "archive", "bucket": "acme-archive"},
        "google-drive",
        {"type": "dropbox", "name": "box", "appKey": "k1", "appSecret": "s1"},
        "local",
    ]
    result = provision(db, parse_spec(raw), context(tmp_path))
    steps = "\n".join(result.next_steps)
    assert "'archive' (s3) still needs accessKeyId, secretAccessKey" in steps
    assert "'google-drive' (google-drive) still needs clientId, clientSecret" in steps
    assert "'box'" not in steps
    assert "'local'" not in steps
    with db.session() as session:
        status = dict(session.execute(select(StorageConfig.name, StorageConfig.status)).all())
    assert status == {
        "archive": "needs_settings",
        "google-drive": "needs_settings",
        "box": "configured",
        "local": "configured",
    }


@pytest.mark.usefixtures("keyring")
def test_credentials_are_stored_encrypted_not_in_settings(db, tmp_path):
    """Provider secrets go to the encrypted credentials column, never into settings or audit."""
    raw = body()
    raw["storage"]["providers"] = [
        {"type": "dropbox", "name": "box", "appKey": "key-1", "appSecret": "very-secret-value"}
    ]
    provision(db, parse_spec(raw), context(tmp_path))
    with db.session() as session:
        row = session.scalars(select(StorageConfig)).one()
        assert row.credentials is not None
        assert b"very-secret-value" not in row.credentials
        assert "very-secret-value" not in str(row.settings)
        changes = session.scalars(select(AuditLog.changes)).all()
    assert "very-secret-value" not in str(changes)


def test_owner_password_link_works_once(db, tmp_path):
    """The owner's one-time link resolves to the owner until a password is set, then never."""
    result = provision(db, spec_of(), context(tmp_path))
    assert result.owner_password_link is not None
    token = result.owner_password_link.split("token=", 1)[1]
    hashing = PasswordHashing.for_tests()
    with db.write_session() as session:
        user = links.user_for_password_token(session, token)
        assert user.id == result.owner_user_id
        assert user.email == "owner@acme-corp.example.com"
        links.consume_password_token(
            session,
            token,
            set_password=lambda u: accounts.set_password(
                session, hashing, u, "a-long-and-unusual-passphrase-91"
            ),
        )
    with db.session() as session, pytest.raises(PermissionDeniedError, match="already used"):
        links.user_for_password_token(session, token)


def test_owner_password_link_is_opaque_and_stored_as_a_hash(db, tmp_path):
    """The link names no user id or hash fragment; only its sha256 is kept; edits are refused."""
    result = provision(db, spec_of(), context(tmp_path))
    token = (result.owner_password_link or "").split("token=", 1)[1]
    padded = token + "=" * (-len(token) % 4)
    decoded = base64.urlsafe_b64decode(padded)
    with db.session() as session:
        owner = session.get(User, result.owner_user_id)
        row = session.scalars(select(PasswordLink)).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in str(session.scalars(select(AuditLog.changes)).all())
        for readable in (owner.id, owner.id.encode(), b"uid", b"state", "uid", "state"):
            assert readable not in (decoded if isinstance(readable, bytes) else token)
        with pytest.raises(PermissionDeniedError, match="not valid"):
            links.user_for_password_token(session, ("B" if token[0] == "A" else "A") + token[1:])
        with pytest.raises(PermissionDeniedError, match="not valid"):
            links.user_for_password_token(session, "")


def test_owner_password_link_expires(db, tmp_path):
    """A link past its expiry is refused with a message that says so."""
    result = provision(db, spec_of(), context(tmp_path))
    token = (result.owner_password_link or "").split("token=", 1)[1]
    with db.write_session() as session:
        row = session.scalars(select(PasswordLink)).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
    with db.session() as session, pytest.raises(PermissionDeniedError, match="expired"):
        links.user_for_password_token(session, token)


def test_first_owner_is_platform_admin_and_later_owners_are_not(db, tmp_path):
    """The instance's first owner becomes platform admin; a second organization's does not."""
    first = provision(db, spec_of("First Co"), context(tmp_path))
    second = provision(db, spec_of("Second Co"), context(tmp_path))
    with db.session() as session:
        assert session.get(User, first.owner_user_id).is_platform_admin
        assert not session.get(User, second.owner_user_id).is_platform_admin


def test_provision_writes_summary_and_one_row_per_object_with_one_correlation(db, tmp_path):
    """Each created object has an audit row, the summary comes last, the chain verifies."""
    with correlation_scope() as cid:
        result: ProvisionResult = provision(db, spec_of(), context(tmp_path))
    with db.session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.chain == result.organization_id).order_by(AuditLog.seq)
        ).all()
        roles = session.scalar(select(func.count()).select_from(Role))
    actions = [row.action for row in rows]
    assert actions[-1] == "organization.provisioned"
    assert actions.count("role.created") == roles
    assert actions.count("storage.created") == 2
    assert {"member.added", "security.configured", "agents.configured"} <= set(actions)
    assert {row.correlation_id for row in rows} == {cid}
    assert audit.verify(db, audit.verifying_key(new_encryption_key())).is_ok


def test_spec_for_existing_owner_email_reuses_the_user(db, tmp_path):
    """An existing account becomes owner without a second user, and gets no new link.

    A password link for an existing account would let whoever provisions take it over;
    the person uses the link they already have (or an operator resets the password).
    """
    first = provision(db, spec_of("First Co", email="pat@example.com"), context(tmp_path))
    result = provision(db, spec_of("Second Co", email="pat@example.com"), context(tmp_path))
    assert count(db, User) == 1
    assert count(db, Membership) == 2
    assert first.owner_password_link is not None
    assert result.owner_password_link is None


def test_conflict_check_ignores_secrets(db, tmp_path):
    """Credentials are not part of an organization's identity: new secrets are not a conflict."""
    raw = body()
    raw["storage"]["providers"] = [{"type": "dropbox", "name": "box", "appKey": "k"}]
    first = provision(db, parse_spec(raw), context(tmp_path))
    again_raw = copy.deepcopy(raw)
    again_raw["storage"]["providers"][0]["appSecret"] = "later-added-secret"
    again = provision(db, parse_spec(again_raw), context(tmp_path))
    assert again.organization_id == first.organization_id
    assert not again.created


@pytest.mark.usefixtures("keyring")
def test_default_agents_without_a_package_are_recorded_as_unavailable(db, tmp_path):
    """A default agent with no package is recorded as unavailable, and nextSteps say so."""
    spec = spec_of(agents={"defaultAgents": ["file-processor", "data-analyzer"]})
    result = provision(db, spec, context(tmp_path))
    steps = result.next_steps
    assert (
        "Default agents installed: file-processor (see them with `paulyops agents list`)" in steps
    )
    unavailable = [s for s in steps if "recorded as unavailable" in s]
    assert len(unavailable) == 1
    assert unavailable[0].endswith(": data-analyzer")
    assert "file-processor" not in unavailable[0]
    with db.session() as session:
        config = session.scalars(select(AgentConfig)).one()
        row = session.scalars(select(AuditLog).where(AuditLog.action == "agents.configured")).one()
    assert config.default_agents == ["paulyops.file-processor", "paulyops.data-analyzer"]
    assert row.changes["unavailable"] == ["paulyops.data-analyzer"]
    assert row.changes["installed"] == ["paulyops.file-processor"]
    with db.session() as session:
        installed = session.scalars(select(AgentInstallation)).all()
    assert [(i.agent_id, i.status, i.granted_permissions) for i in installed] == [
        ("paulyops.file-processor", "enabled", [])
    ]
    assert installed[0].granted_by == context(tmp_path).actor.type
    assert (tmp_path / "agents" / "cache" / installed[0].package_sha256).is_dir()
    described = provisioning.describe(spec)
    assert described["unavailableAgents"] == ["paulyops.data-analyzer"]
