"""`paulyops doctor`: each checklist item passes, warns or fails with its fix; never crashes."""

from __future__ import annotations

import contextlib
import http.server
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.settings import load_settings
from paulyops.services.operations import doctor
from paulyops.services.operations.doctor import Status
from tests.support.server import running_server

runner = CliRunner()


def _instance(root: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    monkeypatch.setenv("PAULYOPS_HOME", str(root))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(
        app,
        [
            "setup",
            "--quick",
            "--org-name",
            "Acme",
            "--owner-email",
            "o@acme.example",
            "--owner-name",
            "O",
        ],
    )
    assert result.exit_code == 0, result.output


def _by_area(checks: list[doctor.Check]) -> dict[str, list[doctor.Check]]:
    out: dict[str, list[doctor.Check]] = {}
    for check in checks:
        out.setdefault(check.area, []).append(check)
    return out


def _doctor(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["doctor", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_a_fresh_trial_instance_warns_but_does_not_fail(tmp_path, monkeypatch):
    """Right after setup: secrets, modes, migrations, health and audit pass; trial defaults warn."""
    _instance(tmp_path, monkeypatch)
    code, report = _doctor()
    assert code == 0, report
    status = {c["area"]: c["status"] for c in report["checks"] if c["status"] != "warn"}
    assert status == {
        "secrets": "pass",
        "file modes": "pass",
        "rate limiting": "pass",
        "migrations": "pass",
        "health checks": "pass",
        "audit logging": "pass",
    } | ({"sandbox": "pass"} if "sandbox" in status else {})
    warned = {c["area"] for c in report["checks"] if c["status"] == "warn"}
    assert {"environment", "database", "redis", "backups", "monitoring"} <= warned
    assert all(c["fix"] for c in report["checks"] if c["status"] != "pass")


def test_production_without_url_tls_or_private_files_fails_with_the_fix(tmp_path, monkeypatch):
    """Production needs a public https URL; a readable .env.local fails with its chmod."""
    _instance(tmp_path, monkeypatch)
    (tmp_path / ".env.local").chmod(0o644)
    settings = load_settings(root=tmp_path, env="production")
    areas = _by_area(doctor.instance_checks(settings, None))
    assert areas["environment"][0].status is Status.PASS
    assert [c.status for c in areas["environment"][1:]] == [Status.FAIL]
    modes = areas["file modes"]
    assert modes[0].status is Status.FAIL
    assert modes[0].fix == f"chmod 600 {tmp_path / '.env.local'}"
    plain = load_settings(root=tmp_path, public_url="http://ops.acme.test")
    assert _by_area(doctor.instance_checks(plain, None))["tls"][0].status is Status.FAIL
    local = load_settings(root=tmp_path, public_url="http://127.0.0.1:8000")
    assert _by_area(doctor.instance_checks(local, None))["tls"][0].status is Status.WARN


def test_weak_secrets_and_a_tampered_audit_chain_fail(tmp_path, monkeypatch):
    """A placeholder secret fails; an edited audit row fails and names the chain; exit 1."""
    _instance(tmp_path, monkeypatch)
    db = sqlite3.connect(tmp_path / "data" / "paulyops.db")
    with db:
        triggers = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_logs'"
        ).fetchall()
        for name, _ in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute("UPDATE audit_logs SET action = 'forged' WHERE seq = 1")
        for _, sql in triggers:
            db.execute(sql)
    db.close()
    monkeypatch.setenv("JWT_SECRET", "changeme")
    code, report = _doctor()
    assert code == 1
    failed = {c["area"]: c for c in report["checks"] if c["status"] == "fail"}
    assert "JWT_SECRET" in failed["secrets"]["message"]
    assert "audit verify" in failed["audit logging"]["fix"]


def test_an_unreachable_database_is_one_failed_check(tmp_path, monkeypatch):
    """A database that refuses connections is reported with the fix, not as a traceback."""
    _instance(tmp_path, monkeypatch)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/none")
    code, report = _doctor()
    assert code == 1
    database = [c for c in report["checks"] if c["area"] == "database"]
    assert database[-1]["status"] == "fail"
    assert "DATABASE_URL" in database[-1]["fix"]


@contextlib.contextmanager
def _bare_http_server() -> Iterator[str]:
    """A web server that answers 200 with no security header (a misconfigured proxy)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "healthy"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_instance_that_cannot_open_is_reported(tmp_path, monkeypatch):
    """Without the encryption key the instance cannot open: one failed check says why."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    code, report = _doctor()
    assert code == 1
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert any("ENCRYPTION_KEY" in c["message"] for c in failed)


def test_server_checks_against_a_real_server_and_a_header_stripping_proxy(tmp_path):
    """PaulyOps itself sends every header; a front that strips them fails; down fails."""
    with running_server(tmp_path / "srv") as server, httpx.Client(timeout=10) as client:
        checks = _by_area(doctor.server_checks(f"http://127.0.0.1:{server.port}", client.get))
    assert checks["server"][0].status is Status.PASS
    assert checks["security headers"][0].status is Status.PASS
    assert checks["tls"][0].status is Status.WARN  # plain http on loopback
    with _bare_http_server() as url, httpx.Client(timeout=10) as client:
        stripped = _by_area(doctor.server_checks(url, client.get))
    assert stripped["security headers"][0].status is Status.FAIL
    assert "x-content-type-options" in stripped["security headers"][0].message
    with httpx.Client(timeout=2) as client:
        down = doctor.server_checks("http://127.0.0.1:9", client.get)
    assert [c.status for c in down] == [Status.FAIL]
