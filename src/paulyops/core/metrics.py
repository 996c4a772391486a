"""Prometheus series of every layer, the scrape-time collectors, and the exposition.

Every series is named ``paulyops_*``. Counters and histograms are updated where the work
happens (the HTTP middleware, the key-value store, the rate limiter, the audit chain,
:func:`~paulyops.core.logging.business_metric`); numbers that already exist elsewhere
(the database pool, the health monitor's report) are read when Prometheus scrapes, by
:class:`InstanceCollector`, never per request.

Labels are a closed, small set: route *templates* (``/api/members/{member_id}``, never
the raw path), status codes, limit names, chain kinds, feature names. No label ever holds
a user id, an organization id or an e-mail address: :func:`safe_label` folds anything
that does not look like a short code name into ``other``.

**Several processes** (``paulyops serve --workers N``): :func:`prepare_multiprocess_dir`
points prometheus-client's multiprocess mode at a private directory in the data dir
before the workers start, so a scrape that lands on any worker sums the counters and
histograms of all of them. The pool and health numbers come from the worker that answers
(each worker has its own pool; the health report is the instance's).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from paulyops.core.db.engine import Database

# The environment variable prometheus-client reads (once, when it is imported) to switch
# to its multiprocess mode; the name is the library's, not ours.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROC_DIRNAME: Final = "metrics-multiproc"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# Request latency buckets (seconds): livez answers in well under a millisecond, a console
# page in tens of milliseconds, a slow database in seconds.
HTTP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Redis round trips on a LAN are ~0.1-1 ms; the socket timeout is a few seconds.
REDIS_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)

# A label value must look like a code name: lowercase, short, no '@' (e-mails) and not
# an id (ids are 'org_...' with 20+ random characters; see core/db/models new_id).
_LABEL = re.compile(r"^[a-z][a-z0-9_.:-]{0,47}$")
_ID_LIKE = re.compile(r"[a-z]{2,5}_[A-Za-z0-9]{16,}")
OTHER: Final = "other"

# The ``*_created`` timestamps double the series count and no dashboard here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "paulyops_http_requests",
    "HTTP requests answered, by method, route template and status code",
    ("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "paulyops_http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer, by method and route template",
    ("method", "route"),
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
REDIS_DURATION = Histogram(
    "paulyops_redis_command_duration_seconds",
    "Round trip of each key-value command sent to Redis (successful ones)",
    buckets=REDIS_BUCKETS,
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "paulyops_redis_errors",
    "Key-value commands that failed, including those refused at once while Redis is down",
    registry=REGISTRY,
)
RATELIMIT_WARNINGS = Counter(
    "paulyops_ratelimit_warnings",
    "Clients that crossed a limit's warning threshold (once per client and window)",
    ("limit",),
    registry=REGISTRY,
)
RATELIMIT_BLOCKS = Counter(
    "paulyops_ratelimit_blocks",
    "Requests refused by a rate limit, by limit name",
    ("limit",),
    registry=REGISTRY,
)
AUDIT_APPENDS = Counter(
    "paulyops_audit_appends",
    "Audit rows committed, by chain kind (organization or instance)",
    ("chain_kind",),
    registry=REGISTRY,
)
BUSINESS_EVENTS = Counter(
    "paulyops_business_events",
    "Business metrics (organization.provisioned, ...) summed by name",
    ("event",),
    registry=REGISTRY,
)
FEATURE_USAGE = Counter(
    "paulyops_feature_usage",
    "Uses of each product feature, counted per feature (never per person)",
    ("feature",),
    registry=REGISTRY,
)

HEALTH_STATES: Final = ("healthy", "degraded", "unhealthy", "not_configured")

# Agent runs last from a second (a no-op) to the sandbox's 300 s wall clock.
RUN_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
RUN_RESULTS: Final = ("succeeded", "failed", "dead", "discarded")
SANDBOX_MODES: Final = ("bubblewrap", "fallback", "insecure", "refused")
AGENT_RUNS = Counter(
    "paulyops_agent_runs",
    "Agent jobs finished by this process, by result (succeeded, failed and retried, dead, "
    "discarded: the lease was lost, another worker owns the job)",
    ("result",),
    registry=REGISTRY,
)
AGENT_RUN_DURATION = Histogram(
    "paulyops_agent_run_duration_seconds",
    "Time one agent job took inside its sandbox run",
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
for _result in RUN_RESULTS:  # every result is exported from the start, at 0
    AGENT_RUNS.labels(_result)
_sandbox_mode: list[str] = []


def count_agent_run(result: str, seconds: float | None = None) -> None:
    """Count one finished agent job and, when known, its duration."""
    AGENT_RUNS.labels(result if result in RUN_RESULTS else OTHER).inc()
    if seconds is not None:
        AGENT_RUN_DURATION.observe(max(0.0, seconds))


def set_sandbox_mode(mode: str) -> None:
    """Remember which isolation this process's sandbox runs had (exported at scrape)."""
    _sandbox_mode[:] = [mode if mode in SANDBOX_MODES else OTHER]


def sandbox_mode_metric(probed: str | None = None) -> Metric:
    """The ``paulyops_sandbox_mode`` gauge: 1 for the mode in force, 0 for the others.

    The mode of this process's last run wins; before the first run, the mode the health
    check probed (``probed``); with neither, every mode is 0.
    """
    family = GaugeMetricFamily(
        "paulyops_sandbox_mode",
        "Isolation of agent runs in this process (1 for the mode in force; all 0 before "
        "the first run)",
        labels=["mode"],
    )
    current = _sandbox_mode[0] if _sandbox_mode else probed
    for mode in SANDBOX_MODES:
        family.add_metric([mode], 1.0 if mode == current else 0.0)
    return family


def queue_metrics(stats: Any, queue: str) -> Iterator[Metric]:
    """Yield the job queue gauges from a :class:`~paulyops.core.db.queue.QueueStats`."""
    depth = GaugeMetricFamily(
        "paulyops_job_queue_depth", "Agent jobs waiting and due, by queue", labels=["queue"]
    )
    depth.add_metric([queue], float(stats.depth))
    yield depth
    oldest = GaugeMetricFamily(
        "paulyops_job_queue_oldest_age_seconds",
        "How long the oldest due job has waited (0 when none waits)",
        labels=["queue"],
    )
    oldest.add_metric([queue], float(stats.oldest_age_s or 0.0))
    yield oldest
    yield GaugeMetricFamily(
        "paulyops_jobs_running", "Agent jobs leased to a worker now", value=float(stats.running)
    )
    yield GaugeMetricFamily(
        "paulyops_jobs_dead", "Agent jobs that used up their attempts", value=float(stats.dead)
    )
    yield GaugeMetricFamily(
        "paulyops_agent_quarantined_installations",
        "Agent installations quarantined (repeated failures or a modified archive)",
        value=float(stats.quarantined),
    )


def safe_label(value: str) -> str:
    """Return ``value`` when it is a short code name, else ``other``.

    Keeps ids, e-mail addresses and free text out of labels, so a label can never
    identify a person or an organization, and the number of series stays bounded.
    """
    if _LABEL.match(value) and not _ID_LIKE.search(value):
        return value
    return OTHER


def observe_redis(seconds: float) -> None:
    """Record one successful Redis round trip."""
    REDIS_DURATION.observe(seconds)


def count_redis_error() -> None:
    """Count one failed (or refused) Redis command."""
    REDIS_ERRORS.inc()


def count_ratelimit_warning(limit: str) -> None:
    """Count a client crossing ``limit``'s warning threshold."""
    RATELIMIT_WARNINGS.labels(safe_label(limit)).inc()


def count_ratelimit_block(limit: str) -> None:
    """Count one request refused by ``limit``."""
    RATELIMIT_BLOCKS.labels(safe_label(limit)).inc()


def count_audit_appends(chain_kind: str, amount: int = 1) -> None:
    """Count committed audit rows of a chain kind (``organization`` or ``instance``)."""
    AUDIT_APPENDS.labels(chain_kind).inc(amount)


def count_business_event(name: str, value: float = 1) -> None:
    """Add ``value`` to the business metric ``name`` (negative values are ignored)."""
    if value >= 0:
        BUSINESS_EVENTS.labels(safe_label(name)).inc(value)


def count_feature_use(feature: str) -> None:
    """Count one use of ``feature``."""
    FEATURE_USAGE.labels(safe_label(feature)).inc()


class InstanceCollector:
    """Read the database pool and the cached health report when Prometheus scrapes.

    Args:
        database: the process's database client (its pool is read, nothing is queried).
        health_report: returns the health monitor's latest report (statuses only).
    """

    def __init__(self, database: Database, health_report: Any, *, queue: str = "agents") -> None:
        self.database = database
        self.health_report = health_report
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        """Yield the pool, health, job queue, sandbox and build series."""
        yield from _pool_metrics(self.database)
        yield from _health_metrics(self.health_report())
        yield from _queue_metrics(self.database, self.queue)
        from paulyops import __version__

        info = GaugeMetricFamily(
            "paulyops_build_info", "The running PaulyOps version (always 1)", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info


def _pool_metrics(database: Database) -> Iterator[Metric]:
    details = database.pool_details()
    numbers = (
        ("paulyops_db_pool_size", "Connections the pool keeps open", "size"),
        ("paulyops_db_pool_checked_out", "Connections in use by requests and jobs", "in_use"),
        ("paulyops_db_pool_overflow", "Connections open beyond the pool size", "overflow"),
    )
    for name, text, key in numbers:
        if key in details:
            yield GaugeMetricFamily(name, text, value=float(details[key]))
    ceiling = database.pool_ceiling
    if ceiling is not None:
        yield GaugeMetricFamily(
            "paulyops_db_pool_max",
            "The most connections the pool opens at once (size plus overflow)",
            value=float(ceiling),
        )
    yield CounterMetricFamily(
        "paulyops_db_errors",
        "Database errors seen by this process (failed connects and statements)",
        value=float(details.get("errors", 0)),
    )


def _queue_metrics(database: Database, queue: str) -> Iterator[Metric]:
    from sqlalchemy.exc import SQLAlchemyError

    from paulyops.core.db.queue import queue_stats

    try:
        stats = queue_stats(database)
    except SQLAlchemyError:  # a scrape while the database is down shows the other series
        return
    yield from queue_metrics(stats, queue)


def _health_metrics(report: dict[str, Any]) -> Iterator[Metric]:
    overall = GaugeMetricFamily(
        "paulyops_health_status",
        "The instance's health (1 for the current status, 0 for the others)",
        labels=["status"],
    )
    for state in ("healthy", "degraded", "unhealthy"):
        overall.add_metric([state], 1.0 if report.get("status") == state else 0.0)
    yield overall
    checks = GaugeMetricFamily(
        "paulyops_health_check_status",
        "Each dependency check's status (1 for the current status, 0 for the others)",
        labels=["check", "status"],
    )
    timing = GaugeMetricFamily(
        "paulyops_health_check_response_seconds",
        "How long each dependency check took at its last run",
        labels=["check"],
    )
    for name, check in sorted(report.get("checks", {}).items()):
        label = safe_label(name)
        for state in HEALTH_STATES:
            checks.add_metric([label, state], 1.0 if check.get("status") == state else 0.0)
        timing.add_metric([label], float(check.get("responseTime", 0)) / 1000)
    yield checks
    yield timing
    sandbox = report.get("checks", {}).get("sandbox", {}).get("details") or {}
    yield sandbox_mode_metric(sandbox.get("mode"))


class _Scrape:
    """What one scrape exposes: this process's (or every worker's) series, then the instance's."""

    def __init__(self, collectors: Iterable[Any]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def is_multiprocess() -> bool:
    """Whether prometheus-client runs in multiprocess mode in this process."""
    return bool(os.environ.get(MULTIPROC_ENV))


def render(instance_collector: InstanceCollector | None = None) -> bytes:
    """Return the Prometheus text exposition of every series.

    In multiprocess mode the counters and histograms are read from every worker's files
    (summed); otherwise from this process's registry.
    """
    collectors: list[Any] = []
    if is_multiprocess():
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # untyped upstream
        collectors.append(merged)
    else:
        collectors.append(REGISTRY)
    if instance_collector is not None:
        collectors.append(instance_collector)
    return generate_latest(_Scrape(collectors))


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """Create an empty private directory for multiprocess metrics and point workers at it.

    Call it in the parent process before the server's workers start (and before anything
    imports prometheus-client there): the workers inherit the environment variable.
    Files left by an earlier run are removed, so counters start from zero with the server.
    """
    path = data_dir / MULTIPROC_DIRNAME
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)  # mkdir's mode is filtered by the umask
    os.environ[MULTIPROC_ENV] = str(path)
    return path


__all__ = [
    "AGENT_RUNS",
    "AGENT_RUN_DURATION",
    "AUDIT_APPENDS",
    "BUSINESS_EVENTS",
    "CONTENT_TYPE",
    "FEATURE_USAGE",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "MULTIPROC_ENV",
    "RATELIMIT_BLOCKS",
    "RATELIMIT_WARNINGS",
    "REDIS_DURATION",
    "REDIS_ERRORS",
    "REGISTRY",
    "InstanceCollector",
    "count_agent_run",
    "count_audit_appends",
    "count_business_event",
    "count_feature_use",
    "count_ratelimit_block",
    "count_ratelimit_warning",
    "count_redis_error",
    "is_multiprocess",
    "observe_redis",
    "prepare_multiprocess_dir",
    "queue_metrics",
    "render",
    "safe_label",
    "sandbox_mode_metric",
    "set_sandbox_mode",
]
