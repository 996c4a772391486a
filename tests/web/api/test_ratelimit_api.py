"""Rate limits over HTTP: 429 with headers, recent blocks and the allowlist for admins."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings
from tests.factories import PASSWORD, make_org


@pytest.fixture
def tight_client(tmp_path, db_url):
    """A client on an app whose sign-in limit is 3 per minute."""
    from fastapi.testclient import TestClient

    from paulyops.web.app import create_app

    settings = make_settings(tmp_path, DATABASE_URL=db_url, PAULYOPS_RATE_LIMITS="signin=3/minute")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        yield client


def test_over_the_limit_gives_429_with_retry_after_and_ratelimit_headers(tight_client):
    """The fourth sign-in attempt in a minute is 429, naming the limit and when it resets."""
    for _ in range(3):
        response = tight_client.post(
            "/api/auth/sign-in", json={"email": "x@example.com", "password": "nope-nope-nope"}
        )
        assert response.status_code == 401
    blocked = tight_client.post(
        "/api/auth/sign-in", json={"email": "x@example.com", "password": "nope-nope-nope"}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert blocked.headers["ratelimit-limit"] == "3"
    assert blocked.headers["ratelimit-remaining"] == "0"
    body = blocked.json()
    assert body["success"] is False
    assert "signin" in body["message"]
    assert body["errors"][0]["field"] == "rateLimit"


def test_admin_sees_blocks_and_allowlist_lets_a_client_through(tight_client):
    """Admins list recent blocks; an allowlisted address is no longer limited."""
    from paulyops.core.db.models import User

    db = tight_client.app.state.instance.db
    org = make_org(db, "acme")
    with db.write_session() as session:
        session.get(User, org.members["Admin"]).is_platform_admin = True
    for _ in range(4):
        tight_client.post(
            "/api/auth/sign-in", json={"email": "x@example.com", "password": "nope-nope-nope"}
        )
    tight_client.app.state.instance.limiter.reset("signin", "addr:testclient")
    tight_client.app.state.instance.limiter.reset("signin", "addr:127.0.0.1")
    signed = tight_client.post(
        "/api/auth/sign-in", json={"email": org.emails["Admin"], "password": PASSWORD}
    )
    assert signed.status_code == 200, signed.text
    csrf = signed.json()["csrfToken"]
    overview = tight_client.get("/api/security/ratelimits").json()
    assert any(block["limit"] == "signin" for block in overview["blocks"])
    added = tight_client.post(
        "/api/security/ratelimits/allowlist",
        json={"entry": "testclient"},
        headers={"X-CSRF-Token": csrf},
    )
    assert added.status_code == 201, added.text
    assert "testclient" in tight_client.get("/api/security/ratelimits").json()["allowlist"]
