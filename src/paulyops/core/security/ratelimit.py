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
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import limits
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage
from limits.strategies import (
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.strategies import (
    RateLimiter as LimitsStrategy,
)

from paulyops.core import metrics as prometheus
from paulyops.core.errors import ConfigError, RateLimitedError, ServiceUnavailableError
from paulyops.core.kv import KeyValueStore, KVUnavailableError, MemoryKV, RedisKV
from paulyops.core.logging import get_logger, security_event
from paulyops.core.security.ratecounters import (
    Clock,
    LazyMemoryStorage,
    RedisCounters,
    moving_stats,
    sliding_stats,
)

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
        self._redis: RedisCounters | None = None
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
            self._redis = RedisCounters(kv, redis_storage)
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
            prometheus.count_ratelimit_block(policy.name)
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
            allowed, stats = self._redis.check(policy.item, cid, strict=policy.strict, now=now)
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
            return allowed, moving_stats(oldest, count, amount, expiry, now)
        window = storage.get_sliding_window(key, expiry)
        return allowed, sliding_stats(window, amount, expiry, now)

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
            prometheus.count_ratelimit_warning(policy.name)
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
