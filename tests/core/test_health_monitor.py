"""Health checks are bounded and cached: deadlines hold, probes never collide."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from paulyops.core.health import (
    CheckResult,
    HealthMonitor,
    HealthRegistry,
    storage_check,
    without_details,
)


def _hanging(release: threading.Event, calls: list[int]):
    def check() -> CheckResult:
        calls.append(1)
        release.wait(30)
        return CheckResult("healthy")

    return check


def test_a_hanging_check_is_unhealthy_at_its_deadline_and_not_started_twice() -> None:
    """A check past its deadline counts as unhealthy at once; the next run reuses it."""
    release = threading.Event()
    calls: list[int] = []
    registry = HealthRegistry(timeout=0.5)
    registry.register("database", _hanging(release, calls), critical=True)
    registry.register("system", lambda: CheckResult("healthy"), critical=False)
    try:
        started = time.monotonic()
        report = registry.run(environment="test", include_details=True)
        took = time.monotonic() - started
        assert took < 5, f"the report waited {took:.1f}s for a check with a 0.5 s deadline"
        assert report["status"] == "unhealthy"
        assert report["checks"]["database"]["status"] == "unhealthy"
        assert "0.5 s" in report["checks"]["database"]["details"]["error"]
        assert report["checks"]["system"]["status"] == "healthy"

        again = registry.run(environment="test", include_details=False)
        assert again["checks"]["database"]["status"] == "unhealthy"
        assert "details" not in again["checks"]["database"]
        assert calls == [1], "a second copy of the hanging check was started"
    finally:
        release.set()
    time.sleep(0.2)
    healthy = registry.run(environment="test", include_details=False)
    assert healthy["status"] == "healthy"
    assert len(calls) == 2


def test_concurrent_storage_checks_never_see_each_others_probe(tmp_path: Path) -> None:
    """Many storage checks at once (healthz, other processes) all stay healthy."""
    check = storage_check(tmp_path)

    def run(_: int) -> str:
        statuses = {check().status for _ in range(40)}
        return ",".join(sorted(statuses))

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(run, range(8)))
    assert all("unhealthy" not in outcome for outcome in outcomes), outcomes
    assert not list((tmp_path / "storage").glob(".healthz-*")), "a probe was left behind"


def test_monitor_serves_its_cached_report_without_running_checks() -> None:
    """Reading the monitor's report many times runs no check; refresh() asks for a new one."""
    calls: list[int] = []

    def counted() -> CheckResult:
        calls.append(1)
        return CheckResult("healthy", {"n": len(calls)})

    registry = HealthRegistry(timeout=2)
    registry.register("database", counted, critical=True)
    monitor = HealthMonitor(registry, environment="test", interval=60)
    monitor.start()
    try:
        first = monitor.report(include_details=True)
        assert first["status"] == "healthy"
        for _ in range(50):
            monitor.report(include_details=False)
        assert calls == [1]

        monitor.refresh()
        fresh = monitor.report(include_details=True)
        assert fresh["checks"]["database"]["details"] == {"n": 2}
        assert "details" not in without_details(fresh)["checks"]["database"]
    finally:
        monitor.stop()


def test_monitor_report_is_bounded_while_the_first_run_hangs() -> None:
    """Before any report exists, a reader waits at most about the deadline, then: unhealthy."""
    release = threading.Event()
    registry = HealthRegistry(timeout=0.5)
    registry.register("database", _hanging(release, []), critical=True)
    monitor = HealthMonitor(registry, environment="test", interval=60)
    monitor.start()
    try:
        started = time.monotonic()
        report = monitor.report(include_details=False)
        assert time.monotonic() - started < 5
        assert report["status"] == "unhealthy"
    finally:
        release.set()
        monitor.stop()
