"""/api/healthz and /api/livez: the brief's shape, statuses and correlation ids."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from paulyops.core.health import stripe_check


def test_livez_answers_without_dependencies(client):
    """/api/livez answers 200 with the version."""
    response = client.get("/api/livez")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_healthz_has_the_brief_shape(client, db_url):
    """healthz reports status, timestamp, version, environment and each check with timing."""
    response = client.get("/api/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["environment"] == "test"
    assert body["timestamp"].endswith("Z")
    assert set(body["checks"]) >= {"database", "redis", "storage", "stripe", "system"}
    database = body["checks"]["database"]
    assert database["status"] == "healthy"
    assert isinstance(database["responseTime"], int)
    assert database["details"]["migrations"] == "up_to_date"
    assert database["details"]["connectionPool"] == "active"
    assert body["checks"]["redis"]["status"] == "not_configured"
    assert body["checks"]["stripe"]["status"] == "not_configured"
    assert "uptimeSeconds" in body["checks"]["system"]["details"]
    if db_url.startswith("postgresql"):
        assert database["details"]["max"] == 10
        assert database["details"]["min"] == 2


def test_healthz_hides_details_from_remote_callers(app_settings):
    """A caller that is not on the loopback interface gets statuses without details."""
    from fastapi.testclient import TestClient

    from paulyops.web.app import create_app

    app = create_app(app_settings)
    with TestClient(app, base_url="http://203.0.113.9", client=("203.0.113.9", 5000)) as remote:
        assert app.state.instance.ready.wait(20)
        body = remote.get("/api/healthz").json()
    for check in body["checks"].values():
        assert "details" not in check
        assert "responseTime" in check


def test_request_id_is_echoed_or_generated(client):
    """A valid X-Request-ID is echoed; otherwise a new correlation id is generated."""
    given = client.get("/api/livez", headers={"X-Request-ID": "abc-12345678"})
    assert given.headers["x-request-id"] == "abc-12345678"
    forged = client.get("/api/livez", headers={"X-Request-ID": "bad id\nwith newline"})
    assert forged.headers["x-request-id"] != "bad id\nwith newline"
    assert len(forged.headers["x-request-id"]) == 32


class _FakeStripe(BaseHTTPRequestHandler):
    """A loopback stand-in for api.stripe.com's balance endpoint."""

    def do_GET(self):  # http.server names it
        auth = self.headers.get("Authorization", "")
        if auth == "Bearer sk_test_good0000000000":
            status, body = 200, {"object": "balance", "available": [], "pending": []}
        else:
            status = 401
            body = {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_stripe():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeStripe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_stripe_check_accepts_a_valid_key(fake_stripe):
    """With a key Stripe accepts, the check is healthy (through the official SDK)."""
    result = stripe_check("sk_test_good0000000000", fake_stripe)()
    assert result.status == "healthy"
    assert result.details == {"mode": "test"}


def test_stripe_check_reports_a_rejected_key(fake_stripe):
    """A key Stripe rejects makes the check unhealthy, without echoing the key."""
    result = stripe_check("sk_test_bad00000000000", fake_stripe)()
    assert result.status == "unhealthy"
    assert "sk_test_bad" not in json.dumps(result.details)


def test_stripe_check_reports_unreachable_api():
    """An unreachable Stripe API makes the check unhealthy."""
    result = stripe_check("sk_test_good0000000000", "http://127.0.0.1:9")()
    assert result.status == "unhealthy"
    assert "unreachable" in result.details["error"]


def test_stripe_degrades_healthz_when_configured_and_failing(tmp_path, db_url):
    """A failing Stripe check makes the instance degraded (200), not unhealthy."""
    from fastapi.testclient import TestClient

    from paulyops.web.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(
        tmp_path,
        DATABASE_URL=db_url,
        STRIPE_SECRET_KEY="sk_test_bad00000000000",
        PAULYOPS_STRIPE_API_BASE="http://127.0.0.1:9",
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert app.state.instance.ready.wait(20)
        response = c.get("/api/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["stripe"]["status"] == "unhealthy"


def test_every_response_carries_security_headers(client):
    """Responses carry the settled CSP and the other security headers."""
    response = client.get("/api/livez")
    assert response.headers["content-security-policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "referrer-policy" in response.headers
    assert "strict-transport-security" not in response.headers  # plain http here


def test_oversized_body_is_refused_with_413(client):
    """A request body over the limit gets 413 in the JSON error shape."""
    response = client.post(
        "/api/auth/sign-in", content=b"x" * 2_000_000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["success"] is False


def test_enhanced_level_reminds_to_rotate_an_old_key(tmp_path, db_url):
    """With ENCRYPTION_LEVEL=enhanced and a key older than 90 days, healthz is degraded."""
    from datetime import UTC, datetime, timedelta

    from fastapi.testclient import TestClient

    from paulyops.web.app import create_app
    from tests.conftest import make_settings

    old = (datetime.now(UTC) - timedelta(days=120)).isoformat()
    settings = make_settings(
        tmp_path,
        DATABASE_URL=db_url,
        ENCRYPTION_LEVEL="enhanced",
        PAULYOPS_ENCRYPTION_KEY_CREATED_AT=old,
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert app.state.instance.ready.wait(20)
        body = c.get("/api/healthz").json()
    encryption = body["checks"]["encryption"]
    assert body["status"] == "degraded"
    assert encryption["status"] == "degraded"
    assert "paulyops keys rotate" in encryption["details"]["reminder"]
    assert encryption["details"]["activeKeyAgeDays"] >= 119
