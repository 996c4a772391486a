"""A full disk and other database unavailability are named in plain words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from paulyops.core.db.failures import describe_db_error, is_unavailable
from paulyops.core.errors import ExternalServiceError
from paulyops.core.instance import Instance
from tests.conftest import make_settings

DISK_FULL = "the disk holding the database is full: free some space, then try again"


def test_starting_on_a_full_disk_says_the_disk_is_full(tmp_path: Path) -> None:
    """Migrating into a database that cannot grow fails naming the full disk, not a class."""
    settings = make_settings(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'paulyops.db'}",
        PAULYOPS_DB_CONNECT_ATTEMPTS="1",
    )
    instance = Instance(settings)

    @event.listens_for(instance.db.engine, "connect")
    def _no_room(dbapi_conn: Any, _record: Any) -> None:
        # SQLite's own "database or disk is full": the file may not grow past 8 pages.
        dbapi_conn.execute("PRAGMA max_page_count=8")

    try:
        with pytest.raises(ExternalServiceError) as info:
            instance.start(background=False)
    finally:
        instance.close()
    assert info.value.message == f"database failed while starting: {DISK_FULL}"
    cause = info.value.__cause__
    assert cause is not None
    assert is_unavailable(cause)
    assert describe_db_error(cause) == DISK_FULL


def test_an_enospc_below_the_driver_counts_as_disk_full() -> None:
    """An OSError ENOSPC wrapped by the driver error is recognised as a full disk."""
    import errno

    from sqlalchemy.exc import OperationalError

    low = OSError(errno.ENOSPC, "No room")
    err = OperationalError("INSERT ...", {}, RuntimeError("write failed"))
    err.__cause__ = low
    assert describe_db_error(err) == DISK_FULL
    assert describe_db_error(OperationalError("SELECT 1", {}, RuntimeError("refused"))) == (
        "the database is unavailable right now; try again shortly"
    )
