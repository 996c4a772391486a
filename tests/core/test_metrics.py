"""core/metrics: each layer's hook counts what happened, and multiprocess scrapes sum workers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from paulyops.core import metrics
from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN
from paulyops.core.kv import KVUnavailableError, MemoryKV, RedisKV
from paulyops.core.logging import business_metric, feature_used
from paulyops.core.security.ratelimit import RateLimiter
from paulyops.services.audit import chain
from tests.conftest import NO_REDIS, REDIS_URL


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- labels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["signin", "organization.provisioned", "agents.run", "api", "signin_account"]
)
def test_code_names_are_kept_as_labels(value):
    """Short lowercase code names pass through unchanged."""
    assert metrics.safe_label(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "ann@example.com",
        "org_0123456789abcdefghijkl",
        "user.usr_AbCdEfGhIjKlMnOpQr",
        "Organization Name",
        "x" * 49,
        "",
        "/api/members/123",
    ],
)
def test_ids_emails_and_free_text_become_other(value):
    """Anything that could name a person or an organization is folded into 'other'."""
    assert metrics.safe_label(value) == metrics.OTHER


@given(st.emails())
def test_no_email_address_survives_as_a_label(email):
    """No e-mail address is ever a label value."""
    assert "@" not in metrics.safe_label(email)


# --- business events and features ----------------------------------------------------------


def test_business_metric_counts_per_name_never_per_field():
    """business_metric adds its value under its name; the fields stay out of labels."""
    name = f"test.event_{uuid.uuid4().hex[:8]}"
    business_metric(name, 3, organization_id="org_0123456789abcdefghijkl", email="a@b.example")
    business_metric(name)
    assert _sample("paulyops_business_events_total", event=name) == 4
    text = metrics.render().decode()
    assert "org_0123456789abcdefghijkl" not in text
    assert "a@b.example" not in text


def test_feature_usage_is_counted_per_feature():
    """feature_used counts uses of a feature; a name that looks like an id counts as other."""
    before_other = _sample("paulyops_feature_usage_total", feature="other")
    feature_used("documents.review")
    feature_used("documents.review")
    feature_used("usr_0123456789abcdefghijkl")
    assert _sample("paulyops_feature_usage_total", feature="documents.review") >= 2
    assert _sample("paulyops_feature_usage_total", feature="other") == before_other + 1


# --- rate limits ------------------------------------------------------------------------


def test_rate_limit_warnings_and_blocks_are_counted_by_limit():
    """Crossing the warning share counts one warning; each refused hit counts a block."""
    name = f"t{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(MemoryKV(), {name: "5/minute"}, strict=())
    for _ in range(7):  # warns at 4 of 5, then refuses the 6th and 7th
        limiter.hit(name, "addr:192.0.2.1")
    assert _sample("paulyops_ratelimit_warnings_total", limit=name) == 1
    assert _sample("paulyops_ratelimit_blocks_total", limit=name) == 2


# --- Redis -------------------------------------------------------------------------------


def test_failed_redis_commands_are_counted():
    """A command that cannot reach Redis counts an error, and so does the fast refusal after."""
    kv = RedisKV("redis://127.0.0.1:1/0", socket_timeout=0.2, retries=0)
    before = _sample("paulyops_redis_errors_total")
    try:
        for _ in range(2):
            with pytest.raises(KVUnavailableError):
                kv.get("anything")
    finally:
        kv.close()
    assert _sample("paulyops_redis_errors_total") == before + 2


@pytest.mark.redis
@pytest.mark.skipif(REDIS_URL is None, reason=NO_REDIS)
def test_redis_round_trips_are_observed():
    """Each successful command adds one observation of its round trip."""
    assert REDIS_URL is not None
    kv = RedisKV(REDIS_URL, prefix=f"test-metrics-{uuid.uuid4().hex}:")
    before = _sample("paulyops_redis_command_duration_seconds_count")
    total = _sample("paulyops_redis_command_duration_seconds_sum")
    try:
        kv.set("k", "v", ttl=10)
        assert kv.get("k") == "v"
        kv.delete("k")
    finally:
        kv.close()
    assert _sample("paulyops_redis_command_duration_seconds_count") == before + 3
    assert 0 < _sample("paulyops_redis_command_duration_seconds_sum") - total < 3


# --- audit -------------------------------------------------------------------------------


def test_audit_appends_are_counted_by_chain_kind_when_committed(db: Database):
    """Committed rows count per chain kind; rows of a rolled-back transaction do not."""
    instance_before = _sample("paulyops_audit_appends_total", chain_kind="instance")
    org_before = _sample("paulyops_audit_appends_total", chain_kind="organization")
    system = {"actor_type": "system", "actor_id": None}
    chain.append(db, chain=INSTANCE_CHAIN, action="test.one", **system)
    chain.append(db, chain="org_metrics_test", action="test.two", **system)
    with db.write_session() as session:
        chain.record(session, chain=INSTANCE_CHAIN, action="test.undone", **system)
        session.rollback()  # the use case failed: nothing was appended
    assert _sample("paulyops_audit_appends_total", chain_kind="instance") == instance_before + 1
    assert _sample("paulyops_audit_appends_total", chain_kind="organization") == org_before + 1
    labels = {labels for (_, labels) in _parse(metrics.render().decode())}
    assert not [pair for pairs in labels for pair in pairs if "org_metrics_test" in pair[1]]


# --- scrape-time collectors ------------------------------------------------------------------


def test_instance_collector_reads_the_pool_and_the_health_report(db: Database):
    """Pool numbers come from the database client; statuses from the report given."""
    report = {
        "status": "degraded",
        "checks": {
            "database": {"status": "healthy", "responseTime": 4},
            "redis": {"status": "unhealthy", "responseTime": 1000},
        },
    }
    with db.session() as session:
        session.connection()  # one connection checked out while scraping
        text = metrics.render(metrics.InstanceCollector(db, lambda: report)).decode()
    parsed = _parse(text)
    assert parsed[("paulyops_db_pool_checked_out", ())] >= 1
    assert parsed[("paulyops_db_pool_size", ())] >= 1
    # The ceiling is what the pool really opens: on SQLite its own, not PAULYOPS_DB_POOL_MAX.
    expected = 50 if db.dialect == "sqlite" else 10
    assert parsed[("paulyops_db_pool_max", ())] == expected
    assert ("paulyops_db_errors_total", ()) in parsed
    assert parsed[("paulyops_health_status", (("status", "degraded"),))] == 1
    assert parsed[("paulyops_health_status", (("status", "healthy"),))] == 0
    unhealthy = (("check", "redis"), ("status", "unhealthy"))
    assert parsed[("paulyops_health_check_status", unhealthy)] == 1
    assert parsed[("paulyops_health_check_response_seconds", (("check", "redis"),))] == 1.0


# --- several processes -----------------------------------------------------------------------


def test_prepare_multiprocess_dir_is_private_and_empty(tmp_path, monkeypatch):
    """The directory is created 0700, files of an earlier run are removed, workers see it."""
    # setenv first so that monkeypatch restores the variable's absence afterwards: left
    # set, every later render in this process would read (empty) multiprocess files.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "unset-after-the-test")
    old = tmp_path / metrics.MULTIPROC_DIRNAME
    old.mkdir()
    (old / "counter_123.db").write_bytes(b"stale")
    path = metrics.prepare_multiprocess_dir(tmp_path)
    assert path == old
    assert list(path.iterdir()) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert os.environ[metrics.MULTIPROC_ENV] == str(path)


_WORKER = textwrap.dedent(
    """
    import sys
    from paulyops.core import metrics
    from paulyops.web.metrics import MetricsMiddleware
    for _ in range(int(sys.argv[1])):
        metrics.count_ratelimit_block("signin")
    metrics.HTTP_REQUESTS.labels("GET", "/api/livez", "200").inc(int(sys.argv[1]))
    metrics.REDIS_DURATION.observe(0.001)
    """
)
_SCRAPER = textwrap.dedent(
    """
    import sys
    from paulyops.core import metrics
    assert metrics.is_multiprocess()
    sys.stdout.write(metrics.render().decode())
    """
)


def _run(code: str, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(  # the test's own interpreter, fixed code
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_multiprocess_scrape_sums_every_worker(tmp_path):
    """With the multiprocess directory set, a scrape in any process sums all workers."""
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    _run(_WORKER, "2", env=env)
    _run(_WORKER, "3", env=env)
    parsed = _parse(_run(_SCRAPER, env=env))
    assert parsed[("paulyops_ratelimit_blocks_total", (("limit", "signin"),))] == 5
    key = (("method", "GET"), ("route", "/api/livez"), ("status", "200"))
    assert parsed[("paulyops_http_requests_total", key)] == 5
    assert parsed[("paulyops_redis_command_duration_seconds_count", ())] == 2
