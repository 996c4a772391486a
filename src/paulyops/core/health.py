"""Health checks: a small registry of named checks, and the cached report healthz serves.

Each check returns a :class:`CheckResult`; :meth:`HealthRegistry.run` runs them
concurrently, each with an enforced deadline, measures each one's ``responseTime`` and
folds them into one status:

* ``unhealthy`` when a *critical* check (the database) fails: HTTP 503;
* ``degraded`` when a non-critical check fails (Redis, storage, Stripe): HTTP 200;
* ``healthy`` otherwise. A dependency that is not configured does not count.

A check that overruns its deadline counts as unhealthy at once; its thread is left to
finish on its own (a daemon, never joined), and the next run does not start a second
copy while the first still hangs. So a report never takes much longer than the deadline.

Requests never run checks: :class:`HealthMonitor` runs them in one background thread
on an interval (and on demand) and keeps the last report, which ``/api/healthz`` and the
console read without touching the database pool.

Later features register their own checks (agent sandbox isolation, workers) with
:meth:`HealthRegistry.register`.
"""

from __future__ import annotations

import copy
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil

from paulyops import __version__
from paulyops.core.files import make_private_dir
from paulyops.core.logging import get_logger, redact_text

log = get_logger("paulyops.health")

Status = Literal["healthy", "degraded", "unhealthy", "not_configured"]
CHECK_TIMEOUT_S = 5.0
PROCESS_STARTED = time.time()


@dataclass
class CheckResult:
    """The outcome of one check."""

    status: Status
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Registered:
    func: Callable[[], CheckResult]
    critical: bool
    # The run of this check still in flight past its deadline, if any.
    running: _Run | None = None


class _Run:
    """One check running in its own daemon thread."""

    def __init__(self, name: str, func: Callable[[], CheckResult]) -> None:
        self.done = threading.Event()
        self.started = time.perf_counter()
        self.outcome: tuple[CheckResult, float] | None = None
        self.thread = threading.Thread(
            target=self._run, args=(func,), name=f"health-{name}", daemon=True
        )
        self.thread.start()

    def _run(self, func: Callable[[], CheckResult]) -> None:
        try:
            self.outcome = _timed(func)
        finally:
            self.done.set()


class HealthRegistry:
    """Named health checks, run together into one report.

    Args:
        timeout: seconds each check may take before it counts as unhealthy.
    """

    def __init__(self, *, timeout: float = CHECK_TIMEOUT_S) -> None:
        self._checks: dict[str, _Registered] = {}
        self.timeout = timeout
        self._lock = threading.Lock()

    def register(self, name: str, func: Callable[[], CheckResult], *, critical: bool) -> None:
        """Add a check; ``critical`` failures make the whole instance unhealthy."""
        self._checks[name] = _Registered(func, critical)

    @property
    def names(self) -> list[str]:
        """The registered check names, in registration order."""
        return list(self._checks)

    def run(self, *, environment: str, include_details: bool) -> dict[str, Any]:
        """Run every check (each within the deadline) and return the brief's healthz document.

        Args:
            environment: the instance's ``PAULYOPS_ENV``.
            include_details: add each check's ``details`` (pool numbers, errors...).
        """
        runs = self._start_runs()
        deadline = time.perf_counter() + self.timeout
        results: dict[str, tuple[CheckResult, float]] = {}
        for name, run in runs.items():
            if run.done.wait(max(0.0, deadline - time.perf_counter())) and run.outcome:
                results[name] = run.outcome
                with self._lock:
                    if self._checks[name].running is run:
                        self._checks[name].running = None
                continue
            waited = (time.perf_counter() - run.started) * 1000
            log.warning("health_check_timed_out", check=name, timeout_s=self.timeout)
            results[name] = (
                CheckResult(
                    "unhealthy",
                    {"error": f"no answer within {self.timeout:g} s (still waiting)"},
                ),
                waited,
            )
        return self.assemble(results, environment=environment, include_details=include_details)

    def _start_runs(self) -> dict[str, _Run]:
        runs: dict[str, _Run] = {}
        with self._lock:
            for name, reg in self._checks.items():
                previous = reg.running
                if previous is not None and not previous.done.is_set():
                    runs[name] = previous  # still hanging: report it, do not pile up threads
                    continue
                reg.running = runs[name] = _Run(name, reg.func)
        return runs

    def assemble(
        self,
        results: dict[str, tuple[CheckResult, float]],
        *,
        environment: str,
        include_details: bool,
    ) -> dict[str, Any]:
        """Fold check results (result, milliseconds) into the healthz document."""
        overall: Status = "healthy"
        checks: dict[str, Any] = {}
        for name, (result, elapsed) in results.items():
            if result.status == "unhealthy":
                overall = (
                    "unhealthy" if self._checks[name].critical else _worse(overall, "degraded")
                )
            elif result.status == "degraded":
                overall = _worse(overall, "degraded")
            entry: dict[str, Any] = {"status": result.status, "responseTime": round(elapsed)}
            if include_details:
                entry["details"] = result.details
            checks[name] = entry
        return {
            "status": overall,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "version": __version__,
            "environment": environment,
            "checks": checks,
        }


def without_details(report: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a report with every check's ``details`` removed."""
    out = dict(report)
    out["checks"] = {
        name: {k: v for k, v in check.items() if k != "details"}
        for name, check in report.get("checks", {}).items()
    }
    return out


class HealthMonitor:
    """Run the checks in one background thread and keep the latest report.

    Readers (healthz, the console) get the cached report and never run a check
    themselves. :meth:`refresh` asks for a new report soon (state changes such as the
    database becoming ready); :meth:`report` waits, up to a bound, for a report newer
    than the last such request, so a caller never sees a report older than what it knows.

    Args:
        registry: the checks.
        environment: the instance's ``PAULYOPS_ENV``, put into every report.
        interval: seconds between runs.
    """

    def __init__(self, registry: HealthRegistry, *, environment: str, interval: float) -> None:
        self.registry = registry
        self.environment = environment
        self.interval = interval
        self._report: dict[str, Any] | None = None
        self._generation = 0  # bumped by refresh()
        self._report_generation = -1  # the generation the cached report was started in
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (first run at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="health-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (a check in flight is not waited for)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.registry.timeout + 1)
            self._thread = None

    def refresh(self) -> None:
        """Ask for a new report now; later :meth:`report` calls wait for it (bounded)."""
        with self._cond:
            self._generation += 1
        self._wake.set()

    def run_now(self) -> dict[str, Any]:
        """Run the checks in this thread and cache the result (``paulyops health``)."""
        with self._cond:
            generation = self._generation
        report = self.registry.run(environment=self.environment, include_details=True)
        self._store(report, generation)
        return report

    def report(self, *, include_details: bool, wait: float | None = None) -> dict[str, Any]:
        """Return the latest report, waiting up to ``wait`` s for a fresh one if it is stale.

        ``wait`` defaults to the check deadline plus a second. Without any report yet (the
        first run still going after that), the report says so: unhealthy.
        """
        if self._thread is None:
            # Not started (a CLI command, a test's instance): answer on demand.
            fresh = self.run_now()
            return fresh if include_details else without_details(fresh)
        bound = self.registry.timeout + 1 if wait is None else wait
        deadline = time.monotonic() + bound
        with self._cond:
            while self._report_generation < self._generation or self._report is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            cached = self._report
        if cached is None:
            report = self.registry.assemble({}, environment=self.environment, include_details=False)
            report["status"] = "unhealthy"
        else:
            report = copy.deepcopy(cached)
        return report if include_details else without_details(report)

    def _store(self, report: dict[str, Any], generation: int) -> None:
        with self._cond:
            if generation >= self._report_generation:
                self._report = report
                self._report_generation = generation
            self._cond.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_now()
            except Exception:  # a broken report must not end the monitor
                log.exception("health_report_failed")
            self._wake.wait(self.interval)


def _worse(current: Status, new: Status) -> Status:
    order = {"healthy": 0, "not_configured": 0, "degraded": 1, "unhealthy": 2}
    return new if order[new] > order[current] else current


def _timed(func: Callable[[], CheckResult]) -> tuple[CheckResult, float]:
    start = time.perf_counter()
    try:
        result = func()
    except Exception as err:  # a broken check reports itself unhealthy instead of crashing healthz
        log.warning("health_check_failed", error=type(err).__name__)
        result = CheckResult("unhealthy", {"error": redact_text(f"{type(err).__name__}: {err}")})
    return result, (time.perf_counter() - start) * 1000


# --- built-in checks -------------------------------------------------------------------


def system_check() -> CheckResult:
    """Report the process's memory and uptime (always healthy; numbers for operators)."""
    proc = psutil.Process(os.getpid())
    mem = proc.memory_info()
    vm = psutil.virtual_memory()
    return CheckResult(
        "healthy",
        {
            "uptimeSeconds": round(time.time() - PROCESS_STARTED),
            "rssBytes": mem.rss,
            "systemMemoryPercent": vm.percent,
            "pid": os.getpid(),
        },
    )


def storage_check(data_dir: Path) -> Callable[[], CheckResult]:
    """Return a check that the local storage directory is writable and has free space."""

    def check() -> CheckResult:
        storage = data_dir / "storage"
        make_private_dir(storage)
        # Unique per run: concurrent checks (another process, `paulyops health`) must not
        # delete each other's probe.
        probe = storage / f".healthz-{os.getpid()}-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
        usage = psutil.disk_usage(str(storage))
        status: Status = "degraded" if usage.free < 512 * 1024 * 1024 else "healthy"
        return CheckResult(status, {"provider": "local", "freeBytes": usage.free, "writable": True})

    return check


def stripe_check(api_key: str | None, api_base: str | None) -> Callable[[], CheckResult]:
    """Return a check that Stripe is reachable and accepts the key (official SDK)."""

    def check() -> CheckResult:
        if not api_key:
            return CheckResult("not_configured", {"reason": "STRIPE_SECRET_KEY is not set"})
        import stripe

        base = {"api": api_base} if api_base else None
        client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=0)  # type: ignore[arg-type]  # BaseAddresses is a TypedDict
        try:
            client.v1.balance.retrieve()
        except stripe.AuthenticationError:
            return CheckResult("unhealthy", {"error": "Stripe rejected the API key"})
        except stripe.StripeError as err:
            return CheckResult("unhealthy", {"error": f"Stripe unreachable: {type(err).__name__}"})
        mode = "test" if api_key.startswith(("sk_test_", "rk_test_")) else "live"
        return CheckResult("healthy", {"mode": mode})

    return check


__all__ = [
    "CheckResult",
    "HealthMonitor",
    "HealthRegistry",
    "storage_check",
    "stripe_check",
    "system_check",
    "without_details",
]
