"""Health checks: a small registry of named checks and the report ``/api/healthz`` serves.

Each check returns a :class:`CheckResult`; the registry runs them concurrently with a
timeout, measures each one's ``responseTime`` and folds them into one status:

* ``unhealthy`` when a *critical* check (the database) fails: HTTP 503;
* ``degraded`` when a non-critical check fails (Redis, storage, Stripe): HTTP 200;
* ``healthy`` otherwise. A dependency that is not configured does not count.

Later features register their own checks (agent sandbox isolation, workers) with
:meth:`HealthRegistry.register`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
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


class HealthRegistry:
    """Named health checks, run together into one report."""

    def __init__(self) -> None:
        self._checks: dict[str, _Registered] = {}

    def register(self, name: str, func: Callable[[], CheckResult], *, critical: bool) -> None:
        """Add a check; ``critical`` failures make the whole instance unhealthy."""
        self._checks[name] = _Registered(func, critical)

    @property
    def names(self) -> list[str]:
        """The registered check names, in registration order."""
        return list(self._checks)

    def run(self, *, environment: str, include_details: bool) -> dict[str, Any]:
        """Run every check and return the brief's healthz document.

        Args:
            environment: the instance's ``PAULYOPS_ENV``.
            include_details: add each check's ``details`` (pool numbers, errors...).
        """
        results: dict[str, tuple[CheckResult, float]] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(self._checks))) as pool:
            futures = {name: pool.submit(_timed, reg.func) for name, reg in self._checks.items()}
            for name, future in futures.items():
                try:
                    results[name] = future.result(timeout=CHECK_TIMEOUT_S)
                except FutureTimeout:
                    results[name] = (
                        CheckResult("unhealthy", {"error": f"timed out after {CHECK_TIMEOUT_S}s"}),
                        CHECK_TIMEOUT_S * 1000,
                    )
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
        probe = storage / f".healthz-{os.getpid()}"
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
    "HealthRegistry",
    "storage_check",
    "stripe_check",
    "system_check",
]
