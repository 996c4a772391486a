"""20 concurrent provisions on PostgreSQL against the same 20 run one after another.

Each provision creates a distinct organization (roles, owner, membership, two storage
connections, settings, audit rows) through ``provision()``. Prints both wall times and
the speed-up ratio sequential / concurrent. Measures only; no asserts (correctness under
concurrency is tests/services/onboarding/test_provision_concurrency.py).

    PAULYOPS_TEST_DATABASE_URL=postgresql://... uv run python bench/provision_concurrent.py \
        [--count 20] [--rounds 3]

Runs in a throwaway database created and dropped here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from paulyops.core.db import migrate
from paulyops.core.db.engine import Database
from paulyops.core.logging import configure_logging
from paulyops.services.actor import SYSTEM
from paulyops.services.onboarding.provision import ProvisionContext, provision
from paulyops.services.onboarding.spec import SetupSpec, parse_spec


@contextlib.contextmanager
def throwaway_database(base_url: str) -> Iterator[str]:
    """Create a migrated PostgreSQL database, yield its URL, drop it afterwards."""
    name = f"paulyops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(base_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        db = Database(rendered)
        migrate.upgrade(db)
        db.close()
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def specs(prefix: str, count: int) -> list[SetupSpec]:
    """Return ``count`` distinct specs (finance, soc2, two cloud providers, an owner)."""
    return [
        parse_spec(
            {
                "organization": {"name": f"{prefix} {i}", "industry": "finance"},
                "storage": {"providers": ["google-drive", "dropbox"]},
                "owner": {"email": f"owner{i}@{prefix.lower()}.example.com", "name": "Owner"},
            }
        )
        for i in range(count)
    ]


def timed_run(db: Database, batch: list[SetupSpec], data_dir: Path, workers: int) -> float:
    """Provision every spec of ``batch`` with ``workers`` threads; return the seconds."""
    ctx = ProvisionContext(
        actor=SYSTEM, jwt_secret="bench-" + "x" * 40, public_url="http://bench", data_dir=data_dir
    )
    start = time.perf_counter()
    if workers == 1:
        for spec in batch:
            provision(db, spec, ctx)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda spec: provision(db, spec, ctx), batch))
    return time.perf_counter() - start


def main() -> int:
    """Run the rounds and print the medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = os.environ.get("PAULYOPS_TEST_DATABASE_URL")
    if not base:
        print("set PAULYOPS_TEST_DATABASE_URL to a PostgreSQL server to run this bench")
        return 2
    configure_logging(level="WARNING", json_lines=False)
    sequential: list[float] = []
    concurrent: list[float] = []
    with throwaway_database(base) as url, tempfile.TemporaryDirectory() as tmp:
        db = Database(url, pool_min=2, pool_max=args.count + 5, pool_timeout=60)
        db.connect(attempts=3)
        try:
            for index in range(args.rounds):
                sequential.append(
                    timed_run(db, specs(f"Seq{index}", args.count), Path(tmp), workers=1)
                )
                concurrent.append(
                    timed_run(db, specs(f"Par{index}", args.count), Path(tmp), workers=args.count)
                )
        finally:
            db.close()
    seq = statistics.median(sequential)
    par = statistics.median(concurrent)
    print(f"provisions per run:     {args.count} (median of {args.rounds} rounds)")
    print(f"sequential:             {seq:.3f} s ({seq / args.count * 1000:.1f} ms each)")
    print(f"{args.count} concurrent:          {par:.3f} s")
    print(f"speed-up (seq / conc):  {seq / par:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
