"""Rate-limit counters: where hits are counted, in process or on Redis.

Both backends keep ``limits``' algorithms (the exact moving window and the sliding window
counter) and report a window as :class:`limits.WindowStats` on one clock:

* :class:`LazyMemoryStorage` implements ``limits``' public storage interface in process,
  with no timer thread and on an injectable clock;
* :class:`RedisCounters` counts a hit and reads its window in one Redis script, on
  ``limits``' key layout.

:mod:`paulyops.core.security.ratelimit` builds the limits on them.

.. versionadded:: 0.2
"""

from __future__ import annotations

import hashlib
import math
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import limits
from limits.storage import (
    MovingWindowSupport,
    RedisStorage,
    SlidingWindowCounterSupport,
    Storage,
)
from limits.storage.base import TimestampedSlidingWindow

if TYPE_CHECKING:
    from paulyops.core.kv import RedisKV

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

    Not thread-safe by itself: :class:`~paulyops.core.security.ratelimit.RateLimiter`
    makes every call under one lock.

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


class RedisCounters:
    """Count a hit and read its window in one Redis command.

    The scripts run with redis-py's ``evalsha`` on the store's client, so they share its
    pool and retry policy: a refused or reset connection is retried once on a fresh one
    (a hit whose reply was lost may then count twice); a timeout is raised. A script
    Redis does not know yet (first use, a restart, ``SCRIPT FLUSH``) ran not at all: it
    is loaded and run once more. redis-py's ``Script`` wrapper does the same, at about a
    tenth of a check's throughput more (bench/ratelimit_check.py).
    """

    def __init__(self, kv: RedisKV, storage: RedisStorage) -> None:
        from redis.exceptions import NoScriptError

        self.storage = storage
        self._client = kv.client
        self._no_script = NoScriptError
        self._shas = {
            script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            for script in (_MOVING_WINDOW_CHECK, _SLIDING_WINDOW_CHECK)
        }

    def _run(self, script: str, keys: list[str], args: list[float | int]) -> list[Any]:
        try:
            reply = self._client.evalsha(self._shas[script], len(keys), *keys, *args)
        except self._no_script:
            self._shas[script] = str(self._client.script_load(script))
            reply = self._client.evalsha(self._shas[script], len(keys), *keys, *args)
        return cast("list[Any]", reply)

    def check(
        self, item: limits.RateLimitItem, cid: str, *, strict: bool, now: float
    ) -> tuple[bool, limits.WindowStats]:
        """Count one hit of ``cid`` at ``now``; return (allowed, the window after it).

        Args:
            item: the limit (its namespace names the keys).
            cid: the client's storage id.
            strict: the moving window (else the sliding window counter).
            now: epoch seconds (the moving window's hit time).
        """
        amount, expiry = int(item.amount), int(item.get_expiry())
        base = item.key_for(cid)
        if strict:
            key = self.storage.prefixed_key(base)
            reply = self._run(_MOVING_WINDOW_CHECK, [key], [now, amount, expiry])
            oldest = float(reply[1]) if len(reply) > 1 else None
            count = int(reply[2]) if len(reply) > 2 else 0
            return bool(reply[0]), moving_stats(oldest, count, amount, expiry, now)
        keys = [self.storage.prefixed_key(name) for name in _sliding_keys(base)]
        reply = self._run(_SLIDING_WINDOW_CHECK, keys, [amount, expiry])
        window = (int(reply[1]), int(reply[2]) / 1000, int(reply[3]), int(reply[4]) / 1000)
        return bool(reply[0]), sliding_stats(window, amount, expiry, now)


def _sliding_keys(base: str) -> tuple[str, str]:
    """Return limits' (previous, current) Redis keys of a sliding window counter.

    The braces keep both on one Redis Cluster node. The layout is limits' RedisStorage's
    (its private ``_previous_window_key``/``_current_window_key``), repeated here so both
    read one counter; the comparison test fails if a limits release changes it.
    """
    return f"{{{base}}}/-1", f"{{{base}}}"


def moving_stats(
    oldest: float | None, count: int, amount: int, expiry: int, now: float
) -> limits.WindowStats:
    """Return a moving window's stats from its oldest hit and hit count.

    As ``MovingWindowRateLimiter.get_window_stats``: the oldest hit in the window frees
    up one slot when it leaves.
    """
    if oldest is None or not count:
        return limits.WindowStats(now, amount)
    return limits.WindowStats(oldest + expiry, amount - count)


def sliding_stats(
    window: tuple[int, float, int, float], amount: int, expiry: int, now: float
) -> limits.WindowStats:
    """Return a sliding window counter's stats from (previous count, its TTL, current
    count, its TTL), TTLs in seconds.

    As ``SlidingWindowCounterRateLimiter.get_window_stats``, but on the given ``now``.
    """
    previous_count, previous_ttl, current_count, current_ttl = window
    weighted = previous_count * previous_ttl / expiry + current_count
    remaining = max(0, amount - math.floor(weighted))
    if not (previous_count or current_count):
        return limits.WindowStats(now, remaining)
    previous_reset = previous_ttl % (expiry / previous_count) if previous_count else math.inf
    current_reset = current_ttl % expiry if current_count else math.inf
    return limits.WindowStats(now + min(previous_reset, current_reset), remaining)


__all__ = [
    "MEMORY_SWEEP_SECONDS",
    "Clock",
    "LazyMemoryStorage",
    "RedisCounters",
    "moving_stats",
    "sliding_stats",
]
