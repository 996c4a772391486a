"""Helpers for the agent lifecycle tests: signed packages with settings, stored for an org."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AgentEvent, AuditLog
from paulyops.core.db.scoped import OrgScope
from paulyops.core.security.crypto import KeyRing
from paulyops.core.security.fields import bind_keyring
from paulyops.core.security.signatures import public_key_pem
from paulyops.services.actor import CLI, SYSTEM
from paulyops.services.marketplace import store, trust
from paulyops.services.marketplace.build import assemble

SECRET = "sk-live-very-secret-value-0123456789"

MANIFEST = """\
id = "{agent_id}"
name = "Hello"
version = "{version}"
description = "Counts words."
publisher = "{publisher}"
license = "MIT"
entrypoint = "agent:handle"
capabilities = {capabilities}

[compatibility]
paulyops = ">=0.1"

[handles]
mediaTypes = ["text/plain"]
documentClasses = ["other"]

[settings]
type = "object"

[settings.properties.apiKey]
type = "string"
secret = true
minLength = 8

[settings.properties.threshold]
type = "integer"
minimum = 0
default = 5

[dependencies.agents]
{agents}
"""


def files(
    *,
    agent_id: str = "acme.hello",
    version: str = "1.0.0",
    capabilities: Sequence[str] = ("alerts:raise", "secrets:apiKey"),
    agents: Mapping[str, str] | None = None,
) -> dict[str, bytes]:
    """Return the files of a small agent with a secret and a plain setting."""
    manifest = MANIFEST.format(
        agent_id=agent_id,
        version=version,
        publisher=agent_id.partition(".")[0],
        capabilities=json.dumps(list(capabilities)),
        agents="\n".join(f'"{k}" = "{v}"' for k, v in (agents or {}).items()),
    )
    return {
        "manifest.toml": manifest.encode(),
        "agent.py": b"def handle(ctx, item):\n    return None\n",
        "lib/words.py": b"def count(text):\n    return len(text.split())\n",
    }


def setup_instance(
    db: Database, key: Ed25519PrivateKey, publisher: str = "acme", *, bind: bool = True
) -> None:
    """Bind a key ring to ``db`` (unless an instance did) and trust ``key`` for ``publisher``."""
    import os

    if bind:
        bind_keyring(db, KeyRing(os.urandom(32)))
    with db.write_session() as session:
        trust.trust_key(
            session,
            trust.TrustKey(
                publisher=publisher, public_key=public_key_pem(key.public_key()).decode()
            ),
            actor=SYSTEM,
        )


def upload(db: Database, org_id: str, key: Ed25519PrivateKey, **manifest: object) -> str:
    """Upload a signed package for the organization; return its package id."""
    data = assemble(files(**manifest), key)  # type: ignore[arg-type]
    with db.write_session() as session:
        stored, _report = store.upload_package(
            OrgScope(session, org_id), store.UploadPackage(), io.BytesIO(data), actor=CLI
        )
    return stored.id


def cache_files(cache: Path) -> list[str]:
    """Every path under the cache (relative), folders included."""
    if not cache.exists():
        return []
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))


def events(db: Database, org_id: str) -> list[tuple[str, str]]:
    """(agent id, kind) of the organization's agent events, oldest first."""
    with db.session() as session:
        rows = session.scalars(
            select(AgentEvent)
            .where(AgentEvent.organization_id == org_id)
            .order_by(AgentEvent.created_at, AgentEvent.id)
        )
        return [(r.agent_id, r.kind) for r in rows]


def audit_text(db: Database) -> str:
    """Every audit row's action and changes, as one string (to look for leaks)."""
    with db.session() as session:
        rows = session.scalars(select(AuditLog).order_by(AuditLog.seq))
        return "\n".join(f"{r.action} {json.dumps(r.changes)}" for r in rows)


def audit_actions(db: Database, chain: str) -> list[str]:
    """The actions of one audit chain, oldest first."""
    with db.session() as session:
        return list(
            session.scalars(
                select(AuditLog.action).where(AuditLog.chain == chain).order_by(AuditLog.seq)
            )
        )
