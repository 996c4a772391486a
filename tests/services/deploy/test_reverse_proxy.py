"""deploy/Caddyfile, run with Debian's Caddy in front of a real server, over https.

The only changes to the shipped file: the site address becomes ``localhost`` and ``[::1]``
on a free port, ``tls internal`` replaces the public certificate, and the upstream port is
the test server's. The client reaches Caddy over IPv6 (``::1``) while Caddy reaches
PaulyOps over IPv4 (``127.0.0.1``), so the address PaulyOps records tells the two apart.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import REPO_ROOT, free_port, running_server

CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(
    CADDY is None, reason="caddy not installed (scripts/ensure-test-deps installs it)"
)


def _caddyfile(port: int, upstream: int) -> str:
    shipped = (REPO_ROOT / "deploy" / "Caddyfile").read_text()
    assert "ops.example.com {" in shipped
    assert "reverse_proxy 127.0.0.1:8000" in shipped
    site = shipped.replace(
        "ops.example.com {", f"https://localhost:{port}, https://[::1]:{port} {{\n\ttls internal"
    ).replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
    options = "{\n\tadmin off\n\tskip_install_trust\n\tauto_https disable_redirects\n}\n"
    return options + site


def _trust(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@contextlib.contextmanager
def _caddy(root: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """Run Caddy with the test Caddyfile; yield its https port and its local CA's root."""
    assert CADDY is not None
    port = free_port()
    root.mkdir(parents=True)
    config = root / "Caddyfile"
    config.write_text(_caddyfile(port, upstream))
    env = {"HOME": str(root), "XDG_DATA_HOME": str(root / "data"), "XDG_CONFIG_HOME": str(root)}
    log = (root / "caddy.log").open("wb")
    proc = subprocess.Popen(
        [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ca = root / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError((root / "caddy.log").read_text())
            if ca.is_file():
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"https://localhost:{port}/api/livez", verify=_trust(ca), timeout=2)
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("caddy did not come up:\n" + (root / "caddy.log").read_text())
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_caddy_example_gives_client_address_https_cookies_and_hsts(tmp_path):
    """Behind Caddy: HSTS, Secure __Host- cookies, and the real client address recorded."""
    env = {"PAULYOPS_TRUSTED_PROXIES": "127.0.0.1"}
    with (
        running_server(tmp_path / "srv", env=env) as server,
        _caddy(tmp_path / "caddy", server.port) as (port, ca),
    ):
        base = f"https://[::1]:{port}"
        with httpx.Client(base_url=base, verify=_trust(ca), timeout=10) as client:
            live = client.get("/api/livez")
            assert live.status_code == 200
            assert "max-age=" in live.headers["strict-transport-security"]
            page = client.get("/sign-in")
            assert page.status_code == 200
            cookies = page.headers.get_list("set-cookie")
            assert cookies, "the sign-in page sets its pre-session cookie"
            assert all("secure" in c.lower() for c in cookies), cookies
            refused = client.post(
                "/api/auth/sign-in",
                json={"email": "nobody@acme.example", "password": "wrong password"},
                headers={"X-Forwarded-For": "203.0.113.9"},  # made up by the client
            )
            assert refused.status_code == 401
        direct = httpx.get(f"http://127.0.0.1:{server.port}/api/livez", timeout=10)
        assert "strict-transport-security" not in direct.headers  # plain http, no proxy
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            failed = [e for e in server.events() if e.get("kind") == "auth.sign_in_failed"]
            if failed:
                break
            time.sleep(0.2)
    assert failed, server.output()
    assert failed[-1]["address"] == "::1", json.dumps(failed[-1])
