"""The SQLite pool keeps its connections open under concurrent requests."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from paulyops.core.db.engine import Database


def test_concurrent_sessions_reuse_their_sqlite_connections(tmp_path: Path) -> None:
    """12 threads opening 20 sessions each open at most one connection per thread."""
    db = Database(f"sqlite:///{tmp_path / 'pool.db'}")
    try:
        barrier = threading.Barrier(12, timeout=10)

        def work() -> None:
            for _ in range(20):
                barrier.wait()  # all 12 hold a connection at the same moment
                with db.session() as session:
                    session.execute(text("SELECT 1"))
                    barrier.wait()

        threads = [threading.Thread(target=work) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert db.metrics.checkouts >= 12 * 20
        assert db.metrics.connects <= 12
    finally:
        db.close()
