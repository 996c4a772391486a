"""Rate limits per route and client, on the shared key-value store.

Built on the :pypi:`limits` library. Each named limit (``"signin": "10/minute"``) counts
hits per *client key* (the user id when signed in, the address otherwise; the caller
decides) under its own namespace:

* **strict** limits (sign-in, onboarding) use the exact moving window and fail **closed**
  (:class:`~paulyops.core.errors.ServiceUnavailableError`) when Redis is configured but
  unreachable: letting unlimited password guesses through would be worse than a 503.
* every other limit uses the cheaper sliding-window counter and fails **open** while Redis
  is down (with a security event), so an outage does not take the whole API with it.

With :class:`~paulyops.core.kv.RedisKV` the counters live in Redis (same connection pool,
keys under ``<kv prefix>ratelimit:`` in ``limits``' layout), exact across threads and
processes; a check is one script that counts the hit and reads the window, one round
trip. With :class:`~paulyops.core.kv.MemoryKV` they live in the process
(:class:`LazyMemoryStorage`, ``limits``' storage interface on a given clock).

Crossing the warning threshold (default 80 % of a limit) logs one ``ratelimit.warning``
security event per window per limit and client, before the limit bites; going over it
records a *block* admins can list with :meth:`RateLimiter.recent_blocks`. Allowlisted
client keys, addresses and networks bypass every limit.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import math
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import limits
from limits.errors import StorageError
from limits.storage import (
    MovingWindowSupport,
    RedisStorage,
    SlidingWindowCounterSupport,
    Storage,
)
from limits.storage.base import TimestampedSlidingWindow
from limits.strategies import (
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.strategies import (
    RateLimiter as LimitsStrategy,
)

from paulyops.core.errors import ConfigError, RateLimitedError, ServiceUnavailableError
from paulyops.core.kv import KeyValueStore, KVUnavailableError, MemoryKV, RedisKV
from paulyops.core.logging import get_logger, security_event

if TYPE_CHECKING:
    from redis.commands.core import Script

log = get_logger("paulyops.ratelimit")

# The settled defaults (DESIGN.md, "Rate limits"): the 5/hour onboarding limit counts only
# the final submit; validation and step posts have their own generous limit.
DEFAULT_LIMITS: Mapping[str, str] = {
    "signin": "10/minute",
    "onboarding_setup": "5/hour",
    "onboarding_validate": "120/minute",
    "api": "600/minute",
}
# Sign-in and onboarding fail closed while Redis is down (DESIGN.md, "Sessions, CSRF and
# Redis"); they are also the limits worth the exact (and dearer) moving window.
STRICT_LIMITS: frozenset[str] = frozenset({"signin", "onboarding_setup", "onboarding_validate"})
# Share of a limit after which one warning event is logged per window.
WARN_AT = 0.8
# Blocks kept for the admin list; older ones fall off.
MAX_BLOCKS = 200
# Seconds a process trusts its copy of the runtime allowlist before re-reading the store:
# reading it on every hit would double the cost of a check.
ALLOWLIST_REFRESH = 5.0
# At most one "unavailable" event per limit and process in this many seconds, so an outage
# does not turn every request into an alert.
OUTAGE_EVENT_INTERVAL = 60.0
# After a failed check, checks skip Redis for this many seconds (failing open or closed at
# once) instead of each request waiting through the client's connection retries.
OUTAGE_PROBE_INTERVAL = 2.0

_KEY_PREFIX = "ratelimit"
_ALLOWLIST_KEY = "ratelimit:allowlist"
_BLOCKS_KEY = "ratelimit:blocks"
_MAX_LOCAL_MARKERS = 10_000
# redis-py's errors join these only where Redis is configured (RateLimiter.__init__): it is
# imported only then.
_STORE_ERRORS: tuple[type[BaseException], ...] = (StorageError, KVUnavailableError, OSError)

Outcome = Literal["ok", "exceeded", "allowlisted", "unavailable"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one hit.

    Args:
        name: the limit's name.
        allowed: whether the request may proceed.
        limit: hits allowed per window.
        remaining: hits left in the current window.
        reset_at: epoch seconds when the window frees up (next hit allowed, when blocked).
        retry_after: whole seconds to wait before retrying (0 when allowed).
        window: the window's length in seconds.
        outcome: ``ok``, ``exceeded``, ``allowlisted`` or ``unavailable`` (failed open).
    """

    name: str
    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    retry_after: int
    window: int
    outcome: Outcome = "ok"


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One refused request, for the admins' list of recent blocks."""

    limit: str
    client_key: str
    at: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """A configured limit: its parsed rate and whether it is strict."""

    name: str
    rate: str
    item: limits.RateLimitItem
    strict: bool

    @property
    def amount(self) -> int:
        """Hits allowed per window."""
        return int(self.item.amount)

    @property
    def window(self) -> int:
        """The window's length in seconds."""
        return int(self.item.get_expiry())


class LimitExceededError(RateLimitedError):
    """A rate limit refused the request; carries the decision for the response headers."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            f"too many requests for {decision.name!r}: the limit is {decision.limit} per "
            f"{_describe_window(decision.window)}; retry in {decision.retry_after} s",
            retry_after=decision.retry_after,
            limit_name=decision.name,
        )
        self.decision = decision
        self.headers = headers(decision)


# How often, at most, the in-process counters drop expired windows (during a hit).
MEMORY_SWEEP_SECONDS = 1.0


Clock = Callable[[], float]
"""A wall clock: epoch seconds, like :func:`time.time` (tests pass a fake one)."""


class LazyMemoryStorage(
    Storage, MovingWindowSupport, SlidingWindowCounterSupport, TimestampedSlidingWindow
):
    """In-process counters for ``limits``' strategies, on a given clock, with no threads.

    An implementation of ``limits``' public storage interface (:class:`~limits.storage.
    Storage` with moving-window and sliding-window-counter support). ``limits``' own
    :class:`~limits.storage.MemoryStorage` starts a ``threading.Timer`` whenever the last
    one finished, so under load a new thread started about every third hit (~0.3 ms each,
    more than the count itself), and it reads :func:`time.time` directly. Here counters
    expire on read, and the moving window's entries and abandoned counters are swept
    during a hit at most every :data:`MEMORY_SWEEP_SECONDS` of ``clock``.

    Not thread-safe by itself: :class:`RateLimiter` makes every call under one lock.

    Args:
        clock: the wall clock the windows are measured on.
    """

    STORAGE_SCHEME = None  # not a URL scheme of limits' registry: built directly

    def __init__(self, clock: Clock = time.time) -> None:
        super().__init__()
        self.clock = clock
        # Moving window: per key, hit times newest first (as limits' Redis list).
        self.events: dict[str, list[float]] = {}
        self._windows: dict[str, float] = {}
        # Sliding window counter: per key, (count, expires at).
        self.counters: dict[str, tuple[int, float]] = {}
        self._next_sweep = clock() + MEMORY_SWEEP_SECONDS

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """Errors ``limits`` may wrap (none are expected in process)."""
        return ValueError

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + MEMORY_SWEEP_SECONDS
        for key, hits in list(self.events.items()):
            del hits[_in_window(hits, now - self._windows.get(key, 0.0)) :]
            if not hits:
                del self.events[key]
                self._windows.pop(key, None)
        for key, (_count, expires_at) in list(self.counters.items()):
            if expires_at <= now:
                del self.counters[key]

    # --- counters (the sliding window counter's two windows) ----------------------------

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` to a counter; a new counter expires ``expiry`` seconds from now."""
        now = self.clock()
        self._sweep(now)
        count = self.get(key)
        expires_at = self.counters[key][1] if count else now + expiry
        self.counters[key] = (count + amount, expires_at)
        return count + amount

    def get(self, key: str) -> int:
        """Return a counter's value (0 once it expired)."""
        entry = self.counters.get(key)
        if entry is None:
            return 0
        if entry[1] <= self.clock():
            del self.counters[key]
            return 0
        return entry[0]

    def get_expiry(self, key: str) -> float:
        """Return when a counter expires (now when it does not exist)."""
        entry = self.counters.get(key)
        return entry[1] if entry is not None else self.clock()

    def check(self) -> bool:
        """The in-process store is always healthy."""
        return True

    def reset(self) -> int | None:
        """Forget everything; return how many keys there were."""
        count = max(len(self.counters), len(self.events))
        self.counters.clear()
        self.events.clear()
        self._windows.clear()
        return count

    def clear(self, key: str) -> None:
        """Forget one key's counter and hits."""
        self.counters.pop(key, None)
        self.events.pop(key, None)
        self._windows.pop(key, None)

    # --- moving window ----------------------------------------------------------------------

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Record ``amount`` hits unless ``limit`` hits already fall inside the window."""
        if amount > limit:
            return False
        now = self.clock()
        self._sweep(now)
        hits = self.events.setdefault(key, [])
        self._windows[key] = float(expiry)
        if len(hits) > limit - amount and hits[limit - amount] >= now - expiry:
            return False
        hits[:0] = [now] * amount
        del hits[limit:]  # older hits can no longer decide anything
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """Return (time of the oldest hit in the window, hits in the window)."""
        now = self.clock()
        hits = self.events.get(key, [])
        count = _in_window(hits, now - expiry)
        return (hits[count - 1], count) if count else (now, 0)

    # --- sliding window counter -------------------------------------------------------------

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """Count ``amount`` hits unless the weighted count of both windows would pass ``limit``."""
        if amount > limit:
            return False
        now = self.clock()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        previous, previous_ttl, current, _ = self._sliding_window(
            previous_key, current_key, expiry, now
        )
        if math.floor(previous * previous_ttl / expiry + current) + amount > limit:
            return False
        # A window's counter outlives it by one window: it is the next one's "previous".
        self.incr(current_key, 2 * expiry, amount)
        return True

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """Return (previous count, its TTL, current count, its TTL), TTLs in seconds."""
        now = self.clock()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        return self._sliding_window(previous_key, current_key, expiry, now)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        """Forget both windows of ``key``."""
        for window_key in self.sliding_window_keys(key, expiry, self.clock()):
            self.clear(window_key)

    def _sliding_window(
        self, previous_key: str, current_key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        # As limits' MemoryStorage: windows are aligned on multiples of the expiry, and the
        # previous window weighs by the share of it still inside the sliding window.
        previous, current = self.get(previous_key), self.get(current_key)
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, previous_ttl, current, current_ttl


def _in_window(hits: list[float], since: float) -> int:
    """How many of ``hits`` (newest first) happened at ``since`` or later."""
    return bisect_left(hits, -since, key=lambda at: -at)


class _MemoryState:
    """The per-process state behind one :class:`MemoryKV`, shared by its rate limiters."""

    def __init__(self, max_blocks: int, clock: Clock) -> None:
        self.clock = clock
        self.storage = LazyMemoryStorage(clock)
        self.blocks: deque[str] = deque(maxlen=max_blocks)
        # A hit checks and increments in two steps; one lock makes every hit exact (a hit
        # costs microseconds, so contention is negligible).
        self.lock = threading.Lock()


_memory_states: weakref.WeakKeyDictionary[MemoryKV, _MemoryState] = weakref.WeakKeyDictionary()
_memory_states_lock = threading.Lock()


def _memory_state(kv: MemoryKV, max_blocks: int, clock: Clock) -> _MemoryState:
    with _memory_states_lock:
        state = _memory_states.get(kv)
        if state is None:
            state = _memory_states[kv] = _MemoryState(max_blocks, clock)
        elif state.clock is not clock:
            # Their counters are shared: measured on two clocks, the windows would disagree.
            raise ConfigError("rate limiters sharing an in-process store must share its clock")
        return state


def parse_limits(
    config: Mapping[str, str], *, strict: Collection[str] = STRICT_LIMITS
) -> dict[str, LimitPolicy]:
    """Parse ``{"name": "10/minute"}`` into policies.

    Raises:
        ConfigError: a name is empty or a rate is not ``N/unit`` (``N per M units``).
    """
    policies: dict[str, LimitPolicy] = {}
    for name, rate in config.items():
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"rate limit name: expected letters, digits, '_' or '-'; got {name!r}"
            )
        try:
            items = limits.parse_many(rate)
        except ValueError as err:
            raise ConfigError(
                f"rate limit {name!r}: expected a rate like '10/minute', got {rate!r}"
            ) from err
        if len(items) != 1:
            raise ConfigError(f"rate limit {name!r}: expected one rate, got {rate!r}")
        parsed = items[0]
        item = type(parsed)(parsed.amount, parsed.multiples, namespace=name)
        policies[name] = LimitPolicy(name=name, rate=rate, item=item, strict=name in strict)
    return policies


def client_id(client_key: str) -> str:
    """Return the storage id of a client key: a hash, so no key can inject separators."""
    return hashlib.sha256(client_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RateLimiter:
    """Named rate limits over the instance's key-value store.

    Args:
        kv: the instance's store (Redis or in-process).
        limits: ``{"name": "10/minute"}``; see :data:`DEFAULT_LIMITS`.
        strict: names that use the exact moving window and fail closed.
        warn_at: share of a limit after which one warning event per window is logged.
        allowlist: client keys, addresses or networks (CIDR) that bypass every limit;
            more can be added at runtime with :meth:`add_to_allowlist`.
        max_blocks: how many recent blocks are kept.
        allowlist_refresh: seconds between re-reads of the runtime allowlist.
        outage_probe_interval: seconds checks skip an unreachable Redis before trying again.
        clock: the wall clock windows are measured on (tests pass a fake one). On Redis it
            times the moving window's hits; the sliding counter's windows expire on the
            server's clock.

    .. versionchanged:: 0.2 ``clock``.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        limits: Mapping[str, str] = DEFAULT_LIMITS,
        *,
        strict: Collection[str] = STRICT_LIMITS,
        warn_at: float = WARN_AT,
        allowlist: Iterable[str] = (),
        max_blocks: int = MAX_BLOCKS,
        allowlist_refresh: float = ALLOWLIST_REFRESH,
        outage_probe_interval: float = OUTAGE_PROBE_INTERVAL,
        clock: Clock = time.time,
    ) -> None:
        if not 0 < warn_at <= 1:
            raise ConfigError(f"rate limit warn_at: expected a share in (0, 1], got {warn_at}")
        self.kv = kv
        self.policies = parse_limits(limits, strict=strict)
        self.warn_at = warn_at
        self.max_blocks = max_blocks
        self._configured_allowlist = [_normalize_entry(entry) for entry in allowlist]
        self._allowlist_refresh = allowlist_refresh
        self._runtime_allowlist: list[str] = []
        self._allowlist_read_at = -math.inf
        self._matcher = _AllowlistMatcher(self._configured_allowlist)
        self._outage_logged: dict[str, float] = {}
        self._markers: dict[str, float] = {}
        self._outage_probe_interval = outage_probe_interval
        self._store_down_until = -math.inf
        self._clock = clock
        self._memory: _MemoryState | None = None
        self._redis: _RedisCounters | None = None
        storage: Storage
        self._store_errors = _STORE_ERRORS
        if isinstance(kv, RedisKV):
            from redis.exceptions import RedisError

            self._store_errors = (*_STORE_ERRORS, RedisError)
            # Same pool, so limits shares the pool's size, timeouts and retry policy.
            redis_storage = RedisStorage(
                "redis://",
                connection_pool=kv.pool,
                key_prefix=kv.prefix + _KEY_PREFIX,
                wrap_exceptions=True,
            )
            self._redis = _RedisCounters(kv, redis_storage)
            storage = redis_storage
        elif isinstance(kv, MemoryKV):
            self._memory = _memory_state(kv, max_blocks, clock)
            storage = self._memory.storage
        else:
            raise ConfigError(f"rate limits: unsupported key-value store {type(kv).__name__}")
        self._strategies: dict[bool, LimitsStrategy] = {
            True: MovingWindowRateLimiter(storage),
            False: SlidingWindowCounterRateLimiter(storage),
        }

    # --- checking -----------------------------------------------------------------------

    def policy(self, name: str) -> LimitPolicy:
        """Return the named limit.

        Raises:
            ConfigError: no limit has that name.
        """
        try:
            return self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies))
            raise ConfigError(f"rate limit {name!r} is not configured; known: {known}") from None

    def hit(self, name: str, client_key: str, *, address: str | None = None) -> Decision:
        """Count one request of ``client_key`` against the limit ``name``.

        Args:
            name: the limit, e.g. ``signin``.
            client_key: who is counted: ``user:<id>`` when signed in, else the address.
            address: the caller's address, so allowlisted networks also cover signed-in
                users; defaults to ``client_key``.

        Raises:
            ServiceUnavailableError: a strict limit cannot reach Redis (fail closed).
            ConfigError: the limit is not configured.
        """
        policy = self.policy(name)
        if not client_key:
            raise ValueError("rate limit client_key must not be empty")
        if self.is_allowlisted(client_key, address=address):
            return _unlimited(policy, "allowlisted", self._clock())
        if time.monotonic() < self._store_down_until or (
            isinstance(self.kv, RedisKV) and self.kv.is_failing_fast
        ):
            return self._store_failed(policy, None)
        try:
            decision = self._count(policy, client_id(client_key))
        except self._store_errors as err:
            self._store_down_until = time.monotonic() + self._outage_probe_interval
            return self._store_failed(policy, err)
        if decision.limit - decision.remaining >= self._warn_count(policy):
            self._warn_once(policy, client_key, decision)
        if not decision.allowed:
            self._record_block(policy, client_key)
        return decision

    def enforce(self, name: str, client_key: str, *, address: str | None = None) -> Decision:
        """Count one request and raise when it is over the limit.

        Raises:
            LimitExceededError: over the limit (a :class:`RateLimitedError`, HTTP 429).
            ServiceUnavailableError: a strict limit cannot reach Redis (HTTP 503).
        """
        decision = self.hit(name, client_key, address=address)
        if not decision.allowed:
            raise LimitExceededError(decision)
        return decision

    def reset(self, name: str, client_key: str) -> None:
        """Forget the counted hits of ``client_key`` under ``name`` (an admin unblock)."""
        policy = self.policy(name)
        with self._exclusive():
            self._strategies[policy.strict].clear(policy.item, client_id(client_key))

    def _count(self, policy: LimitPolicy, cid: str) -> Decision:
        now = self._clock()
        if self._redis is not None:
            allowed, stats = self._redis.check(policy, cid, now)
        else:
            with self._exclusive():
                allowed, stats = self._count_in_process(policy, cid, now)
        reset_at = float(stats.reset_time)
        if reset_at <= now and stats.remaining < policy.amount:
            # limits' sliding counter reports "now" when a TTL is a whole number of
            # windows (right after the first hit); a used-up window frees up later than that.
            reset_at = now + policy.window
        retry_after = 0 if allowed else max(1, math.ceil(reset_at - now))
        return Decision(
            name=policy.name,
            allowed=allowed,
            limit=policy.amount,
            remaining=max(0, min(policy.amount, int(stats.remaining))),
            reset_at=reset_at,
            retry_after=retry_after,
            window=policy.window,
            outcome="ok" if allowed else "exceeded",
        )

    def _count_in_process(
        self, policy: LimitPolicy, cid: str, now: float
    ) -> tuple[bool, limits.WindowStats]:
        # limits' strategy counts; the window is read through the store's public interface
        # and turned into stats here, so both stores report on the same clock and terms.
        assert self._memory is not None  # only called for the in-process store
        storage, item = self._memory.storage, policy.item
        allowed = self._strategies[policy.strict].hit(item, cid)
        key, amount, expiry = item.key_for(cid), policy.amount, policy.window
        if policy.strict:
            oldest, count = storage.get_moving_window(key, amount, expiry)
            return allowed, _moving_stats(oldest, count, amount, expiry, now)
        window = storage.get_sliding_window(key, expiry)
        return allowed, _sliding_stats(window, amount, expiry, now)

    def _exclusive(self) -> contextlib.AbstractContextManager[Any]:
        # Redis runs each check as one atomic script; only the in-process store needs a lock.
        return self._memory.lock if self._memory is not None else contextlib.nullcontext()

    def _store_failed(self, policy: LimitPolicy, err: BaseException | None) -> Decision:
        failed = "closed" if policy.strict else "open"
        now = time.monotonic()
        if now - self._outage_logged.get(policy.name, -math.inf) >= OUTAGE_EVENT_INTERVAL:
            self._outage_logged[policy.name] = now
            security_event(
                "ratelimit.unavailable",
                severity="critical",
                limit=policy.name,
                failed=failed,
                error=type(err).__name__ if err is not None else "recently unreachable",
            )
        if policy.strict:
            raise ServiceUnavailableError(
                f"{policy.name} is unavailable: its rate limit needs shared state (Redis), "
                "which is unreachable; try again shortly"
            ) from err
        return _unlimited(policy, "unavailable", self._clock())

    # --- warnings and blocks ----------------------------------------------------------------

    def _warn_count(self, policy: LimitPolicy) -> int:
        return max(1, math.ceil(self.warn_at * policy.amount))

    def _warn_once(self, policy: LimitPolicy, client_key: str, decision: Decision) -> None:
        if self._mark_once(f"ratelimit:warned:{policy.name}:{client_id(client_key)}", policy):
            security_event(
                "ratelimit.warning",
                limit=policy.name,
                client=client_key,
                used=decision.limit - decision.remaining,
                allowed_per_window=policy.amount,
                window_seconds=policy.window,
            )

    def _record_block(self, policy: LimitPolicy, client_key: str) -> None:
        record = BlockRecord(policy.name, client_key, self._clock(), "limit exceeded")
        line = json.dumps(record.as_dict(), separators=(",", ":"))
        if self._memory is not None:
            self._memory.blocks.appendleft(line)
        elif isinstance(self.kv, RedisKV):
            key = self.kv.prefix + _BLOCKS_KEY
            try:
                pipe = self.kv.client.pipeline(transaction=False)
                pipe.lpush(key, line)
                pipe.ltrim(key, 0, self.max_blocks - 1)
                pipe.execute()
            except self.kv.redis_errors:
                log.warning("ratelimit_block_not_recorded", limit=policy.name)
        # One event per window and client: a flood of refused requests is one incident.
        if self._mark_once(f"ratelimit:blocked:{policy.name}:{client_id(client_key)}", policy):
            security_event("ratelimit.blocked", limit=policy.name, client=client_key)

    def _mark_once(self, key: str, policy: LimitPolicy) -> bool:
        """Set a once-per-window marker in the store; return whether this call set it.

        The store makes it once across processes. A local note of markers already set
        spares a round trip on every later hit of a client over the threshold; a marker
        another process set is only noted briefly, as its expiry is unknown here.
        """
        now = time.monotonic()
        if self._markers.get(key, -math.inf) > now:
            return False
        try:
            first = self.kv.set(key, "1", ttl=policy.window, only_new=True)
        except KVUnavailableError:
            return False
        if len(self._markers) >= _MAX_LOCAL_MARKERS:
            self._markers = {k: t for k, t in self._markers.items() if t > now}
            if len(self._markers) >= _MAX_LOCAL_MARKERS:
                self._markers.clear()
        self._markers[key] = now + (policy.window if first else min(policy.window, 5.0))
        return first

    def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        """Return the most recent blocks, newest first."""
        limit = max(0, min(limit, self.max_blocks))
        if limit == 0:
            return []
        if self._memory is not None:
            lines = list(self._memory.blocks)[:limit]
        else:
            lines = self._redis_blocks(limit)
        return [BlockRecord(**json.loads(line)) for line in lines]

    def _redis_blocks(self, limit: int) -> list[str]:
        if not isinstance(self.kv, RedisKV):
            return []
        try:
            raw = self.kv.client.lrange(self.kv.prefix + _BLOCKS_KEY, 0, limit - 1)
        except self.kv.redis_errors as err:
            raise KVUnavailableError("shared state (Redis) is unreachable") from err
        return [str(line) for line in raw]

    # --- allowlist --------------------------------------------------------------------------

    def is_allowlisted(self, client_key: str, *, address: str | None = None) -> bool:
        """Whether ``client_key`` (or ``address``) bypasses every limit."""
        self._refresh_allowlist()
        matcher = self._matcher
        return matcher.matches(client_key) or (address is not None and matcher.matches(address))

    def allowlist(self) -> list[str]:
        """Return every allowlist entry: configured ones first, then runtime additions."""
        self._refresh_allowlist(force=True)
        return [*self._configured_allowlist, *self._runtime_allowlist]

    def add_to_allowlist(self, entry: str) -> str:
        """Add a client key, address or network (CIDR) at runtime; return it normalized.

        Raises:
            ConfigError: the entry is empty or too long.
            KVUnavailableError: the store is unreachable.
        """
        normalized = _normalize_entry(entry)
        with self.kv.lock(_ALLOWLIST_KEY, ttl=10, wait=10):
            current = self._read_runtime_allowlist()
            if normalized not in current:
                current.append(normalized)
                self.kv.set(_ALLOWLIST_KEY, json.dumps(current))
        security_event("ratelimit.allowlist_added", severity="info", entry=normalized)
        self._refresh_allowlist(force=True)
        return normalized

    def remove_from_allowlist(self, entry: str) -> bool:
        """Remove a runtime entry; return whether it was there (configured ones stay)."""
        normalized = _normalize_entry(entry)
        with self.kv.lock(_ALLOWLIST_KEY, ttl=10, wait=10):
            current = self._read_runtime_allowlist()
            present = normalized in current
            if present:
                current.remove(normalized)
                self.kv.set(_ALLOWLIST_KEY, json.dumps(current))
        if present:
            security_event("ratelimit.allowlist_removed", severity="info", entry=normalized)
        self._refresh_allowlist(force=True)
        return present

    def _read_runtime_allowlist(self) -> list[str]:
        raw = self.kv.get(_ALLOWLIST_KEY)
        if not raw:
            return []
        value = json.loads(raw)
        return [str(item) for item in value] if isinstance(value, list) else []

    def _refresh_allowlist(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (
            now - self._allowlist_read_at < self._allowlist_refresh or now < self._store_down_until
        ):
            return
        self._allowlist_read_at = now
        try:
            runtime = self._read_runtime_allowlist()
        except KVUnavailableError:
            self._store_down_until = time.monotonic() + self._outage_probe_interval
            return  # keep the last known list while the store is down
        except ValueError:
            return
        if runtime != self._runtime_allowlist:
            self._runtime_allowlist = runtime
            self._matcher = _AllowlistMatcher([*self._configured_allowlist, *runtime])


# The two checks on Redis, each one script: limits' acquire script for the strategy
# followed by its window script, on the same keys, so a check is one command and one round
# trip (limits' own API takes two: ``hit``, then ``get_window_stats``). The keys are
# limits' RedisStorage layout, so limits' API (``reset``, and any process still running
# it) reads the same counters; tests/core/security/test_ratelimit.py compares the two.
_MOVING_WINDOW_CHECK = """
local timestamp = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local acquired = 0
local entry = redis.call('lindex', KEYS[1], limit - 1)
if not (entry and tonumber(entry) >= timestamp - expiry) then
    redis.call('lpush', KEYS[1], timestamp)
    redis.call('ltrim', KEYS[1], 0, limit - 1)
    redis.call('expire', KEYS[1], expiry)
    acquired = 1
end
-- Newest hits come first: find the oldest one still inside the window.
local target = timestamp - expiry
local low, high, index = 0, limit - 1, nil
while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('lindex', KEYS[1], mid))
    if value and value >= target then
        index = mid
        low = mid + 1
    else
        high = mid - 1
    end
end
if index then
    return {acquired, redis.call('lindex', KEYS[1], index), index + 1}
end
return {acquired}
"""
# Milliseconds here, as in limits' scripts: TTLs and the expiry.
_SLIDING_WINDOW_CHECK = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
if current_ttl > 0 and current_ttl < expiry then
    -- The current window ended: it becomes the previous one.
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
end
local function window()
    return tonumber(redis.call('get', KEYS[1])) or 0,
        math.max(0, tonumber(redis.call('pttl', KEYS[1])) or 0),
        tonumber(redis.call('get', KEYS[2])) or 0,
        math.max(0, tonumber(redis.call('pttl', KEYS[2])) or 0)
end
local previous_count, previous_ttl, current_count, current_ttl = window()
local acquired = 0
if math.floor(previous_count * previous_ttl / expiry) + current_count + 1 <= limit then
    if redis.call('exists', KEYS[2]) == 1 then
        redis.call('incrby', KEYS[2], 1)
    else
        redis.call('set', KEYS[2], 1, 'PX', expiry * 2)
    end
    acquired = 1
    previous_count, previous_ttl, current_count, current_ttl = window()
end
return {acquired, previous_count, previous_ttl, current_count, current_ttl}
"""


class _RedisCounters:
    """Count a hit and read its window in one Redis command.

    The scripts run through redis-py's :class:`~redis.commands.core.Script` (``EVALSHA``,
    loading the script when Redis does not know it yet) on the store's client, so they
    share its pool and retry policy: a refused or reset connection is retried once on a
    fresh one (a hit whose reply was lost may then count twice); a timeout is raised.
    """

    def __init__(self, kv: RedisKV, storage: RedisStorage) -> None:
        self.storage = storage
        self.moving: Script = kv.client.register_script(_MOVING_WINDOW_CHECK)
        self.sliding: Script = kv.client.register_script(_SLIDING_WINDOW_CHECK)

    def check(self, policy: LimitPolicy, cid: str, now: float) -> tuple[bool, limits.WindowStats]:
        """Count one hit at ``now``; return (allowed, the window's stats after it)."""
        amount, expiry = policy.amount, policy.window
        base = policy.item.key_for(cid)
        if policy.strict:
            key = self.storage.prefixed_key(base)
            reply = self.moving(keys=[key], args=[now, amount, expiry])
            oldest = float(reply[1]) if len(reply) > 1 else None
            count = int(reply[2]) if len(reply) > 2 else 0
            return bool(reply[0]), _moving_stats(oldest, count, amount, expiry, now)
        keys = [self.storage.prefixed_key(name) for name in _sliding_keys(base)]
        reply = self.sliding(keys=keys, args=[amount, expiry])
        window = (int(reply[1]), int(reply[2]) / 1000, int(reply[3]), int(reply[4]) / 1000)
        return bool(reply[0]), _sliding_stats(window, amount, expiry, now)


def _sliding_keys(base: str) -> tuple[str, str]:
    """Return limits' (previous, current) Redis keys of a sliding window counter.

    The braces keep both on one Redis Cluster node. The layout is limits' RedisStorage's
    (its private ``_previous_window_key``/``_current_window_key``), repeated here so both
    read one counter; the comparison test fails if a limits release changes it.
    """
    return f"{{{base}}}/-1", f"{{{base}}}"


def _moving_stats(
    oldest: float | None, count: int, amount: int, expiry: int, now: float
) -> limits.WindowStats:
    # As MovingWindowRateLimiter.get_window_stats: the oldest hit in the window frees up
    # one slot when it leaves.
    if oldest is None or not count:
        return limits.WindowStats(now, amount)
    return limits.WindowStats(oldest + expiry, amount - count)


def _sliding_stats(
    window: tuple[int, float, int, float], amount: int, expiry: int, now: float
) -> limits.WindowStats:
    # As SlidingWindowCounterRateLimiter.get_window_stats, from (previous count, its TTL,
    # current count, its TTL), TTLs in seconds.
    previous_count, previous_ttl, current_count, current_ttl = window
    weighted = previous_count * previous_ttl / expiry + current_count
    remaining = max(0, amount - math.floor(weighted))
    if not (previous_count or current_count):
        return limits.WindowStats(now, remaining)
    previous_reset = previous_ttl % (expiry / previous_count) if previous_count else math.inf
    current_reset = current_ttl % expiry if current_count else math.inf
    return limits.WindowStats(now + min(previous_reset, current_reset), remaining)


class _AllowlistMatcher:
    """Exact client keys plus address networks, parsed once."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            network = _as_network(entry)
            if network is None:
                self.exact.add(entry)
            else:
                self.networks.append(network)

    def matches(self, value: str) -> bool:
        if value in self.exact:
            return True
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def _as_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _normalize_entry(entry: str) -> str:
    entry = entry.strip()
    if not entry or len(entry) > 200:
        raise ConfigError(
            f"rate limit allowlist: expected a client key, address or CIDR, got {entry!r}"
        )
    network = _as_network(entry)
    if network is None:
        return entry
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def _unlimited(policy: LimitPolicy, outcome: Outcome, now: float) -> Decision:
    return Decision(
        name=policy.name,
        allowed=True,
        limit=policy.amount,
        remaining=policy.amount,
        reset_at=now,
        retry_after=0,
        window=policy.window,
        outcome=outcome,
    )


def _describe_window(seconds: int) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


def headers(decision: Decision) -> dict[str, str]:
    """Return the rate-limit response headers for ``decision``.

    The ``RateLimit-Limit``/``-Remaining``/``-Reset`` fields (reset in seconds, as the
    IETF draft and most clients expect), the newer draft's structured ``RateLimit`` and
    ``RateLimit-Policy`` fields, and ``Retry-After`` when the request was refused.
    Allowlisted and failed-open decisions get none: they are not counted.
    """
    if decision.outcome in {"allowlisted", "unavailable"}:
        return {}
    reset_in = max(0, math.ceil(decision.reset_at - time.time()))
    out = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(reset_in),
        "RateLimit-Policy": f'"{decision.name}";q={decision.limit};w={decision.window}',
        "RateLimit": f'"{decision.name}";r={decision.remaining};t={reset_in}',
    }
    if not decision.allowed:
        out["Retry-After"] = str(decision.retry_after)
    return out


__all__ = [
    "DEFAULT_LIMITS",
    "STRICT_LIMITS",
    "WARN_AT",
    "BlockRecord",
    "Decision",
    "LazyMemoryStorage",
    "LimitExceededError",
    "LimitPolicy",
    "RateLimiter",
    "client_id",
    "headers",
    "parse_limits",
]
