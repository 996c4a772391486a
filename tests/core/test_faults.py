"""Fault tolerance of the foundation against real PostgreSQL and Redis.

Outages are simulated with :class:`tests.support.tcpproxy.TcpProxy` between PaulyOps
and the shared servers (DESIGN.md, Tests and CI): the proxy is disabled and enabled;
the shared servers are never stopped. Server tests run ``paulyops serve`` in a
subprocess and talk to it over HTTP.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from paulyops.core.db.engine import Database
from paulyops.core.errors import ExternalServiceError
from paulyops.core.kv import KVUnavailableError, RedisKV
from tests.conftest import NO_PG, NO_REDIS, PG_URL, REDIS_URL, fresh_secrets
from tests.support.pgdb import throwaway_database
from tests.support.server import running_server, server_env, startup_budget
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.slow

needs_pg = pytest.mark.skipif(not PG_URL, reason=NO_PG)
needs_redis = pytest.mark.skipif(not REDIS_URL, reason=NO_REDIS)

# A made-up password put into proxied PostgreSQL URLs that carry none, so tests can check
# it never shows up in health details or errors (the test server trusts local users).
FAKE_PASSWORD = "fault-test-pw-" + uuid.uuid4().hex[:12]


# --- helpers ---------------------------------------------------------------------------


def _wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _through(url: str | URL, proxy: TcpProxy, *, password: str | None = None) -> str:
    """Return ``url`` pointed at ``proxy`` (and with ``password`` when it has none)."""
    parsed = make_url(url) if isinstance(url, str) else url
    parsed = parsed.set(host="127.0.0.1", port=proxy.port)
    if password and not parsed.password:
        parsed = parsed.set(password=password)
    if "sslmode" not in parsed.query:
        # One TCP connection per attempt (no SSL-then-plain retry), so proxy counts are exact.
        parsed = parsed.update_query_dict({"sslmode": "disable"})
    return parsed.render_as_string(hide_password=False)


def _passwords(url: str) -> list[str]:
    """The passwords a proxied copy of ``url`` carries: its own, or the made-up one."""
    return [make_url(url).password or FAKE_PASSWORD]


def _redis_through(proxy: TcpProxy) -> str:
    assert REDIS_URL
    scheme, _, rest = REDIS_URL.partition("://")
    auth, _, hostpart = rest.rpartition("@")
    path = hostpart.partition("/")[2]
    return f"{scheme}://{auth + '@' if auth else ''}127.0.0.1:{proxy.port}/{path}"


def _pg_target() -> tuple[str, int]:
    assert PG_URL
    url = make_url(PG_URL)
    return url.host or "127.0.0.1", url.port or 5432


def _redis_target() -> tuple[str, int]:
    assert REDIS_URL
    from redis.connection import parse_url

    opts = parse_url(REDIS_URL)
    return str(opts.get("host", "127.0.0.1")), int(opts.get("port", 6379))


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the test PostgreSQL server, enabled."""
    if not PG_URL:
        pytest.skip(NO_PG)
    with TcpProxy(*_pg_target()) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the test Redis server, enabled."""
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    with TcpProxy(*_redis_target()) as proxy:
        yield proxy


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """An empty (never migrated) throwaway PostgreSQL database, dropped afterwards.

    Unlike ``pg_database_url`` it is not migrated, so a test can see the server migrate it
    once the database becomes reachable.
    """
    if not PG_URL:
        pytest.skip(NO_PG)
    with throwaway_database(PG_URL, "paulyops_faults") as url:
        yield url


def _server_env(**extra: str) -> dict[str, str]:
    return {**fresh_secrets(), "PAULYOPS_HEALTH_INTERVAL": "1", **extra}


def _healthz(server: Any) -> tuple[int, dict[str, Any]]:
    response = server.get("/api/healthz")
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()


# --- 1. database unreachable at start -------------------------------------------------


@pytest.mark.postgres
@needs_pg
def test_server_waits_for_unreachable_database_then_migrates_without_restart(
    tmp_path: Path, empty_pg_url: str
) -> None:
    """With the database down the server is live but 503; once reachable it migrates, healthy."""
    with TcpProxy(*_pg_target(), enabled=False) as proxy:
        env = _server_env(DATABASE_URL=_through(empty_pg_url, proxy, password=FAKE_PASSWORD))
        with running_server(tmp_path, env=env) as server:
            # running_server waited for livez: it answered with the database still away.
            assert proxy.accepted == 0
            assert server.get("/api/livez").status_code == 200

            code, report = _healthz(server)
            assert code == 503
            assert report["status"] == "unhealthy"
            database = report["checks"]["database"]
            assert database["status"] == "unhealthy"
            assert database["details"]["connection"] == "connecting"
            for secret in _passwords(empty_pg_url):
                assert secret not in server.get("/api/healthz").text

            # It keeps retrying (with backoff) while the database stays away ...
            server.wait_for(
                lambda: server.event_names().count("db_connect_retry") >= 3,
                timeout=20,
                what="three logged connection retries",
            )
            assert proxy.refused >= 3
            assert server.get("/api/livez").status_code == 200
            assert _healthz(server)[0] == 503

            # ... and recovers on its own once the database is reachable.
            proxy.enable()
            server.wait_for(
                lambda: _healthz(server)[0] == 200,
                timeout=startup_budget(),
                what="healthz 200 after recovery",
            )
            code, report = _healthz(server)
            database = report["checks"]["database"]
            assert database["status"] == "healthy"
            assert database["details"]["migrations"] == "up_to_date"
            assert report["status"] in {"healthy", "degraded"}
            if report["checks"]["storage"]["status"] == "healthy":
                assert report["status"] == "healthy"
            assert server.proc.poll() is None
            names = server.event_names()
            assert names.count("server_started") == 1, "recovered without a restart"
            assert "db_upgraded" in names, "migrated once the database was reachable"
            for secret in _passwords(empty_pg_url):
                assert secret not in server.output


# --- 2. Redis going away ---------------------------------------------------------------


@pytest.mark.redis
@needs_redis
def test_redis_outage_degrades_health_and_recovers_without_restart(
    tmp_path: Path, redis_proxy: TcpProxy
) -> None:
    """Redis going away makes healthz degraded (200, redis unhealthy), and healthy again after."""
    env = _server_env(REDIS_URL=_redis_through(redis_proxy))
    with running_server(tmp_path, env=env) as server:

        def redis_status() -> str:
            code, report = _healthz(server)
            assert code == 200, report  # a Redis outage never makes the instance unhealthy
            return str(report["checks"]["redis"]["status"])

        server.wait_for(
            lambda: _healthz(server)[0] == 200, timeout=startup_budget(), what="instance ready"
        )
        server.wait_for(lambda: redis_status() == "healthy", timeout=20, what="redis healthy")
        assert redis_proxy.open_connections >= 1

        redis_proxy.disable()
        server.wait_for(lambda: redis_status() == "unhealthy", timeout=20, what="redis unhealthy")
        code, report = _healthz(server)
        assert code == 200
        assert report["status"] == "degraded"
        assert report["checks"]["database"]["status"] == "healthy"
        redis = report["checks"]["redis"]
        assert redis["status"] == "unhealthy"
        assert redis["details"]["connection"] == "failed"
        assert redis["details"]["errors"] >= 1
        assert server.get("/api/livez").status_code == 200

        redis_proxy.enable()
        server.wait_for(lambda: redis_status() == "healthy", timeout=20, what="redis recovered")
        code, report = _healthz(server)
        assert report["checks"]["redis"]["details"]["connection"] == "active"
        assert report["status"] != "unhealthy"
        if report["checks"]["storage"]["status"] == "healthy":
            assert report["status"] == "healthy"
        assert server.proc.poll() is None
        names = server.event_names()
        assert names.count("server_started") == 1, "recovered without a restart"
        assert "redis_state_changed" in names


# --- 3. SIGTERM during a request -------------------------------------------------------


def test_sigterm_finishes_in_flight_request_then_closes_database(tmp_path: Path) -> None:
    """SIGTERM lets a running request finish (200), then closes the database and exits 0."""
    with running_server(tmp_path, env=_server_env(), launcher="slow-serve") as server:
        server.wait_for(
            lambda: _healthz(server)[0] == 200, timeout=startup_budget(), what="instance ready"
        )
        result: dict[str, Any] = {}

        def slow_request() -> None:
            try:
                result["response"] = server.get("/test/slow?seconds=2", timeout=20)
            except httpx.HTTPError as err:  # reported by the assertion below
                result["error"] = err

        thread = threading.Thread(target=slow_request)
        thread.start()
        server.wait_for(
            lambda: "slow_request_started" in server.event_names(),
            timeout=5,
            what="the slow request to start",
            interval=0.02,
        )
        time.sleep(0.5)
        sent_at = time.monotonic()
        returncode = server.terminate(timeout=30)  # sends SIGTERM once and waits
        thread.join(timeout=20)

        assert "error" not in result, f"{result.get('error')!r}\n{server.output}"
        response = result["response"]
        assert response.status_code == 200, response.text
        assert response.json()["slept"] == 2
        assert time.monotonic() - sent_at >= 1.0, "the process waited for the request"
        names = server.event_names()
        finished = next(
            i
            for i, e in enumerate(server.events())
            if e.get("event") == "request" and e.get("path") == "/test/slow"
        )
        assert "db_closed" in names, server.output
        assert finished < names.index("db_closed"), "database closed before the request ended"
        assert names.index("slow_request_finished") < names.index("db_closed")
        assert returncode == 0, f"exit status {returncode} after SIGTERM:\n{server.output}"


# --- 4. in-process: Database and RedisKV through the proxy ------------------------------


@pytest.mark.postgres
def test_database_connect_retries_with_backoff_until_reachable(
    pg_database_url: str, pg_proxy: TcpProxy
) -> None:
    """Database.connect keeps retrying, with growing waits, until the database answers."""
    pg_proxy.disable()
    db = Database(_through(pg_database_url, pg_proxy), pool_min=1, pool_max=2)
    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            db.connect(attempts=0)
            outcome["ok"] = True
        except Exception as err:  # reported by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=connect)
    try:
        started = time.monotonic()
        thread.start()
        _wait_until(lambda: pg_proxy.refused >= 3, timeout=10, what="three refused attempts")
        # Three attempts wait at least 0.2 s + 0.4 s between them: backoff, not a busy loop.
        assert time.monotonic() - started >= 0.55
        assert pg_proxy.refused <= 5
        assert thread.is_alive(), outcome
        pg_proxy.enable()
        thread.join(timeout=10)
        assert not thread.is_alive(), "connect did not return after the database came back"
        assert outcome == {"ok": True}
        assert db.ping() >= 0
    finally:
        db.close()
        thread.join(timeout=10)


def test_database_connect_gives_up_after_attempts() -> None:
    """A bounded connect raises ExternalServiceError naming the masked URL, never the password."""
    with TcpProxy("127.0.0.1", 9, enabled=False) as proxy:
        url = (
            f"postgresql://paulyops:{FAKE_PASSWORD}@127.0.0.1:{proxy.port}/nowhere?sslmode=disable"
        )
        db = Database(url, pool_min=1, pool_max=1)
        try:
            with pytest.raises(ExternalServiceError) as info:
                db.connect(attempts=2)
        finally:
            db.close()
        assert FAKE_PASSWORD not in info.value.message
        assert "***" in info.value.message
        assert proxy.refused == 2


@pytest.mark.postgres
def test_database_check_records_outage_and_recovery(
    pg_database_url: str, pg_proxy: TcpProxy
) -> None:
    """check() goes healthy → unhealthy → healthy with the proxy; pool details hide the password."""
    changes: list[tuple[str, str]] = []
    db = Database(
        _through(pg_database_url, pg_proxy, password=FAKE_PASSWORD),
        pool_min=2,
        pool_max=3,
        on_state_change=lambda old, new: changes.append((old, new)),
    )
    try:
        db.connect(attempts=3)
        assert db.check().status == "healthy"
        assert pg_proxy.open_connections >= 1
        errors_before = db.pool_details()["errors"]

        pg_proxy.disable()  # drops the pooled connection: pre-ping must notice
        state = db.check()
        assert state.status == "unhealthy"
        assert state.error
        details = db.pool_details()
        assert details["dialect"] == "postgresql"
        assert details["errors"] > errors_before
        assert details["last_error"]
        for secret in _passwords(pg_database_url):
            assert secret not in repr(details)
            assert secret not in str(state.error)
        assert db.check().status == "unhealthy"  # still down: no new transition

        pg_proxy.enable()
        state = db.check()
        assert state.status == "healthy", state.error
        assert state.response_ms is not None
        assert changes == [
            ("unknown", "healthy"),
            ("healthy", "unhealthy"),
            ("unhealthy", "healthy"),
        ]
        with db.session() as session:
            assert session.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        db.close()


@pytest.mark.redis
def test_redis_kv_fails_fast_while_down_and_recovers(redis_proxy: TcpProxy) -> None:
    """RedisKV raises KVUnavailableError while Redis is away and works again afterwards."""
    kv = RedisKV(
        _redis_through(redis_proxy),
        prefix=f"paulyops-test:{uuid.uuid4().hex[:12]}:",
        health_check_interval=1,
        socket_timeout=1,
    )
    try:
        kv.set("k", "before", ttl=60)
        assert kv.get("k") == "before"
        assert kv.pool_details()["state"] == "healthy"

        redis_proxy.disable()
        started = time.monotonic()
        for operation in (
            lambda: kv.get("k"),
            lambda: kv.set("k", "during"),
            lambda: kv.incr("n", ttl=60),
            lambda: kv.delete("k"),
            kv.ping,
        ):
            with pytest.raises(KVUnavailableError):
                operation()
        assert time.monotonic() - started < 15, "each failure must be quick (bounded retries)"
        details = kv.pool_details()
        assert details["state"] == "unhealthy"
        assert details["errors"] >= 5
        assert details["last_error"]

        redis_proxy.enable()
        assert kv.ping() >= 0
        assert kv.get("k") == "before", "the value written before the outage is still there"
        assert kv.incr("n", ttl=60) == 1
        assert kv.pool_details()["state"] == "healthy"
    finally:
        keys = list(kv.client.scan_iter(match=kv.prefix + "*"))
        if keys:
            kv.client.delete(*keys)
        kv.close()


# --- 5. the health command --------------------------------------------------------------


def _health_cli(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paulyops.cli.main", "health"],
        cwd=root,
        env={**server_env(root, 8000, env), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_health_cli_exits_zero_on_healthy_sqlite_instance(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`paulyops health` prints the table and exits 0 on a migrated SQLite instance."""
    (tmp_path / "data").mkdir()
    shutil.copy(request.getfixturevalue("_sqlite_template"), tmp_path / "data" / "paulyops.db")
    result = _health_cli(tmp_path, fresh_secrets())
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("database", "redis", "storage", "stripe", "system"):
        assert name in result.stdout
    assert "migrations=up_to_date" in result.stdout
    assert "unhealthy" not in result.stdout


def test_health_cli_exits_one_when_database_unreachable(tmp_path: Path) -> None:
    """`paulyops health` reports the database unhealthy and exits 1 when it cannot connect."""
    with TcpProxy("127.0.0.1", 9, enabled=False) as proxy:
        url = f"postgresql://paulyops:{FAKE_PASSWORD}@127.0.0.1:{proxy.port}/paulyops"
        started = time.monotonic()
        result = _health_cli(tmp_path, {**fresh_secrets(), "DATABASE_URL": url})
        assert time.monotonic() - started < 30
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "unhealthy" in result.stdout
    assert "database" in result.stdout
    assert FAKE_PASSWORD not in output
    assert proxy.refused >= 1
