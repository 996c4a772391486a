"""GET /metrics: who may scrape, what each layer exports, and the labels it never uses."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from paulyops.core.settings import Settings
from paulyops.web.app import create_app
from tests.conftest import NO_REDIS, REDIS_URL, make_settings
from tests.factories import PASSWORD, make_org

REPO = Path(__file__).resolve().parents[2]
REMOTE = ("203.0.113.9", 5000)


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _value(text: str, name: str, **labels: str) -> float:
    """Return the sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for sample, found, value in _samples(text)
        if sample == name and all(found.get(k) == v for k, v in labels.items())
    )


def _sign_in(client: TestClient, email: str, password: str = PASSWORD):
    return client.post("/api/auth/sign-in", json={"email": email, "password": password})


def _make_platform_admin(client: TestClient, user_id: str) -> None:
    from paulyops.core.db.models import User

    with client.app.state.instance.db.write_session() as session:
        session.get(User, user_id).is_platform_admin = True


def _token(client: TestClient, email: str, permissions: list[str]) -> str:
    csrf = _sign_in(client, email).json()["csrfToken"]
    created = client.post(
        "/api/tokens",
        json={"name": "scraper", "permissions": permissions, "password": PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status_code == 201, created.text
    client.cookies.clear()
    return str(created.json()["token"])


@pytest.fixture
def remote(app_settings: Settings) -> Iterator[TestClient]:
    """A started app seen from a non-loopback address."""
    app = create_app(app_settings)
    with TestClient(app, base_url="http://203.0.113.9", client=REMOTE) as client:
        assert app.state.instance.ready.wait(20)
        yield client


def _exercise(client: TestClient) -> dict[str, str]:
    """Touch every layer: HTTP, database, rate limits, audit, business events, features."""
    org = make_org(client.app.state.instance.db, "acme")
    client.get("/api/livez")
    client.get("/api/healthz")
    client.get("/no/such/page/usr_0123456789abcdefghij")
    signed_in = _sign_in(client, org.emails["Admin"])  # audited in the instance chain
    assert signed_in.status_code == 200
    csrf = {"X-CSRF-Token": signed_in.json()["csrfToken"]}
    client.get("/api/members")
    created = client.post(  # audited in the organization's chain
        "/api/tokens",
        json={"name": "ci", "permissions": ["members:read"], "password": PASSWORD},
        headers=csrf,
    )
    assert created.status_code == 201, created.text
    client.delete("/api/tokens/tok_0123456789abcdefghij", headers=csrf)
    client.cookies.clear()
    for _ in range(12):  # signin allows 10 a minute: warns at 8, blocks the 11th
        _sign_in(client, "nobody@nowhere.example.com", "wrong-password-here")
    from paulyops.core.logging import business_metric, feature_used

    business_metric("organization.provisioned", industry="other")
    feature_used("agents.run")
    return {"org": org.id, **{f"user-{k}": v for k, v in org.members.items()}}


def test_loopback_scrape_shows_every_layer(client):
    """After each layer did work, one scrape shows its series with sensible values."""
    before = client.get("/metrics").text
    _exercise(client)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    text = response.text
    assert _value(text, "paulyops_http_requests_total", route="/api/livez", status="200") >= 1
    assert _value(text, "paulyops_http_request_duration_seconds_count", route="/api/livez") >= 1
    assert _value(text, "paulyops_http_requests_total", route="unmatched", status="404") >= 1
    assert _value(text, "paulyops_db_pool_size") >= 1
    for name in ("paulyops_db_pool_checked_out", "paulyops_db_pool_overflow"):
        assert name in {sample for sample, _, _ in _samples(text)}
    assert _value(text, "paulyops_db_errors_total") >= 0
    assert "paulyops_redis_command_duration_seconds_count" in text
    assert "paulyops_redis_errors_total" in text
    assert _value(text, "paulyops_ratelimit_blocks_total", limit="signin") > _value(
        before, "paulyops_ratelimit_blocks_total", limit="signin"
    )
    assert _value(text, "paulyops_ratelimit_warnings_total", limit="signin") >= 1
    assert _value(text, "paulyops_audit_appends_total", chain_kind="organization") > _value(
        before, "paulyops_audit_appends_total", chain_kind="organization"
    )
    assert _value(text, "paulyops_audit_appends_total", chain_kind="instance") >= 1
    assert _value(text, "paulyops_business_events_total", event="organization.provisioned") >= 1
    assert _value(text, "paulyops_feature_usage_total", feature="agents.run") >= 1
    assert _value(text, "paulyops_feature_usage_total", feature="auth") >= 1  # the sign-in
    assert _value(text, "paulyops_health_status", status="healthy") == 1
    assert _value(text, "paulyops_health_check_status", check="database", status="healthy") == 1
    assert _value(text, "paulyops_build_info") == 1


def test_routes_are_labelled_by_template_never_by_raw_path(client):
    """Ids in a path never become a label: the route's template does."""
    _exercise(client)
    text = client.get("/metrics").text
    routes = {labels["route"] for name, labels, _ in _samples(text) if "route" in labels}
    assert "/api/tokens/{token_id}" in routes
    assert "tok_0123456789abcdefghij" not in text
    assert "usr_0123456789abcdefghij" not in text
    assert all(route == "unmatched" or route.startswith("/") for route in routes)


def test_no_label_names_a_person_or_an_organization(client):
    """No label value holds an e-mail address, a user id or an organization id."""
    ids = _exercise(client)
    text = client.get("/metrics").text
    values = {value for _, labels, _ in _samples(text) for value in labels.values()}
    assert not [value for value in values if "@" in value]
    assert not values & set(ids.values())
    assert not [value for value in values if any(i in value for i in ids.values())]


def test_anonymous_remote_caller_is_refused(remote):
    """A caller off the machine without credentials gets 403 and the reason in plain text."""
    response = remote.get("/metrics")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert "metrics:read" in response.text
    assert "paulyops_" not in response.text


def test_forwarded_remote_client_behind_a_trusted_proxy_is_refused(tmp_path, db_url):
    """Behind a trusted proxy on loopback, the forwarded client counts, not the proxy."""
    settings = make_settings(tmp_path, DATABASE_URL=db_url, PAULYOPS_TRUSTED_PROXIES="127.0.0.1")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 4000)) as proxy:
        assert app.state.instance.ready.wait(20)
        forwarded = proxy.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        bare = proxy.get("/metrics")
    assert forwarded.status_code == 403
    assert bare.status_code == 403  # a proxy in front: loopback alone proves nothing


def test_token_limited_to_metrics_read_can_scrape(remote, app_settings):
    """A platform admin's token holding only metrics:read scrapes; one without it cannot."""
    org = make_org(remote.app.state.instance.db, "acme")
    _make_platform_admin(remote, org.members["Owner"])
    scraper = _token(remote, org.emails["Owner"], ["metrics:read"])
    other = _token(remote, org.emails["Owner"], ["members:read"])
    ok = remote.get("/metrics", headers={"Authorization": f"Bearer {scraper}"})
    assert ok.status_code == 200
    assert "paulyops_http_requests_total" in ok.text
    refused = remote.get("/metrics", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403
    # metrics:read is not an organization power: the token scrapes only while its user is
    # a platform administrator (a fresh process, so no cached principal answers).
    from paulyops.core.db.models import User

    with remote.app.state.instance.db.write_session() as session:
        session.get(User, org.members["Owner"]).is_platform_admin = False
    app = create_app(app_settings)
    with TestClient(app, base_url="http://203.0.113.9", client=REMOTE) as later:
        assert app.state.instance.ready.wait(20)
        demoted = later.get("/metrics", headers={"Authorization": f"Bearer {scraper}"})
    assert demoted.status_code == 403


def test_scraper_token_needs_a_platform_admin(remote):
    """An organization owner who is not a platform admin cannot put metrics:read on a token."""
    org = make_org(remote.app.state.instance.db, "acme")
    csrf = _sign_in(remote, org.emails["Owner"]).json()["csrfToken"]
    created = remote.post(
        "/api/tokens",
        json={"name": "scraper", "permissions": ["metrics:read"], "password": PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status_code == 403
    assert "metrics:read" in created.json()["message"]


# --- the dashboard and the alert rules name only exported series --------------------------

_SERIES = re.compile(r"\bpaulyops_[a-z0-9_]+")


def _alert_groups() -> list[dict]:
    document = yaml.safe_load((REPO / "deploy" / "prometheus-alerts.yml").read_text())
    return list(document["groups"])


def _dashboard_expressions() -> list[str]:
    import json

    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    expressions = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expressions.append(target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if "query" in variable and isinstance(variable["query"], str):
            expressions.append(variable["query"])
    return expressions


def _exported_names(client: TestClient) -> set[str]:
    _exercise(client)
    return {name for name, _, _ in _samples(client.get("/metrics").text)}


def test_dashboard_and_alerts_name_only_exported_series(client):
    """Every series in the dashboard and the alert rules appears in a real scrape."""
    exported = _exported_names(client)
    checked = _dashboard_expressions()
    for group in _alert_groups():
        checked.extend(str(rule["expr"]) for rule in group["rules"])
    assert checked
    missing = sorted({name for e in checked for name in _SERIES.findall(e)} - exported)
    assert not missing, f"not exported by the app: {missing}"


def test_alert_rules_cover_the_issue():
    """The rules cover health, 5xx, latency, pool, Redis, rate limits, quarantine and queue."""
    names = {rule["alert"] for group in _alert_groups() for rule in group["rules"]}
    assert {
        "PaulyOpsDegraded",
        "PaulyOpsUnhealthy",
        "PaulyOpsHigh5xxRate",
        "PaulyOpsSlowRequests",
        "PaulyOpsDatabasePoolExhausted",
        "PaulyOpsRedisErrors",
        "PaulyOpsRateLimitBlocksSpike",
        "PaulyOpsAgentQuarantined",
        "PaulyOpsJobQueueGrowing",
    } <= names
    for group in _alert_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


def test_cli_makes_a_scraper_token_for_a_platform_admin_only(tmp_path, db_url, monkeypatch):
    """``paulyops token create --permission metrics:read`` works for platform admins only,
    and the token it prints scrapes /metrics from afar."""
    from typer.testing import CliRunner

    from paulyops.cli.main import app as cli
    from paulyops.core.settings import write_env_values
    from tests.conftest import fresh_secrets

    secrets = fresh_secrets()
    write_env_values(tmp_path / ".env.local", secrets)
    for name, value in {"PAULYOPS_HOME": str(tmp_path), "PAULYOPS_ENV": "test"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", db_url)
    settings = make_settings(tmp_path, DATABASE_URL=db_url, **secrets)
    app = create_app(settings)
    with TestClient(app, base_url="http://203.0.113.9", client=REMOTE) as remote:
        assert app.state.instance.ready.wait(20)
        org = make_org(app.state.instance.db, "acme")

        def create(email: str):
            args = ["token", "create", "--org", org.id, "--user", email, "--name", "prometheus"]
            return CliRunner().invoke(cli, [*args, "--permission", "metrics:read", "--quiet"])

        refused = create(org.emails["Owner"])
        assert refused.exit_code != 0
        assert "metrics:read" in refused.output
        _make_platform_admin(remote, org.members["Owner"])
        made = create(org.emails["Owner"])
        assert made.exit_code == 0, made.output
        secret = made.stdout.strip()
        scraped = remote.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert scraped.status_code == 200


def test_standalone_middleware_counts_by_template():
    """MetricsMiddleware on a plain Starlette app labels by the matched route's template."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from paulyops.core import metrics
    from paulyops.web.metrics import MetricsMiddleware

    async def item(request):
        return PlainTextResponse(request.path_params["item_id"])

    app = Starlette(routes=[Route("/standalone/{item_id}", item)])
    app.add_middleware(MetricsMiddleware)
    labels = {"method": "GET", "route": "/standalone/{item_id}", "status": "200"}
    before = metrics.REGISTRY.get_sample_value("paulyops_http_requests_total", labels) or 0
    with TestClient(app) as plain:
        assert plain.get("/standalone/abc").text == "abc"
        assert plain.get("/standalone/def").status_code == 200
    assert metrics.REGISTRY.get_sample_value("paulyops_http_requests_total", labels) == before + 2
    assert "/standalone/abc" not in metrics.render().decode()


@pytest.mark.redis
@pytest.mark.skipif(REDIS_URL is None, reason=NO_REDIS)
def test_several_workers_scrape_the_sum_of_all(tmp_path):
    """Under ``serve --workers 2`` every scrape, whichever worker answers, sums both.

    Many keep-alive-free requests spread over both workers; each scrape must count them
    all (a single worker's own numbers would fall short), and the multiprocess directory
    is private to the server.
    """
    import subprocess
    import sys

    import httpx

    from tests.support.server import ServerProcess, free_port, server_env

    assert REDIS_URL is not None
    port = free_port()
    root = tmp_path / "instance"
    root.mkdir()
    log_path = root / "server.log"
    command = [sys.executable, "-m", "paulyops.cli.main", "serve", "--workers", "2"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(  # the test's own interpreter, fixed arguments
            [*command, "--port", str(port)],
            cwd=root,
            env=server_env(root, port, {"REDIS_URL": REDIS_URL}),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, port, log_path)
    try:
        server.wait_live()
        requests = 40
        for _ in range(requests):  # a new connection each: the kernel spreads them
            httpx.get(f"{server.url}/api/livez", timeout=10)
        for _ in range(6):
            scrape = httpx.get(f"{server.url}/metrics", timeout=10)
            assert scrape.status_code == 200, scrape.text
            livez = _value(
                scrape.text, "paulyops_http_requests_total", route="/api/livez", status="200"
            )
            assert livez >= requests + 1  # wait_live's probe, and every request since
        directory = root / "data" / "metrics-multiproc"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        pids = {path.name.rsplit("_", 1)[-1] for path in directory.glob("*.db")}
        assert len(pids) >= 2, f"expected files of both workers, got {sorted(pids)}"
    finally:
        server.kill()
