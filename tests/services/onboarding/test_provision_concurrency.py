"""provision() under concurrency: parallel setups all succeed; racing duplicates make one.

Runs on SQLite (``write_session`` serializes writers) and on PostgreSQL (real parallel
transactions, advisory locks on the audit chains, the unique slug as the final guard).
Threads share one :class:`Database`, as the server's request threads do; commits are
visible across connections and the ``db`` fixture truncates afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import func, select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import (
    AuditLog,
    Membership,
    Organization,
    SetupToken,
    StorageConfig,
    User,
)
from paulyops.core.errors import PaulyOpsError
from paulyops.services import audit
from paulyops.services.actor import SYSTEM
from paulyops.services.onboarding.firstrun import ensure_setup_token
from paulyops.services.onboarding.provision import ProvisionResult, provision
from tests.services.onboarding.test_provision import context, spec_of

T = TypeVar("T")
PARALLEL = 20
RACERS = 10
# Verification key: no checkpoints are written here, so any key verifies the hash links.
PUBLIC_KEY = audit.verifying_key(b"\x01" * 32)


def run_together(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` for ``i < count`` in threads released at the same moment."""
    barrier = threading.Barrier(count)

    def start(index: int) -> T:
        barrier.wait(timeout=30)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))


def wide_db(db: Database) -> Database:
    """Return a database handle whose pool fits every thread at once (PostgreSQL)."""
    if db.dialect != "postgresql":
        return db
    return Database(db.url, pool_min=2, pool_max=PARALLEL + 5, pool_timeout=60)


def scalar_count(db: Database, model: type[object], *criteria: object) -> int:
    """Count rows of ``model`` matching ``criteria``."""
    with db.session() as session:
        stmt = select(func.count()).select_from(model).where(*criteria)  # type: ignore[arg-type]
        return int(session.scalar(stmt) or 0)


def test_twenty_concurrent_provisions_all_succeed(db, tmp_path):
    """20 concurrent setups of distinct organizations all succeed, ids distinct, chains valid."""
    specs = [spec_of(f"Parallel Org {i:02d}") for i in range(PARALLEL)]
    pool_db = wide_db(db)
    try:
        results: list[ProvisionResult] = run_together(
            PARALLEL, lambda i: provision(pool_db, specs[i], context(tmp_path / str(i)))
        )
    finally:
        if pool_db is not db:
            pool_db.close()
    assert all(result.success and result.created for result in results)
    ids = {result.organization_id for result in results}
    assert len(ids) == PARALLEL
    assert scalar_count(db, Organization) == PARALLEL
    assert scalar_count(db, User) == PARALLEL
    assert scalar_count(db, Membership) == PARALLEL
    assert scalar_count(db, StorageConfig) == 2 * PARALLEL
    report = audit.verify(db, PUBLIC_KEY)
    assert report.is_ok, report.broken
    chains = {chain.chain for chain in report.chains}
    assert ids <= chains
    for org_id in ids:
        assert (
            scalar_count(
                db,
                AuditLog,
                AuditLog.chain == org_id,
                AuditLog.action == "organization.provisioned",
            )
            == 1
        )


def test_concurrent_provisions_make_exactly_one_platform_admin(db, tmp_path, request):
    """When the first setups race, exactly one owner becomes platform admin."""
    specs = [spec_of(f"Admin Race {i:02d}") for i in range(RACERS)]
    pool_db = wide_db(db)
    try:
        run_together(RACERS, lambda i: provision(pool_db, specs[i], context(tmp_path)))
    finally:
        if pool_db is not db:
            pool_db.close()
    assert scalar_count(db, User, User.is_platform_admin.is_(True)) == 1


def test_racing_provisions_of_same_spec_make_one_organization(db, tmp_path):
    """10 concurrent setups of the same spec make one organization; every caller gets its id."""
    spec = spec_of("Same Spec Inc")
    pool_db = wide_db(db)
    try:
        results = run_together(RACERS, lambda _i: provision(pool_db, spec, context(tmp_path)))
    finally:
        if pool_db is not db:
            pool_db.close()
    assert len({result.organization_id for result in results}) == 1
    assert sum(result.created for result in results) == 1
    assert all(result.success for result in results)
    assert scalar_count(db, Organization) == 1
    assert scalar_count(db, User) == 1
    assert scalar_count(db, StorageConfig) == 2
    assert scalar_count(db, AuditLog, AuditLog.action == "organization.provisioned") == 1
    assert audit.verify(db, PUBLIC_KEY).is_ok


def test_racing_provisions_with_one_setup_token_make_one_organization(db, tmp_path, request):
    """Racing setups that present the same setup token create one organization, not several."""
    secret = ensure_setup_token(db, tmp_path, actor=SYSTEM, force=True)
    assert secret is not None
    with db.session() as session:
        token_id = session.scalars(select(SetupToken.id)).one()
    specs = [spec_of(f"Token Race {i:02d}") for i in range(RACERS)]
    pool_db = wide_db(db)
    outcomes: list[str] = []

    def attempt(index: int) -> None:
        try:
            provision(pool_db, specs[index], context(tmp_path, setup_token_id=token_id))
            outcomes.append("created")
        except PaulyOpsError as err:
            outcomes.append(type(err).__name__)

    try:
        run_together(RACERS, attempt)
    finally:
        if pool_db is not db:
            pool_db.close()
    assert outcomes.count("created") == 1, outcomes
    assert scalar_count(db, Organization) == 1
