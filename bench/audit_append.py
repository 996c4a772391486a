"""Audit append throughput compared with a plain INSERT of the same row.

Both sides write one row per transaction through ``Database.write_session()`` and the ORM,
so the ratio is the cost of the chain itself: the advisory lock (PostgreSQL), reading the
head, hashing and redacting. The aim is a ratio of at least 0.7. Measures only; no asserts.

    uv run python bench/audit_append.py [--rows 500] [--rounds 5]

SQLite always (a temporary file); PostgreSQL too when ``PAULYOPS_TEST_DATABASE_URL`` is
set, in a throwaway database created and dropped here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from paulyops.core.db import migrate
from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog, new_id, utcnow
from paulyops.core.logging import configure_logging
from paulyops.services import audit

CHANGES = {"field": "name", "old": "Acme", "new": "Acme Ltd", "api_key": "not-stored"}


def plain_insert(db: Database, chain: str, seq: int) -> None:
    """Insert a row shaped like an audit row, with no lock, head read or hashing."""
    with db.write_session() as session:
        session.add(
            AuditLog(
                id=new_id("aud"),
                chain=chain,
                seq=seq,
                created_at=utcnow(),
                actor_type="user",
                actor_id="usr_01JBENCH",
                action="organization.updated",
                target_type="organization",
                target_id="org_01JBENCH",
                outcome="success",
                client_address="127.0.0.1",
                correlation_id=None,
                changes=CHANGES,
                prev_hash="0" * 64,
                row_hash="1" * 64,
            )
        )


def audit_append(db: Database, chain: str, _seq: int) -> None:
    """Append the same row through the audit service."""
    audit.append(
        db,
        chain=chain,
        action="organization.updated",
        actor_type="user",
        actor_id="usr_01JBENCH",
        target_type="organization",
        target_id="org_01JBENCH",
        client_address="127.0.0.1",
        changes=CHANGES,
    )


def rate(db: Database, write: Callable[[Database, str, int], None], rows: int) -> float:
    """Return rows per second for ``rows`` writes to a fresh chain."""
    chain = f"bench-{uuid.uuid4().hex[:12]}"
    start = time.perf_counter()
    for seq in range(1, rows + 1):
        write(db, chain, seq)
    return rows / (time.perf_counter() - start)


def measure(name: str, db: Database, rows: int, rounds: int) -> None:
    """Print the paired median of ``rounds`` alternating rounds: ratio per pair, then median.

    Picking each side's best round compared moments of different load (PostgreSQL gave
    0.25-1.25 across runs); a ratio of two back-to-back rounds shares the moment, and the
    order alternates so neither side always runs second.
    """
    rate(db, plain_insert, 20)  # warm up the pool and statement caches
    rate(db, audit_append, 20)
    plains: list[float] = []
    chaineds: list[float] = []
    ratios: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            plain = rate(db, plain_insert, rows)
            chained = rate(db, audit_append, rows)
        else:
            chained = rate(db, audit_append, rows)
            plain = rate(db, plain_insert, rows)
        plains.append(plain)
        chaineds.append(chained)
        ratios.append(chained / plain)
    print(
        f"{name:<10} plain insert {statistics.median(plains):8.0f} rows/s   "
        f"audit append {statistics.median(chaineds):8.0f} rows/s   "
        f"ratio {statistics.median(ratios):.2f} paired median of {rounds} "
        f"({min(ratios):.2f}-{max(ratios):.2f}; aim >= 0.70)"
    )


@contextlib.contextmanager
def sqlite_database() -> Iterator[Database]:
    """A migrated SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate.upgrade(db)
        try:
            yield db
        finally:
            db.close()


@contextlib.contextmanager
def postgres_database(base_url: str) -> Iterator[Database]:
    """A migrated throwaway PostgreSQL database, dropped afterwards."""
    name = f"paulyops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(base_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(drivername="postgresql+psycopg", database=name)
    db = Database(url.render_as_string(hide_password=False))
    try:
        migrate.upgrade(db)
        yield db
    finally:
        db.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def main() -> None:
    """Run the benchmark on every configured database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500, help="rows per round")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds; the median ratio counts"
    )
    args = parser.parse_args()
    configure_logging(level="WARNING")
    with sqlite_database() as db:
        measure("sqlite", db, args.rows, args.rounds)
    pg_url = os.environ.get("PAULYOPS_TEST_DATABASE_URL")
    if pg_url:
        with postgres_database(pg_url) as db:
            measure("postgresql", db, args.rows, args.rounds)
    else:
        print("postgresql skipped: set PAULYOPS_TEST_DATABASE_URL to include it")


if __name__ == "__main__":
    main()
