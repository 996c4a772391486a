"""Shared state behind one small interface: Redis when configured, in-process otherwise.

Everything that needs state shared between requests and processes (rate limits, CSRF
tokens, cached sessions, locks) goes through :class:`KeyValueStore`. The in-process
store is exact within one process, which is why ``paulyops serve --workers N`` refuses
N > 1 without Redis.

The Redis client is hardened as the brief asks: a connection pool, retries with
exponential backoff on connection errors, a health-check interval on idle connections,
logged state changes, metrics, and a graceful close.

Every command is bounded, because requests wait on it: a short socket timeout (a Redis
that accepts connections but never answers costs one timeout, not a retry series: only
refused or reset connections are retried, once), and after a failure the store *fails
fast* for ``down_for`` seconds (every call raises :class:`KVUnavailableError` at once)
before one call probes Redis again. So a hung Redis costs a request at most about one
socket timeout, and callers fall back (CSRF to the session row) or fail closed (sign-in).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from paulyops.core import metrics as prometheus
from paulyops.core.errors import ServiceUnavailableError
from paulyops.core.logging import get_logger, redact_text, security_event

if TYPE_CHECKING:
    import redis

# redis-py is imported only by RedisKV: without REDIS_URL (the embedded default) nothing
# loads it, which spares every CLI start about a tenth of a second.

log = get_logger("paulyops.kv")

# Requests wait on Redis (rate limits, CSRF): a hung Redis must cost them well under a
# second. A healthy Redis answers in about a millisecond, even across a data centre.
DEFAULT_SOCKET_TIMEOUT = 0.5
# After a failed call, calls fail at once for this long before one probes Redis again.
DEFAULT_DOWN_FOR = 1.0


class KVUnavailableError(ServiceUnavailableError):
    """The key-value store (Redis) cannot be reached right now."""


@runtime_checkable
class KeyValueStore(Protocol):
    """The operations PaulyOps needs from shared state. Values are strings."""

    backend: str

    def get(self, key: str) -> str | None:
        """Return the value of ``key`` or ``None``."""

    def set(
        self, key: str, value: str, *, ttl: float | None = None, only_new: bool = False
    ) -> bool:
        """Store ``value``; with ``only_new`` only when absent. Return whether it was stored."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def incr(self, key: str, *, ttl: float | None = None) -> int:
        """Add one to an integer counter (created at 0) and return the new value."""

    def ping(self) -> float:
        """Return the round trip in milliseconds; raise :class:`KVUnavailableError` if down."""

    def lock(
        self, name: str, *, ttl: float = 30.0, wait: float = 10.0
    ) -> contextlib.AbstractContextManager[None]:
        """Hold a named lock across processes (Redis) or threads (memory)."""

    def close(self) -> None:
        """Release connections."""


@dataclass
class _Entry:
    value: str
    expires_at: float | None


class MemoryKV:
    """The embedded, in-process key-value store (one process only)."""

    backend = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, _Entry] = {}
        self._mutex = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._clock = clock

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= self._clock():
            del self._data[key]
            return None
        return entry

    def get(self, key: str) -> str | None:
        """Return the value of ``key`` or ``None``."""
        with self._mutex:
            entry = self._live(key)
            return entry.value if entry else None

    def set(
        self, key: str, value: str, *, ttl: float | None = None, only_new: bool = False
    ) -> bool:
        """Store ``value``; with ``only_new`` only when absent."""
        with self._mutex:
            if only_new and self._live(key) is not None:
                return False
            expires = self._clock() + ttl if ttl else None
            self._data[key] = _Entry(value, expires)
            return True

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        with self._mutex:
            self._data.pop(key, None)

    def incr(self, key: str, *, ttl: float | None = None) -> int:
        """Add one to a counter; ``ttl`` applies when the counter is created."""
        with self._mutex:
            entry = self._live(key)
            if entry is None:
                entry = _Entry("0", self._clock() + ttl if ttl else None)
                self._data[key] = entry
            entry.value = str(int(entry.value) + 1)
            return int(entry.value)

    def ping(self) -> float:
        """Always reachable."""
        return 0.0

    @contextlib.contextmanager
    def lock(self, name: str, *, ttl: float = 30.0, wait: float = 10.0) -> Iterator[None]:
        """Hold a per-process named lock."""
        with self._mutex:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=wait):
            raise TimeoutError(f"lock {name!r} not acquired within {wait}s")
        try:
            yield
        finally:
            lock.release()

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class RedisMetrics:
    """Counters for healthz and operators."""

    commands: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    state: str = "unknown"
    state_changed_at: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class RedisKV:
    """The key-value store on Redis, with a hardened, pooled client.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        prefix: prepended to every key, so instances can share a Redis.
        max_connections: pool size.
        retries: retries of a command on refused or reset connections, with backoff
            (a timeout is not retried: the request would wait twice as long).
        health_check_interval: seconds after which an idle connection is pinged first.
        socket_timeout: seconds before connecting or a command times out.
        down_for: seconds after a failure during which calls fail at once.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "paulyops:",
        max_connections: int = 50,
        retries: int = 1,
        health_check_interval: float = 30.0,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        down_for: float = DEFAULT_DOWN_FOR,
    ) -> None:
        import redis
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError
        from redis.retry import Retry

        self.redis_errors: type[RedisError] = RedisError  # redis-py errors, for callers
        self.prefix = prefix
        self.metrics = RedisMetrics()
        self.socket_timeout = socket_timeout
        self.down_for = down_for
        self._down_until = -math.inf
        self.pool: redis.ConnectionPool = redis.ConnectionPool.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=int(health_check_interval),
            retry=Retry(
                ExponentialWithJitterBackoff(base=0.05, cap=0.2),
                retries,
                supported_errors=(RedisConnectionError,),
            ),
            retry_on_timeout=False,
            decode_responses=True,
        )
        self.client: redis.Redis = redis.Redis(connection_pool=self.pool)
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    def _k(self, key: str) -> str:
        return self.prefix + key

    @property
    def is_failing_fast(self) -> bool:
        """Whether calls fail at once because Redis failed moments ago."""
        return time.monotonic() < self._down_until

    def _call(self, func: Callable[[], Any], *, probe: bool = False) -> Any:
        if not probe and self.is_failing_fast:
            with self.metrics.lock:
                self.metrics.errors += 1  # refused without asking Redis: still a failure
            prometheus.count_redis_error()
            raise KVUnavailableError("shared state (Redis) is unreachable; try again shortly")
        start = time.perf_counter()
        try:
            result = func()
        except self.redis_errors as err:
            self._down_until = time.monotonic() + self.down_for
            self._record_error(err)
            prometheus.count_redis_error()
            raise KVUnavailableError(
                "shared state (Redis) is unreachable; try again shortly"
            ) from err
        prometheus.observe_redis(time.perf_counter() - start)
        self._down_until = -math.inf
        with self.metrics.lock:
            self.metrics.commands += 1
        if self.metrics.state != "healthy":
            self._set_state("healthy")
        return result

    def _record_error(self, err: BaseException) -> None:
        with self.metrics.lock:
            self.metrics.errors += 1
            self.metrics.last_error = redact_text(f"{type(err).__name__}: {err}")[:300]
            self.metrics.last_error_at = datetime.now(UTC)
        self._set_state("unhealthy")

    def _set_state(self, new: str) -> None:
        with self.metrics.lock:
            old = self.metrics.state
            if old == new:
                return
            self.metrics.state = new
            self.metrics.state_changed_at = datetime.now(UTC)
        if new == "unhealthy":
            log.error("redis_state_changed", old=old, new=new, error=self.metrics.last_error)
            security_event("dependency.down", severity="critical", dependency="redis")
        else:
            log.info("redis_state_changed", old=old, new=new)
            if old == "unhealthy":
                security_event("dependency.recovered", severity="info", dependency="redis")

    def get(self, key: str) -> str | None:
        """Return the value of ``key`` or ``None``."""
        value = self._call(lambda: self.client.get(self._k(key)))
        return None if value is None else str(value)

    def set(
        self, key: str, value: str, *, ttl: float | None = None, only_new: bool = False
    ) -> bool:
        """Store ``value``; with ``only_new`` only when absent."""
        px = int(ttl * 1000) if ttl else None
        result = self._call(lambda: self.client.set(self._k(key), value, px=px, nx=only_new))
        return bool(result)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._call(lambda: self.client.delete(self._k(key)))

    def incr(self, key: str, *, ttl: float | None = None) -> int:
        """Add one to a counter; ``ttl`` applies when the counter is created."""

        def run() -> int:
            pipe = self.client.pipeline()
            pipe.incr(self._k(key))
            if ttl:
                pipe.pexpire(self._k(key), int(ttl * 1000), nx=True)
            return int(pipe.execute()[0])

        return int(self._call(run))

    def ping(self) -> float:
        """Return the PING round trip in milliseconds (always asks Redis: health probes)."""
        start = time.perf_counter()
        self._call(self.client.ping, probe=True)
        return (time.perf_counter() - start) * 1000

    @contextlib.contextmanager
    def lock(self, name: str, *, ttl: float = 30.0, wait: float = 10.0) -> Iterator[None]:
        """Hold a Redis lock shared by every process using this Redis."""
        lock = self.client.lock(self._k("lock:" + name), timeout=ttl, blocking_timeout=wait)
        acquired = self._call(lambda: lock.acquire(token=uuid.uuid4().hex))
        if not acquired:
            raise TimeoutError(f"lock {name!r} not acquired within {wait}s")
        try:
            yield
        finally:
            with contextlib.suppress(self.redis_errors):
                lock.release()

    def info_memory(self) -> str | None:
        """Return Redis's ``used_memory_human``, for healthz details."""
        info = self._call(lambda: self.client.info("memory"), probe=True)
        value = info.get("used_memory_human") if isinstance(info, dict) else None
        return None if value is None else str(value)

    def pool_details(self) -> dict[str, Any]:
        """Return pool and error numbers for healthz."""
        in_use = len(getattr(self.pool, "_in_use_connections", ()))
        idle = len(getattr(self.pool, "_available_connections", ()))
        with self.metrics.lock:
            return {
                "in_use": in_use,
                "idle": idle,
                "max": self.pool.max_connections,
                "commands": self.metrics.commands,
                "errors": self.metrics.errors,
                "last_error": self.metrics.last_error,
                "state": self.metrics.state,
            }

    def start_monitor(self, interval: float) -> None:
        """PING every ``interval`` seconds so state changes are logged even when idle."""
        if self._monitor is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(KVUnavailableError):
                    self.ping()

        self._monitor = threading.Thread(target=loop, name="redis-health", daemon=True)
        self._monitor.start()

    def close(self) -> None:
        """Stop the monitor and disconnect every pooled connection."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
            self._monitor = None
        self.pool.disconnect()
        log.info("redis_closed")


def create_kv(
    redis_url: str | None,
    *,
    health_interval: float = 30.0,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
) -> KeyValueStore:
    """Return the Redis store when ``redis_url`` is set, else the in-process one."""
    if redis_url:
        return RedisKV(
            redis_url, health_check_interval=health_interval, socket_timeout=socket_timeout
        )
    return MemoryKV()


__all__ = ["KVUnavailableError", "KeyValueStore", "MemoryKV", "RedisKV", "create_kv"]
