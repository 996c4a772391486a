"""The hardened database client: pooling, pre-ping, retries, metrics, health, shutdown.

One :class:`Database` per process wraps a SQLAlchemy engine. On PostgreSQL the pool keeps
``PAULYOPS_DB_POOL_MIN`` connections and grows to ``PAULYOPS_DB_POOL_MAX``; on SQLite (the
embedded default) connections are cheap and the file is opened in WAL mode with a busy
timeout so the web server's threads and the CLI can share it.

SQLite transactions are begun by us, not by pysqlite (``isolation_level=None`` plus an
explicit ``BEGIN``): reads begin ``DEFERRED``, writers begin ``IMMEDIATE``
(:meth:`Database.write_session`). Only an ``IMMEDIATE`` writer waits for the busy timeout;
a deferred transaction that read and then tries to write fails at once with "database is
locked" when another writer committed meanwhile, so request reads never write.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)

# Imported for its flush hooks: every session moves the auth generation on principal changes.
from paulyops.core.db import generation as _generation  # noqa: F401
from paulyops.core.errors import ExternalServiceError
from paulyops.core.files import create_private_file, make_private_dir
from paulyops.core.logging import get_logger, redact_text, security_event

log = get_logger("paulyops.db")

# SQLite waits this long for a lock before "database is locked"; long enough for the
# audit chain's short write transactions under a burst of concurrent requests.
SQLITE_BUSY_TIMEOUT_MS = 15_000
# PostgreSQL: a statement may run this long on the server (migrations included) ...
DEFAULT_STATEMENT_TIMEOUT = 30.0
# ... and a reply may take a little longer before the connection counts as dead.
DEFAULT_SOCKET_TIMEOUT = 35.0
# SQLite connections opened by one process stay open (up to this many idle): SQLAlchemy's
# default keeps 5 and closes every further one after use, so 16 concurrent requests kept
# opening the file and running its four PRAGMAs again (~0.3 ms each time). 40 is the
# server's worker-thread limit; the overflow covers background threads.
SQLITE_POOL_SIZE = 40
SQLITE_POOL_OVERFLOW = 10


@dataclass
class PoolMetrics:
    """Counters a health check and an operator want to see."""

    checkouts: int = 0
    connects: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_error(self, err: BaseException) -> None:
        """Count an error and keep its (redacted) description."""
        with self.lock:
            self.errors += 1
            self.last_error = redact_text(f"{type(err).__name__}: {err}".splitlines()[0])[:300]
            self.last_error_at = datetime.now(UTC)


@dataclass
class HealthState:
    """The last result of the background health check."""

    status: str = "unknown"
    checked_at: datetime | None = None
    response_ms: float | None = None
    error: str | None = None


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe for logs and healthz)."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """A process's connection to the configured database.

    Args:
        url: a SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``).
        pool_min: connections kept open (PostgreSQL).
        pool_max: the most connections at once (PostgreSQL).
        pool_timeout: seconds to wait for a free connection before failing.
        connect_attempts: attempts in :meth:`connect`; 0 retries for ever.
        on_state_change: called with (old, new) when the health state changes.
        statement_timeout: PostgreSQL ``statement_timeout`` in seconds (0: none).
        socket_timeout: seconds any PostgreSQL reply may take before the connection is
            dropped (0: wait for ever); see :mod:`paulyops.core.db.bounded`.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 2,
        pool_max: int = 10,
        pool_timeout: float = 10.0,
        connect_attempts: int = 0,
        on_state_change: Callable[[str, str], None] | None = None,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> None:
        self.url = _driver_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "postgresql":
            from paulyops.core.db.models.marketplace import add_postgresql_options

            add_postgresql_options()
        self.metrics = PoolMetrics()
        self.health = HealthState()
        self.connect_attempts = connect_attempts
        self._on_state_change = on_state_change
        self._stop = threading.Event()
        self._check_lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self.statement_timeout = statement_timeout
        self.socket_timeout = socket_timeout
        self.engine = self._create_engine(pool_min, pool_max, pool_timeout)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.pool_min = pool_min
        self.pool_max = pool_max

    # --- engine ---------------------------------------------------------------------
    def _create_engine(self, pool_min: int, pool_max: int, pool_timeout: float) -> Engine:
        kwargs: dict[str, Any] = {"future": True}
        if self.dialect == "sqlite":
            # No pre-ping: a local file cannot drop a pooled connection the way a server
            # can, and the ping was one more statement on every request.
            database = make_url(self.url).database
            if database and database != ":memory:" and not database.startswith("file:"):
                # Private from the first byte: SQLite would create the file with the
                # umask's mode, and its -wal and -shm files copy the main file's mode.
                make_private_dir(Path(database).parent)
                create_private_file(Path(database))
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            }
            if database and database != ":memory:" and not database.startswith("file:"):
                kwargs.update(
                    poolclass=QueuePool,
                    pool_size=SQLITE_POOL_SIZE,
                    max_overflow=SQLITE_POOL_OVERFLOW,
                    pool_timeout=pool_timeout,
                )
        else:
            from paulyops.core.db.bounded import connect_options  # psycopg only when used

            kwargs.update(
                pool_pre_ping=True,
                poolclass=QueuePool,
                pool_size=pool_min,
                max_overflow=max(0, pool_max - pool_min),
                pool_timeout=pool_timeout,
                pool_recycle=1800,
                connect_args={
                    "connect_timeout": 5,
                    "application_name": "paulyops",
                    **connect_options(self.statement_timeout),
                },
            )
        engine = create_engine(self.url, **kwargs)
        self._install_events(engine)
        if self.dialect == "postgresql":
            self._bound_replies(engine)
        return engine

    def _bound_replies(self, engine: Engine) -> None:
        """Open PostgreSQL connections whose every reply has a deadline (``bounded``)."""
        from paulyops.core.db.bounded import bounded_connect

        read_timeout = self.socket_timeout

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
            return bounded_connect(read_timeout, cargs, cparams)

    def _install_events(self, engine: Engine) -> None:
        metrics = self.metrics
        is_sqlite = self.dialect == "sqlite"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            with metrics.lock:
                metrics.connects += 1
            if is_sqlite:
                # Take the write lock ourselves at BEGIN (see _on_begin) instead of pysqlite's
                # implicit transactions, so SERIALIZABLE-style "BEGIN IMMEDIATE" works.
                dbapi_conn.isolation_level = None
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        if is_sqlite:

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Any) -> None:
                mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
                conn.exec_driver_sql(f"BEGIN {mode}")

        @event.listens_for(engine, "checkout")
        def _on_checkout(*_args: Any) -> None:
            with metrics.lock:
                metrics.checkouts += 1

        @event.listens_for(engine, "handle_error")
        def _on_error(context: Any) -> None:
            metrics.record_error(context.original_exception)

    # --- connecting -----------------------------------------------------------------
    def connect(self, *, attempts: int | None = None, max_wait: float = 30.0) -> None:
        """Open a first connection, retrying with exponential backoff and jitter.

        Raises:
            ExternalServiceError: the database stayed unreachable for every attempt.
        """
        tries = self.connect_attempts if attempts is None else attempts

        def before_sleep(state: RetryCallState) -> None:
            err = state.outcome.exception() if state.outcome else None
            log.warning(
                "db_connect_retry",
                attempt=state.attempt_number,
                wait_s=round(state.next_action.sleep if state.next_action else 0, 2),
                error=redact_text(str(err).splitlines()[0]) if err else None,
                url=mask_url(self.url),
            )

        retrying = Retrying(
            stop=stop_never if tries == 0 else stop_after_attempt(tries),
            wait=wait_exponential_jitter(multiplier=0.2, max=max_wait, jitter=0.5),
            retry=retry_if_exception_type((OperationalError, DBAPIError, OSError)),
            before_sleep=before_sleep,
            sleep=self._interruptible_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self._stop.is_set():
                        raise ExternalServiceError("database connect cancelled: shutting down")
                    self.ping()
        except (OperationalError, DBAPIError, OSError) as err:
            raise ExternalServiceError(
                f"database unreachable at {mask_url(self.url)}: {type(err).__name__}"
            ) from err
        log.info("db_connected", url=mask_url(self.url), dialect=self.dialect)

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def wait_stopped(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return whether :meth:`close` was called meanwhile."""
        return self._stop.wait(seconds)

    def ping(self) -> float:
        """Run ``SELECT 1`` and return the round trip in milliseconds."""
        start = time.perf_counter()
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return (time.perf_counter() - start) * 1000

    # --- sessions -------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def write_session(self) -> Iterator[Session]:
        """Like :meth:`session`, but takes SQLite's write lock at BEGIN.

        Use it for read-then-write transactions (audit chain appends, provisioning) so two
        SQLite writers serialize instead of failing at commit. On PostgreSQL it is the
        same as :meth:`session`; callers lock rows or take advisory locks there.
        """
        if self.dialect != "sqlite":
            with self.session() as session:
                yield session
            return
        conn = self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        try:
            # Through the sessionmaker, so this session carries its configured info (the
            # key ring, core/security/fields.py) like every other.
            with self.sessions(bind=conn) as session, session.begin():
                yield session
        finally:
            conn.close()

    # --- health ---------------------------------------------------------------------
    def check(self) -> HealthState:
        """Ping the database once, record the result and report state changes."""
        with self._check_lock:  # the monitor and healthz may check at once: report once
            return self._check()

    def _check(self) -> HealthState:
        old = self.health.status
        try:
            elapsed = self.ping()
        except Exception as err:  # any driver failure means unhealthy; recorded, not raised
            self.metrics.record_error(err)
            self.health = HealthState(
                status="unhealthy",
                checked_at=datetime.now(UTC),
                error=self.metrics.last_error,
            )
        else:
            self.health = HealthState(
                status="healthy", checked_at=datetime.now(UTC), response_ms=round(elapsed, 2)
            )
        if old != self.health.status:
            self._state_changed(old, self.health.status)
        return self.health

    def _state_changed(self, old: str, new: str) -> None:
        if new == "unhealthy":
            log.error("db_state_changed", old=old, new=new, error=self.health.error)
            security_event("dependency.down", severity="critical", dependency="database")
        else:
            log.info("db_state_changed", old=old, new=new)
            if old == "unhealthy":
                security_event("dependency.recovered", severity="info", dependency="database")
        if self._on_state_change is not None:
            self._on_state_change(old, new)

    def start_monitor(self, interval: float) -> None:
        """Check health every ``interval`` seconds in a daemon thread until :meth:`close`."""
        if self._monitor is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                self.check()

        self._monitor = threading.Thread(target=loop, name="db-health", daemon=True)
        self._monitor.start()

    @property
    def pool_ceiling(self) -> int | None:
        """The most connections the pool opens at once (size plus overflow), if pooled.

        On SQLite that is the file's own pool, whatever ``PAULYOPS_DB_POOL_MAX`` says:
        metrics compare it with the connections in use to tell an exhausted pool.
        """
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):
            return None
        if self.dialect == "sqlite":
            return SQLITE_POOL_SIZE + SQLITE_POOL_OVERFLOW
        return self.pool_min + max(0, self.pool_max - self.pool_min)

    def pool_details(self) -> dict[str, Any]:
        """Return pool numbers for healthz: size, in use, overflow, errors, last error."""
        pool = self.engine.pool
        details: dict[str, Any] = {"dialect": self.dialect}
        if isinstance(pool, QueuePool):
            details.update(
                size=pool.size(),
                min=self.pool_min,
                max=self.pool_max,
                in_use=pool.checkedout(),
                idle=pool.checkedin(),
                overflow=max(0, pool.overflow()),
            )
        with self.metrics.lock:
            details.update(
                connects=self.metrics.connects,
                checkouts=self.metrics.checkouts,
                errors=self.metrics.errors,
                last_error=self.metrics.last_error,
            )
        return details

    def stop(self) -> None:
        """Ask background work (monitor, connect retries) to stop, without waiting."""
        self._stop.set()

    def close(self) -> None:
        """Stop the monitor and any pending retries, and close every pooled connection."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
            self._monitor = None
        self.engine.dispose()
        log.info("db_closed")


def _driver_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain PostgreSQL URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


__all__ = ["Database", "HealthState", "PoolMetrics", "mask_url"]
