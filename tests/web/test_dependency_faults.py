"""A hung Redis, a stalled or refusing PostgreSQL and a small pool never stall the server.

Faults come from :class:`tests.support.tcpproxy.TcpProxy` between PaulyOps and the shared
servers (``hang()`` accepts and never answers; ``disable()`` refuses). Time bounds are
generous on purpose (a busy machine): each is several times what a correct server needs
and well below what the faults cost before they were fixed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from paulyops.web.app import create_app
from tests.conftest import NO_PG, NO_REDIS, PG_URL, REDIS_URL, fresh_secrets, make_settings
from tests.factories import PASSWORD, make_org
from tests.support.pgdb import throwaway_database
from tests.support.server import ServerProcess, start_server
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.slow

# The shared Redis keeps sign-in counters across test runs: generous limits and a fresh
# organization (so fresh addresses) per test keep reruns independent.
LIMITS = "signin=1000/minute,signin_account=1000/minute"


def _slug() -> str:
    return f"acme{uuid.uuid4().hex[:8]}"


# --- helpers ---------------------------------------------------------------------------


def _redis_target() -> tuple[str, int]:
    from redis.connection import parse_url

    assert REDIS_URL
    opts = parse_url(REDIS_URL)
    return str(opts.get("host", "127.0.0.1")), int(opts.get("port", 6379))


def _redis_through(proxy: TcpProxy) -> str:
    assert REDIS_URL
    scheme, _, rest = REDIS_URL.partition("://")
    auth, _, hostpart = rest.rpartition("@")
    path = hostpart.partition("/")[2]
    return f"{scheme}://{auth + '@' if auth else ''}127.0.0.1:{proxy.port}/{path}"


def _pg_through(url: str, proxy: TcpProxy) -> str:
    parsed = make_url(url).set(host="127.0.0.1", port=proxy.port)
    parsed = parsed.update_query_dict({"sslmode": "disable"})
    return parsed.render_as_string(hide_password=False)


@contextlib.contextmanager
def _server(root: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    """Run ``paulyops serve``; a loaded machine may need long to import everything."""
    server = start_server(root, env=env)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                server.terminate(timeout=15)
        server.kill()


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the test Redis server."""
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    with TcpProxy(*_redis_target()) as proxy:
        yield proxy


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the test PostgreSQL server."""
    if not PG_URL:
        pytest.skip(NO_PG)
    url = make_url(PG_URL)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def own_pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database of this test alone (a server writes to it)."""
    if not PG_URL:
        pytest.skip(NO_PG)
    with throwaway_database(PG_URL, "paulyops_stall") as url:
        yield url


def _wait_until(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.fixture
def redis_app(tmp_path: Path, db_url: str, redis_proxy: TcpProxy) -> Iterator[TestClient]:
    """An app on Redis through the proxy (fast health refresh, a long Redis timeout).

    The long socket timeout makes any call that still waited on Redis on the event loop
    stall everything for seconds, so the tests below would see it.
    """
    settings = make_settings(
        tmp_path,
        DATABASE_URL=db_url,
        REDIS_URL=_redis_through(redis_proxy),
        PAULYOPS_RATE_LIMITS=LIMITS,
        PAULYOPS_HEALTH_INTERVAL="0.5",
        PAULYOPS_HEALTH_CHECK_TIMEOUT="2",
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        yield client


# --- Redis hung ------------------------------------------------------------------------


@pytest.mark.redis
def test_hung_redis_fails_sign_in_closed_and_keeps_everything_else_working(
    redis_app: TestClient, redis_proxy: TcpProxy
) -> None:
    """With Redis accepting but never answering, sign-in is a quick 503, the rest works.

    Signed-in requests fall back to the session row (CSRF included), livez answers,
    healthz reports degraded within its deadline.
    """
    client = redis_app
    org = make_org(client.app.state.instance.db, _slug())
    signed = client.post(
        "/api/auth/sign-in", json={"email": org.emails["Admin"], "password": PASSWORD}
    )
    assert signed.status_code == 200, signed.text
    csrf = signed.json()["csrfToken"]

    redis_proxy.hang()
    for _ in range(3):
        response, took = _timed(
            lambda: client.post(
                "/api/auth/sign-in", json={"email": org.emails["User"], "password": PASSWORD}
            )
        )
        assert response.status_code == 503, response.text
        assert response.json()["success"] is False
        assert "Redis" in response.json()["message"]
        assert response.headers["retry-after"]
        assert took < 5, f"sign-in took {took:.1f}s with Redis hung"

    me, took = _timed(lambda: client.get("/api/auth/me"))
    assert me.status_code == 200, me.text
    assert took < 5
    # A state change with the session's CSRF token still works (the row's hash).
    change, took = _timed(
        lambda: client.post("/api/auth/totp/start", headers={"X-CSRF-Token": csrf})
    )
    assert change.status_code == 200, change.text
    assert took < 5
    page, took = _timed(lambda: client.get("/console"))
    assert page.status_code == 200, page.text[:300]
    assert took < 5
    livez, took = _timed(lambda: client.get("/api/livez"))
    assert livez.status_code == 200
    assert took < 5

    def redis_unhealthy() -> bool:
        response = client.get("/api/healthz")
        assert response.status_code == 200, response.text
        return response.json()["checks"]["redis"]["status"] == "unhealthy"

    _wait_until(redis_unhealthy, timeout=15, what="healthz to report Redis unhealthy")
    report, took = _timed(lambda: client.get("/api/healthz").json())
    assert report["status"] == "degraded"
    assert took < 5


@pytest.mark.redis
def test_waiting_on_redis_never_blocks_the_event_loop(
    tmp_path: Path, db_url: str, redis_proxy: TcpProxy
) -> None:
    """While a signed-in request waits on a hung Redis, livez still answers at once."""
    settings = make_settings(
        tmp_path,
        DATABASE_URL=db_url,
        REDIS_URL=_redis_through(redis_proxy),
        PAULYOPS_RATE_LIMITS=LIMITS,
        # Long enough that a wait on the event loop would be unmistakable.
        PAULYOPS_REDIS_SOCKET_TIMEOUT="8",
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        org = make_org(app.state.instance.db, _slug())
        signed = client.post(
            "/api/auth/sign-in", json={"email": org.emails["Admin"], "password": PASSWORD}
        )
        assert signed.status_code == 200, signed.text
        redis_proxy.hang()
        waiting = threading.Thread(target=lambda: client.get("/api/auth/me"), daemon=True)
        waiting.start()
        time.sleep(0.5)  # the request is now waiting on Redis
        assert waiting.is_alive(), "the request did not wait on the hung Redis"
        livez, took = _timed(lambda: client.get("/api/livez"))
        assert livez.status_code == 200
        assert took < 4, f"livez waited {took:.1f}s behind a request stuck on Redis"
        redis_proxy.resume()
        waiting.join(timeout=20)


# --- PostgreSQL stalled or refusing -------------------------------------------------------


@pytest.mark.postgres
def test_stalled_postgres_makes_healthz_unhealthy_within_its_deadline(
    tmp_path: Path, own_pg_url: str, pg_proxy: TcpProxy
) -> None:
    """With PostgreSQL accepting but never answering, healthz answers 503, each call quickly."""
    env = {
        **fresh_secrets(),
        "DATABASE_URL": _pg_through(own_pg_url, pg_proxy),
        "PAULYOPS_HEALTH_INTERVAL": "1",
        "PAULYOPS_HEALTH_CHECK_TIMEOUT": "2",
    }
    with _server(tmp_path, env) as server:
        server.wait_for(
            lambda: server.get("/api/healthz").status_code == 200,
            timeout=60,
            what="instance ready",
        )
        pg_proxy.hang()
        slowest = 0.0

        def unhealthy() -> bool:
            nonlocal slowest
            response, took = _timed(lambda: server.get("/api/healthz", timeout=30))
            slowest = max(slowest, took)
            return response.status_code == 503

        server.wait_for(unhealthy, timeout=30, what="healthz 503 with PostgreSQL stalled")
        body = server.get("/api/healthz").json()
        assert body["checks"]["database"]["status"] == "unhealthy"
        assert slowest < 8, f"a healthz call took {slowest:.1f}s with PostgreSQL stalled"
        livez, took = _timed(lambda: server.get("/api/livez"))
        assert livez.status_code == 200
        assert took < 5
        pg_proxy.resume()
        server.wait_for(
            lambda: server.get("/api/healthz").status_code == 200,
            timeout=60,
            what="healthz 200 after PostgreSQL answers again",
        )


def _request(conn: http.client.HTTPConnection, path: str, **headers: str) -> tuple[int, Any]:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    return response.status, (response, body)


@pytest.mark.postgres
def test_refusing_postgres_gives_503_with_retry_after_on_a_kept_connection(
    tmp_path: Path, own_pg_url: str, pg_proxy: TcpProxy
) -> None:
    """PostgreSQL refusing while running: API and pages answer 503 + Retry-After, keep-alive."""
    env = {**fresh_secrets(), "DATABASE_URL": _pg_through(own_pg_url, pg_proxy)}
    with _server(tmp_path, env) as server:
        server.wait_for(
            lambda: server.get("/api/healthz").status_code == 200,
            timeout=60,
            what="instance ready",
        )
        pg_proxy.disable()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.connect()
            sock = conn.sock
            status, (response, body) = _request(
                conn, "/api/auth/me", Authorization="Bearer pot_" + "x" * 40
            )
            assert status == 503, body
            assert response.getheader("Retry-After")
            error = json.loads(body)
            assert error["success"] is False
            assert error["message"] == "the database is unavailable right now; try again shortly"
            assert error["errors"] == []
            assert conn.sock is sock, "the server dropped the keep-alive connection"

            status, (response, body) = _request(conn, "/")
            assert status == 503, body
            assert response.getheader("Retry-After")
            assert response.getheader("Content-Type", "").startswith("text/html")
            assert b"Temporarily unavailable" in body
            assert conn.sock is sock, "the server dropped the keep-alive connection"

            status, _ = _request(conn, "/api/livez")
            assert status == 200
            assert conn.sock is sock
        finally:
            conn.close()
        assert "request_crashed" not in server.event_names()
        pg_proxy.enable()
        server.wait_for(
            lambda: server.get("/api/healthz").status_code == 200,
            timeout=60,
            what="recovery",
        )


# --- the pool ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_console_requests_do_not_exhaust_a_small_pool(
    tmp_path: Path, pg_database_url: str
) -> None:
    """With a pool of two connections, eight concurrent console home pages all answer 200."""
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        PAULYOPS_DB_POOL_MIN="1",
        PAULYOPS_DB_POOL_MAX="2",
        PAULYOPS_DB_POOL_TIMEOUT="20",
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        instance = app.state.instance
        assert instance.ready.wait(20)
        org = make_org(instance.db, f"pool{uuid.uuid4().hex[:6]}")
        try:
            signed = client.post(
                "/api/auth/sign-in", json={"email": org.emails["Owner"], "password": PASSWORD}
            )
            assert signed.status_code == 200, signed.text
            checkouts = instance.db.pool_details()["checkouts"]
            with ThreadPoolExecutor(max_workers=8) as pool:
                codes = list(pool.map(lambda _: client.get("/console").status_code, range(16)))
            assert codes == [200] * 16
            used = instance.db.pool_details()["checkouts"] - checkouts
            # One connection per page (the monitor's own checks add a few at most).
            assert used <= 16 + 6, used
        finally:
            from tests.conftest import truncate_all

            truncate_all(instance.db)


@pytest.fixture
def slow_monitor_client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """An app whose health monitor runs rarely (so any extra check run is the request's)."""
    settings = make_settings(tmp_path, DATABASE_URL=db_url, PAULYOPS_HEALTH_INTERVAL="600")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        yield client


def test_console_reads_cached_health_without_running_checks(
    slow_monitor_client: TestClient,
) -> None:
    """Rendering the console home or healthz never runs a health check in the request."""
    client = slow_monitor_client
    instance = client.app.state.instance
    org = make_org(instance.db, "acme")
    assert (
        client.post(
            "/api/auth/sign-in", json={"email": org.emails["Owner"], "password": PASSWORD}
        ).status_code
        == 200
    )
    client.get("/api/healthz")  # the first report exists
    calls: list[str] = []
    names = instance.health.names
    for name in names:
        registered = instance.health._checks[name]
        original = registered.func

        def counting(original: Any = original, name: str = name) -> Any:
            calls.append(name)
            return original()

        registered.func = counting
    for _ in range(5):
        assert client.get("/console").status_code == 200
        assert client.get("/api/healthz").status_code == 200
    # The monitor may have had one more run queued at start: at most one run.
    assert len(calls) <= len(names), calls


# --- a full disk -----------------------------------------------------------------------------
