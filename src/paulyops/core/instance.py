"""The running instance: settings plus the live database, key-value store and health checks.

Both front ends build one :class:`Instance` and pass it down: the web app in its
lifespan, the CLI per command. :meth:`Instance.start` connects to the database in the
background (retrying with backoff) and migrates it once reachable, so the web server
answers ``/api/livez`` at once even while the database is still down.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from paulyops.core.db import migrate
from paulyops.core.db.activity import ActivityRecorder
from paulyops.core.db.engine import Database, mask_url
from paulyops.core.db.failures import describe_db_error
from paulyops.core.db.models import SecurityConfig
from paulyops.core.db.queue import queue_stats
from paulyops.core.errors import ExternalServiceError, ServiceUnavailableError
from paulyops.core.files import make_private_dir
from paulyops.core.health import (
    CheckResult,
    HealthMonitor,
    HealthRegistry,
    Status,
    storage_check,
    stripe_check,
    system_check,
    without_details,
)
from paulyops.core.kv import KeyValueStore, KVUnavailableError, RedisKV, create_kv
from paulyops.core.logging import add_alert_hook, get_logger, redact_text, webhook_alert_hook
from paulyops.core.processes import ProcessMonitor
from paulyops.core.security.crypto import KeyRing, openssl_fips_enabled
from paulyops.core.security.csrf import CsrfTokens
from paulyops.core.security.fields import bind_keyring
from paulyops.core.security.keyfile import active_key_since
from paulyops.core.security.keywatch import KeyRingWatcher
from paulyops.core.security.passwords import PasswordHashing
from paulyops.core.settings import Environment, Settings

if TYPE_CHECKING:
    from paulyops.core.security.ratelimit import RateLimiter

log = get_logger("paulyops.instance")

# Sign-in is throttled per address ("signin") and per account: guessing one account's
# password from many addresses still hits this limit.
EXTRA_LIMITS = {"signin_account": "10/15minutes"}
# Encryption levels whose organizations expect the key rotated every 90 days.
STRICT_LEVELS = ("enhanced", "fips")
ROTATION_REMINDER_DAYS = 90


class Instance:
    """Everything a request or a command needs, created once per process.

    Args:
        settings: the instance settings.
        migrate_on_start: upgrade the schema when it is behind (``serve`` does).
    """

    def __init__(self, settings: Settings, *, migrate_on_start: bool = True) -> None:
        self.settings = settings
        self.migrate_on_start = migrate_on_start
        self.db = Database(
            settings.effective_database_url,
            pool_min=settings.db_pool_min,
            pool_max=max(settings.db_pool_max, settings.db_pool_min),
            pool_timeout=settings.db_pool_timeout,
            connect_attempts=settings.db_connect_attempts,
            statement_timeout=settings.db_statement_timeout,
            socket_timeout=settings.db_socket_timeout,
        )
        # Sessions' and tokens' activity stamps, written off the request path.
        self.activity = ActivityRecorder(self.db)
        self.kv: KeyValueStore = create_kv(
            settings.redis_url,
            health_interval=settings.health_interval,
            socket_timeout=settings.redis_socket_timeout,
        )
        # This instance's ring, and no one else's: its database's sessions carry it to
        # the encrypted fields, and the watcher reloads it in place after a rotation.
        self.keyring = KeyRing.from_settings(settings)
        bind_keyring(self.db, self.keyring)
        fips = settings.encryption_level == "fips"
        self.hashing = (
            PasswordHashing.for_tests(fips=fips)
            if settings.env is Environment.TEST
            else PasswordHashing(fips=fips)
        )
        # Built on first use (a server builds it at start): most CLI commands never rate
        # limit anything, and the limits library costs a tenth of a second to import.
        self._limiter: RateLimiter | None = None
        self._limiter_lock = threading.Lock()
        self.csrf = CsrfTokens(self.kv, secret=settings.session_secret_keys or None)
        self.health = HealthRegistry(timeout=settings.health_check_timeout)
        # One background thread runs the checks; requests only read its cached report.
        self.health_monitor = HealthMonitor(
            self.health, environment=settings.env.value, interval=settings.health_interval
        )
        self.ready = threading.Event()
        self.on_ready: list[Callable[[Instance], None]] = []
        # Run by close() while the database is still open (e.g. a last audit checkpoint).
        self.on_close: list[Callable[[Instance], None]] = []
        self.startup_error: str | None = None
        self._starter: threading.Thread | None = None
        self._process_monitor: ProcessMonitor | None = None
        self._previous_sighup: Any = None
        self._remove_alert_hook = (
            add_alert_hook(webhook_alert_hook(settings.alert_webhook_url))
            if settings.alert_webhook_url
            else None
        )
        self._register_checks()

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter on this instance's key-value store (one per instance)."""
        limiter = self._limiter
        if limiter is None:
            with self._limiter_lock:
                if self._limiter is None:
                    from paulyops.core.security.ratelimit import (
                        DEFAULT_LIMITS,
                        STRICT_LIMITS,
                        RateLimiter,
                    )

                    self._limiter = RateLimiter(
                        self.kv,
                        {**DEFAULT_LIMITS, **EXTRA_LIMITS, **self.settings.rate_limits},
                        strict=STRICT_LIMITS | {"signin_account"},
                        allowlist=self.settings.ratelimit_allowlist,
                    )
                limiter = self._limiter
        return limiter

    # --- lifecycle ------------------------------------------------------------------
    def start(self, *, background: bool = True) -> None:
        """Connect to the database (retrying), migrate if behind, and start monitors.

        Args:
            background: return at once and finish in a thread (the web server), or block
                until ready (CLI commands).

        Raises:
            ExternalServiceError: blocking mode and the database stayed unreachable.
        """
        make_private_dir(self.settings.data_dir)
        if background:
            _ = self.limiter  # a server builds it now, not inside its first request
            self._watch_key_ring()
            self.health_monitor.start()
            self._starter = threading.Thread(target=self._start, name="db-start", daemon=True)
            self._starter.start()
        else:
            self._start(raise_errors=True)

    def _start(self, *, raise_errors: bool = False) -> None:
        while True:
            try:
                self.db.connect()
                if self.migrate_on_start:
                    migrate.upgrade_if_behind(self.db)
                break
            except ExternalServiceError as err:
                self.startup_error = err.message
                log.error("instance_start_failed", error=err.message)
                if raise_errors:
                    raise
                return
            except SQLAlchemyError as err:
                # The database went away between connecting and migrating: start over
                # instead of letting the starter thread die with the instance never ready.
                self.startup_error = redact_text(f"{type(err).__name__}: {err}".splitlines()[0])
                log.warning("instance_start_retry", error=self.startup_error)
                if raise_errors:
                    raise ExternalServiceError(
                        f"database failed while starting: {describe_db_error(err)}"
                    ) from err
                if self.db.wait_stopped(1.0):
                    return
        self.startup_error = None
        self.db.check()
        self.db.start_monitor(self.settings.health_interval)
        if isinstance(self.kv, RedisKV):
            try:
                self.kv.ping()
            except KVUnavailableError:
                log.warning("redis_unreachable_at_start")
            self.kv.start_monitor(self.settings.health_interval)
        if self._process_monitor is not None:
            self._process_monitor.start()
        for callback in self.on_ready:
            try:
                callback(self)
            except Exception:  # a start-up hook must not take the running server down
                log.exception("on_ready_hook_failed")
        self.ready.set()
        self.health_monitor.refresh()  # the cached "connecting" report is stale now
        log.info("instance_ready", database=mask_url(self.db.url), kv=self.kv.backend)

    def require_ready(self) -> None:
        """Raise :class:`ServiceUnavailableError` while the database is not ready."""
        if not self.ready.is_set():
            raise ServiceUnavailableError(
                "PaulyOps is starting: waiting for the database"
                + (f" ({self.startup_error})" if self.startup_error else "")
            )

    def close(self) -> None:
        """Stop background work and close every connection (graceful shutdown)."""
        for callback in reversed(self.on_close):
            try:
                callback(self)
            except Exception:  # one failing hook must not keep the others from running
                log.exception("on_close_hook_failed")
        self._stop_watching_key_ring()
        self.db.stop()
        self.health_monitor.stop()
        if self._starter is not None:
            # Let a start in progress finish its transaction before the pool goes away.
            self._starter.join(timeout=10)
        self.activity.close()
        self.db.close()
        self.kv.close()
        if self._remove_alert_hook is not None:
            self._remove_alert_hook()
        log.info("instance_closed")

    # --- key ring reload and process heartbeat (servers only) ---------------------------
    def _watch_key_ring(self) -> None:
        """Follow ``.env.local`` for a rotated key ring and report it to the database.

        Only long-running processes (a background start: the server) do this; a CLI
        command lives for seconds and keeps the ring it started with. SIGHUP asks for an
        immediate reload when the start runs in the main thread (``paulyops serve``).
        """
        watcher = KeyRingWatcher(self.keyring, self.settings.root)
        self._process_monitor = ProcessMonitor(self.db, watcher)
        if threading.current_thread() is threading.main_thread():
            self._previous_sighup = signal.signal(
                signal.SIGHUP, lambda _sig, _frame: watcher.request_reload()
            )

    def _stop_watching_key_ring(self) -> None:
        if self._process_monitor is None:
            return
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        self._process_monitor.stop()
        self._process_monitor = None

    # --- health ---------------------------------------------------------------------
    def _register_checks(self) -> None:
        self.health.register("database", self._database_check, critical=True)
        self.health.register("redis", self._redis_check, critical=False)
        self.health.register("storage", storage_check(self.settings.data_dir), critical=False)
        key = self.settings.stripe_secret_key
        self.health.register(
            "stripe",
            stripe_check(key.get_secret_value() if key else None, self.settings.stripe_api_base),
            critical=False,
        )
        self.health.register("system", system_check, critical=False)
        self.health.register("encryption", self._encryption_check, critical=False)
        self.health.register("queue", self._queue_check, critical=False)

    def _encryption_check(self) -> CheckResult:
        details: dict[str, Any] = {
            "level": self.settings.encryption_level,
            "activeKeyId": self.keyring.active_key_id,
            "keyIds": list(self.keyring.key_ids),
            # Whether OpenSSL's FIPS provider is active; nothing more is claimed.
            "opensslFipsMode": openssl_fips_enabled(),
        }
        since = active_key_since(self.settings)
        age = (datetime.now(UTC) - since).days if since else None
        details["activeKeyAgeDays"] = age
        status: Status = "healthy"
        if self._wants_rotation_reminder() and age is not None and age > ROTATION_REMINDER_DAYS:
            # The enhanced and fips levels ask for a new key every 90 days: remind, loudly.
            status = "degraded"
            details["reminder"] = (
                f"the encryption key is {age} days old; run `paulyops keys rotate` "
                f"(the {self.settings.encryption_level} level asks for every "
                f"{ROTATION_REMINDER_DAYS} days)"
            )
        return CheckResult(status, details)

    def _wants_rotation_reminder(self) -> bool:
        if self.settings.encryption_level in STRICT_LEVELS:
            return True
        if not self.ready.is_set():
            return False
        with self.db.session() as session:
            return bool(
                session.scalar(
                    select(func.count())
                    .select_from(SecurityConfig)
                    .where(SecurityConfig.encryption_level.in_(STRICT_LEVELS))
                )
            )

    def _queue_check(self) -> CheckResult:
        """The agent job queue: depth, the oldest due job's wait, dead jobs (no names)."""
        if not self.ready.is_set():
            return CheckResult("not_configured", {"reason": "waiting for the database"})
        stats = queue_stats(self.db)
        details: dict[str, Any] = {
            "runner": "celery" if self.settings.celery_broker_url else "embedded",
            "depth": stats.depth,
            "oldestQueuedAgeSeconds": (
                round(stats.oldest_age_s, 1) if stats.oldest_age_s is not None else None
            ),
            "running": stats.running,
            "dead": stats.dead,
            "quarantinedInstallations": stats.quarantined,
        }
        status: Status = "healthy"
        too_deep = stats.depth > self.settings.job_queue_degraded_depth
        too_old = (stats.oldest_age_s or 0.0) > self.settings.job_queue_degraded_age_s
        if too_deep or too_old:
            status = "degraded"
            details["reason"] = (
                f"{stats.depth} jobs wait (more than {self.settings.job_queue_degraded_depth})"
                if too_deep
                else f"the oldest due job has waited {int(stats.oldest_age_s or 0)} s "
                f"(more than {int(self.settings.job_queue_degraded_age_s)} s): "
                "are the workers running? (`paulyops worker`)"
            )
        return CheckResult(status, details)

    def _database_check(self) -> CheckResult:
        details: dict[str, Any] = self.db.pool_details()
        if not self.ready.is_set():
            details["connection"] = "connecting"
            if self.startup_error:
                details["error"] = self.startup_error
            return CheckResult("unhealthy", details)
        state = self.db.check()
        if state.status != "healthy":
            details["connection"] = "failed"
            details["error"] = state.error
            return CheckResult("unhealthy", details)
        details["connectionPool"] = "active"
        up_to_date = migrate.is_up_to_date(self.db)
        details["migrations"] = "up_to_date" if up_to_date else "behind"
        return CheckResult("healthy" if up_to_date else "degraded", details)

    def _redis_check(self) -> CheckResult:
        if not isinstance(self.kv, RedisKV):
            return CheckResult(
                "not_configured",
                {"reason": "REDIS_URL is not set; using the in-process store"},
            )
        try:
            self.kv.ping()
            memory = self.kv.info_memory()
        except KVUnavailableError:
            return CheckResult("unhealthy", {"connection": "failed", **self.kv.pool_details()})
        return CheckResult(
            "healthy", {"connection": "active", "memory": memory, **self.kv.pool_details()}
        )

    def health_report(self, *, include_details: bool) -> dict[str, Any]:
        """Run every check now, in this thread, and return the healthz document (CLI)."""
        report = self.health_monitor.run_now()
        return report if include_details else without_details(report)

    def cached_health_report(self, *, include_details: bool) -> dict[str, Any]:
        """Return the background monitor's latest report (requests: no check runs here)."""
        return self.health_monitor.report(include_details=include_details)


__all__ = ["Instance"]
