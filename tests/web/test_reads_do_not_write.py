"""Reads do not write: authenticated GETs under concurrent writes on SQLite never fail.

A GET used to stamp ``last_seen_at``/``last_used_at`` inside its deferred transaction. On
SQLite such a read-then-write transaction cannot wait for the lock once another writer
committed after it read, and answered 500 "database is locked" within milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from paulyops.core.db.models import ApiToken, WebSession, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.services.auth import rbac, sessions, tokens
from tests.conftest import make_settings
from tests.factories import make_org

READERS = 16
SECONDS = 3.0


def test_mixed_read_write_load_on_sqlite_gives_no_5xx(tmp_path, db_url, db):
    """16 threads of authenticated reads while writers commit: 0 answers are 5xx."""
    if not db_url.startswith("sqlite"):
        pytest.skip("this is about SQLite's locking; PostgreSQL has row versions")
    from paulyops.web.app import create_app

    org = make_org(db, "load")
    with db.write_session() as session:
        user_id = org.members["Admin"]
        grant = rbac.grant_for(session, org.id, user_id)
        assert grant is not None
        web = sessions.create_session(session, user_id=user_id, organization_id=org.id)
        issued = tokens.create_api_token(
            OrgScope(session, org.id),
            user_id=user_id,
            name="load",
            permissions=["org:read"],
            holder_permissions=grant.permissions,
        )
    headers = [
        {"Authorization": f"Bearer {issued.secret}"},
        {"Cookie": f"paulyops_session={web.token}"},
    ]
    root = tmp_path / "instance"
    root.mkdir()
    settings = make_settings(root, DATABASE_URL=db_url, PAULYOPS_RATE_LIMITS="api=1000000/minute")
    app = create_app(settings)
    stop = threading.Event()
    writes = Counter[str]()

    def writer() -> None:
        # Another writer committing all the time, which also makes every stamp look stale
        # (older than a minute), so a read that stamps in its own transaction would write.
        while not stop.is_set():
            old = utcnow() - timedelta(minutes=2)
            with db.write_session() as session:
                session.execute(
                    update(WebSession).where(WebSession.id == web.row.id).values(last_seen_at=old)
                )
                session.execute(
                    update(ApiToken).where(ApiToken.id == issued.row.id).values(last_used_at=old)
                )
            writes["committed"] += 1
            time.sleep(0.005)

    def reader(client: TestClient, n: int) -> Counter[int]:
        seen = Counter[int]()
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            path = "/api/auth/me" if n % 2 == 0 else "/api/auth/sessions"
            seen[client.get(path, headers=headers[n % 2]).status_code] += 1
            n += 1
        return seen

    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            with ThreadPoolExecutor(READERS) as pool:
                results = list(pool.map(lambda n: reader(client, n), range(READERS)))
        finally:
            stop.set()
            thread.join()
        app.state.instance.activity.flush()
    statuses = sum(results, Counter[int]())
    assert sum(statuses.values()) > READERS
    assert writes["committed"] > 10
    assert {code for code in statuses if code >= 500} == set(), statuses
    assert set(statuses) == {200}, statuses


def test_sqlite_connections_use_wal_and_the_busy_timeout(db_url, db):
    """Every pooled SQLite connection runs in WAL mode with the busy timeout set."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite pragmas only")
    from paulyops.core.db.engine import SQLITE_BUSY_TIMEOUT_MS

    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS


def test_write_sessions_begin_immediate_on_sqlite(db_url, db):
    """A write session takes SQLite's write lock at BEGIN, so it waits instead of failing."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's BEGIN modes only")
    from sqlalchemy import event

    begun: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith("BEGIN"):
            begun.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.write_session() as session:
            session.get(WebSession, "nothing")
        with db.session() as session:
            session.get(WebSession, "nothing")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert begun == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]


def test_console_views_of_a_cached_session_do_not_write(tmp_path, db_url, db):
    """After the first view, console pages of one session write nothing, keeping one token.

    The principal cache serves a snapshot of the session row; its CSRF hash predates the
    token the first view stored, which made every later view issue and write a new one.
    """
    import re

    from sqlalchemy import event

    from paulyops.web.app import create_app

    org = make_org(db, "views")
    with db.write_session() as session:
        web = sessions.create_session(session, user_id=org.members["Admin"], organization_id=org.id)
    root = tmp_path / "instance"
    root.mkdir()
    app = create_app(make_settings(root, DATABASE_URL=db_url))
    cookie = {"Cookie": f"paulyops_session={web.token}"}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        first = client.get("/console", headers=cookie)
        assert first.status_code == 200
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        engine = app.state.instance.db.engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            pages = [client.get("/console", headers=cookie) for _ in range(3)]
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert [page.status_code for page in pages] == [200, 200, 200]
    writes = [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert writes == []
    token = re.compile(r'name="csrf_token" value="([^"]+)"')
    tokens_seen = {m.group(1) for page in (first, *pages) for m in token.finditer(page.text)}
    assert len(tokens_seen) == 1
