"""Forwarded headers: believed from trusted proxies only, for address, scheme and limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from paulyops.core.errors import ConfigError
from paulyops.web.forwarded import ForwardedHeadersMiddleware, install_forwarded_headers
from tests.conftest import make_settings
from tests.factories import PASSWORD, make_org

PROXY = ("10.0.0.5", 40000)  # inside the trusted 10.0.0.0/8
STRANGER = ("198.51.100.9", 40000)  # not a proxy
SPOOFED = {"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "https"}


async def _echo(request: Request) -> JSONResponse:
    client = request.client.host if request.client else None
    return JSONResponse({"client": client, "scheme": request.url.scheme})


def _echo_client(peer: tuple[str, int], trusted: list[str]) -> TestClient:
    app = ForwardedHeadersMiddleware(Starlette(routes=[Route("/", _echo)]), trusted=trusted)
    return TestClient(app, base_url="http://ops.example.com", client=peer)


def test_spoofed_headers_from_an_untrusted_peer_are_ignored() -> None:
    """A client that is not a trusted proxy cannot claim another address or https."""
    seen = _echo_client(STRANGER, ["10.0.0.0/8"]).get("/", headers=SPOOFED).json()
    assert seen == {"client": "198.51.100.9", "scheme": "http"}
    # With no proxy trusted at all (the default), not even loopback is believed.
    local = _echo_client(("127.0.0.1", 40000), []).get("/", headers=SPOOFED).json()
    assert local == {"client": "127.0.0.1", "scheme": "http"}


def test_a_trusted_proxy_sets_the_client_address_and_scheme() -> None:
    """From a trusted proxy: the right-most untrusted hop is the client, the proto the scheme."""
    client = _echo_client(PROXY, ["10.0.0.0/8"])
    seen = client.get(
        "/",
        headers={
            # The client wrote the first hop itself; the proxies appended the rest.
            "X-Forwarded-For": "192.0.2.1, 203.0.113.7, 10.0.0.9",
            "X-Forwarded-Proto": "https",
        },
    ).json()
    assert seen == {"client": "203.0.113.7", "scheme": "https"}
    assert client.get("/").json() == {"client": "10.0.0.5", "scheme": "http"}
    odd = client.get("/", headers={"X-Forwarded-Proto": "gopher"}).json()
    assert odd["scheme"] == "http"
    # Only the right-most value is the trusted proxy's own.
    chained = client.get("/", headers={"X-Forwarded-Proto": "https, http"}).json()
    assert chained["scheme"] == "http"


def test_a_bad_trusted_proxy_entry_is_a_config_error() -> None:
    """PAULYOPS_TRUSTED_PROXIES entries must be addresses or networks, named when not."""
    with pytest.raises(ConfigError, match=r"PAULYOPS_TRUSTED_PROXIES.*'proxy\.local'"):
        install_forwarded_headers(Starlette(), trusted=["127.0.0.1", "proxy.local"])


@pytest.fixture
def proxied_app(tmp_path: Path, db_url: str) -> Iterator[Starlette]:
    """The app behind a trusted proxy network, with a sign-in limit of 2 per minute."""
    from paulyops.web.app import create_app

    settings = make_settings(
        tmp_path,
        DATABASE_URL=db_url,
        PAULYOPS_TRUSTED_PROXIES="10.0.0.0/8",
        PAULYOPS_RATE_LIMITS="signin=2/minute",
    )
    app = create_app(settings)
    with TestClient(app):
        assert app.state.instance.ready.wait(20)
        yield app


def _signin(app: Starlette, peer: tuple[str, int], headers: dict[str, str], **body: str) -> int:
    client = TestClient(app, base_url="http://ops.example.com", client=peer)
    payload = {"email": "nobody@example.com", "password": "nope-nope-nope", **body}
    return client.post("/api/auth/sign-in", json=payload, headers=headers).status_code


def test_session_cookie_is_secure_only_when_a_trusted_proxy_says_https(
    proxied_app: Starlette,
) -> None:
    """Through the trusted proxy over https: __Host- Secure cookie and HSTS; spoofed: neither."""
    org = make_org(proxied_app.state.instance.db, "acme")
    credentials = {"email": org.emails["Admin"], "password": PASSWORD}
    via_proxy = TestClient(proxied_app, base_url="http://ops.example.com", client=PROXY)
    signed = via_proxy.post(
        "/api/auth/sign-in",
        json=credentials,
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    assert signed.status_code == 200, signed.text
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("__Host-paulyops_session=")
    assert "secure" in cookie.lower()
    assert "strict-transport-security" in signed.headers

    direct = TestClient(proxied_app, base_url="http://ops.example.com", client=STRANGER)
    spoofed = direct.post("/api/auth/sign-in", json=credentials, headers=SPOOFED)
    assert spoofed.status_code == 200, spoofed.text
    cookie = spoofed.headers["set-cookie"]
    assert cookie.startswith("paulyops_session=")
    assert "secure" not in cookie.lower()
    assert "strict-transport-security" not in spoofed.headers


def test_rate_limits_key_on_the_forwarded_client_only_from_a_trusted_proxy(
    proxied_app: Starlette,
) -> None:
    """Clients behind the proxy have their own buckets; a stranger's spoofing changes none."""
    first = {"X-Forwarded-For": "203.0.113.1"}
    second = {"X-Forwarded-For": "203.0.113.2"}
    assert [_signin(proxied_app, PROXY, first) for _ in range(3)] == [401, 401, 429]
    assert _signin(proxied_app, PROXY, second) == 401  # another client, its own bucket
    spoofs = [{"X-Forwarded-For": f"203.0.113.{n}"} for n in range(10, 13)]
    assert [_signin(proxied_app, STRANGER, h) for h in spoofs] == [401, 401, 429]
    blocked = {block.client_key for block in proxied_app.state.instance.limiter.recent_blocks()}
    assert blocked == {"addr:203.0.113.1", "addr:198.51.100.9"}
