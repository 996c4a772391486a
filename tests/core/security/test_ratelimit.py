"""Rate limits: counting, warnings, blocks, allowlist, outages and concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from paulyops.core.errors import ConfigError, RateLimitedError, ServiceUnavailableError
from paulyops.core.kv import KeyValueStore, MemoryKV, RedisKV
from paulyops.core.logging import add_alert_hook
from paulyops.core.security.ratelimit import (
    DEFAULT_LIMITS,
    Decision,
    LimitExceededError,
    RateLimiter,
    client_id,
    headers,
)
from tests.conftest import NO_REDIS, REDIS_URL
from tests.support.clock import FakeClock
from tests.support.tcpproxy import TcpProxy

LIMITS = {"signin": "5/minute", "api": "5/day", "burst": "2/second"}
STRICT = {"signin", "burst"}


def _limiter(kv: KeyValueStore, **kwargs: Any) -> RateLimiter:
    return RateLimiter(kv, kwargs.pop("limits", LIMITS), strict=STRICT, **kwargs)


@pytest.fixture
def events() -> Iterator[list[Mapping[str, Any]]]:
    """Collect the security events raised during a test."""
    seen: list[Mapping[str, Any]] = []
    remove = add_alert_hook(seen.append)
    yield seen
    remove()


def _kinds(events: list[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [event for event in events if event["kind"] == kind]


def _redis_parts(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition("@")[2].partition(":")
    return host or "127.0.0.1", int(port or 6379), path


# --- counting -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["signin", "api"])
def test_hits_within_the_limit_are_allowed_and_count_down(kv: KeyValueStore, name: str) -> None:
    """Each allowed hit lowers ``remaining`` by one and reports the limit and window."""
    limiter = _limiter(kv)
    decisions = [limiter.hit(name, "10.0.0.1") for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert {d.limit for d in decisions} == {5}
    assert decisions[0].reset_at >= time.time() - 1


@pytest.mark.parametrize("name", ["signin", "api"])
def test_hit_over_the_limit_is_refused_with_a_retry_delay(kv: KeyValueStore, name: str) -> None:
    """The hit after the limit is refused, with retry_after > 0 and outcome 'exceeded'."""
    limiter = _limiter(kv)
    for _ in range(5):
        limiter.hit(name, "10.0.0.2")
    refused = limiter.hit(name, "10.0.0.2")
    assert not refused.allowed
    assert refused.outcome == "exceeded"
    assert refused.remaining == 0
    assert 1 <= refused.retry_after <= refused.window


def test_enforce_raises_a_rate_limited_error_with_headers(kv: KeyValueStore) -> None:
    """enforce() raises a RateLimitedError naming the limit, with Retry-After in its headers."""
    limiter = _limiter(kv)
    for _ in range(5):
        limiter.enforce("signin", "user:1")
    with pytest.raises(RateLimitedError) as caught:
        limiter.enforce("signin", "user:1")
    err = caught.value
    assert isinstance(err, LimitExceededError)
    assert err.limit_name == "signin"
    assert err.retry_after >= 1
    assert err.headers["Retry-After"] == str(err.retry_after)
    assert "signin" in err.message
    assert "5 per minute" in err.message


def test_limits_count_per_client_and_per_name(kv: KeyValueStore) -> None:
    """One client's hits never use up another client's, or another limit's, allowance."""
    limiter = _limiter(kv)
    for _ in range(5):
        limiter.hit("signin", "a")
    assert not limiter.hit("signin", "a").allowed
    assert limiter.hit("signin", "b").allowed
    assert limiter.hit("api", "a").allowed


def test_strict_limit_frees_up_after_its_window(kv: KeyValueStore) -> None:
    """A moving-window limit allows again once its hits are older than the window."""
    clock = FakeClock()
    limiter = _limiter(kv, clock=clock)
    assert limiter.hit("burst", "c").allowed
    assert limiter.hit("burst", "c").allowed
    assert not limiter.hit("burst", "c").allowed
    clock.advance(0.5)
    assert not limiter.hit("burst", "c").allowed
    clock.advance(0.6)
    assert limiter.hit("burst", "c").allowed


def test_reset_forgets_a_clients_hits(kv: KeyValueStore) -> None:
    """reset() (an admin unblock) lets a blocked client through again."""
    limiter = _limiter(kv)
    for name in ("signin", "api"):
        for _ in range(6):
            limiter.hit(name, "d")
        limiter.reset(name, "d")
        assert limiter.hit(name, "d").allowed


def test_unknown_limit_and_bad_rates_are_config_errors(kv: KeyValueStore) -> None:
    """An unconfigured name, an unparsable rate or a bad threshold raise ConfigError."""
    limiter = _limiter(kv)
    with pytest.raises(ConfigError, match="'nope' is not configured"):
        limiter.hit("nope", "x")
    with pytest.raises(ConfigError, match="'10/minute'"):
        RateLimiter(kv, {"signin": "ten a minute"})
    with pytest.raises(ConfigError, match="one rate"):
        RateLimiter(kv, {"signin": "1/second;10/minute"})
    with pytest.raises(ConfigError, match="warn_at"):
        RateLimiter(kv, warn_at=1.5)


def test_default_limits_match_the_settled_design(kv: KeyValueStore) -> None:
    """Defaults: sign-in and onboarding are strict; only the final setup submit is 5/hour."""
    limiter = RateLimiter(kv)
    assert dict(DEFAULT_LIMITS) == {
        "signin": "10/minute",
        "onboarding_setup": "5/hour",
        "onboarding_validate": "120/minute",
        "api": "600/minute",
    }
    assert {name for name, p in limiter.policies.items() if p.strict} == {
        "signin",
        "onboarding_setup",
        "onboarding_validate",
    }
    assert limiter.policy("onboarding_setup").window == 3600


# --- headers ------------------------------------------------------------------------------


def test_headers_carry_the_ietf_fields_and_retry_after_only_on_a_block() -> None:
    """Allowed: RateLimit-* fields; refused: the same plus Retry-After."""
    now = time.time()
    allowed = Decision("api", True, 600, 599, now + 30, 0, 60)
    out = headers(allowed)
    assert out["RateLimit-Limit"] == "600"
    assert out["RateLimit-Remaining"] == "599"
    assert 29 <= int(out["RateLimit-Reset"]) <= 30
    assert out["RateLimit-Policy"] == '"api";q=600;w=60'
    assert out["RateLimit"].startswith('"api";r=599;t=')
    assert "Retry-After" not in out
    refused = Decision("api", False, 600, 0, now + 12, 12, 60, "exceeded")
    assert headers(refused)["Retry-After"] == "12"
    assert headers(Decision("api", True, 600, 600, now, 0, 60, "allowlisted")) == {}


# --- warnings and blocks -----------------------------------------------------------------


def test_crossing_the_warning_threshold_logs_one_event_per_window(
    kv: KeyValueStore, events: list[Mapping[str, Any]]
) -> None:
    """At 80 % one ratelimit.warning is logged per (limit, client), however many hits follow."""
    limiter = _limiter(kv, limits={"signin": "10/minute"})
    for _ in range(7):
        limiter.hit("signin", "e")
    assert _kinds(events, "ratelimit.warning") == []
    for _ in range(8):
        limiter.hit("signin", "e")
    warnings = _kinds(events, "ratelimit.warning")
    assert len(warnings) == 1
    assert warnings[0]["limit"] == "signin"
    assert warnings[0]["client"] == "e"
    assert warnings[0]["used"] == 8
    for _ in range(9):
        limiter.hit("signin", "f")
    assert [w["client"] for w in _kinds(events, "ratelimit.warning")] == ["e", "f"]
    assert len(_kinds(events, "ratelimit.blocked")) == 1


def test_warning_is_logged_once_across_limiter_instances(
    kv: KeyValueStore, events: list[Mapping[str, Any]]
) -> None:
    """The once-per-window rule holds across limiters sharing a store (other processes)."""
    first, second = _limiter(kv), _limiter(kv)
    for limiter in (first, second, first, second, first, second):
        limiter.hit("signin", "g")
    assert len(_kinds(events, "ratelimit.warning")) == 1


def test_blocks_are_recorded_newest_first_and_capped(kv: KeyValueStore) -> None:
    """Refused hits are listed with limit, client, time and reason; only the newest N stay."""
    limiter = _limiter(kv, max_blocks=3)
    for _ in range(5):
        limiter.hit("signin", "h")
    assert limiter.recent_blocks() == []
    before = time.time()
    limiter.hit("signin", "h")
    for client in ("i", "j", "k"):
        for _ in range(6):
            limiter.hit("signin", client)
    blocks = limiter.recent_blocks()
    assert [b.client_key for b in blocks] == ["k", "j", "i"]
    assert {b.limit for b in blocks} == {"signin"}
    assert all(b.at >= before and b.reason == "limit exceeded" for b in blocks)
    assert [b.client_key for b in limiter.recent_blocks(limit=1)] == ["k"]
    assert blocks[0].as_dict()["client_key"] == "k"


# --- allowlist ----------------------------------------------------------------------------


def test_allowlisted_keys_and_networks_bypass_limits(kv: KeyValueStore) -> None:
    """Configured keys and CIDRs are never limited, and get no rate-limit headers."""
    limiter = _limiter(kv, allowlist=["10.1.0.0/16", "user:ops", "::1"])
    for _ in range(20):
        assert limiter.hit("signin", "10.1.2.3").allowed
        assert limiter.hit("signin", "user:ops").allowed
        assert limiter.hit("signin", "::1").allowed
    decision = limiter.hit("signin", "user:7", address="10.1.9.9")
    assert decision.outcome == "allowlisted"
    assert headers(decision) == {}
    assert limiter.recent_blocks() == []
    assert limiter.allowlist() == ["10.1.0.0/16", "user:ops", "::1"]


def test_runtime_allowlist_is_shared_through_the_store(kv: KeyValueStore) -> None:
    """An entry added at runtime applies to every limiter on the store; removal restores."""
    adder = _limiter(kv)
    other = _limiter(kv, allowlist_refresh=0)
    for _ in range(5):
        other.hit("signin", "192.0.2.10")
    assert not other.hit("signin", "192.0.2.10").allowed
    assert adder.add_to_allowlist(" 192.0.2.0/24 ") == "192.0.2.0/24"
    assert adder.add_to_allowlist("192.0.2.0/24") == "192.0.2.0/24"  # no duplicate
    assert other.hit("signin", "192.0.2.10").allowed
    assert other.allowlist() == ["192.0.2.0/24"]
    assert adder.remove_from_allowlist("192.0.2.0/24")
    assert not adder.remove_from_allowlist("192.0.2.0/24")
    assert not other.hit("signin", "192.0.2.10").allowed
    with pytest.raises(ConfigError):
        adder.add_to_allowlist("   ")


# --- client keys ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(first=st.text(min_size=1, max_size=300), second=st.text(min_size=1, max_size=300))
def test_any_client_key_is_counted_on_its_own(first: str, second: str) -> None:
    """Whatever a client key holds ('/', braces, unicode), it maps to its own safe counter."""
    limiter = RateLimiter(MemoryKV(), {"signin": "1/minute"})
    assert len(client_id(first)) == 32
    assert client_id(first).isalnum()
    assert limiter.hit("signin", first).allowed
    assert not limiter.hit("signin", first).allowed
    assert limiter.hit("signin", second).allowed is (first != second)


# --- concurrency ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["signin", "api"])
def test_parallel_hits_let_exactly_the_limit_through(kv: KeyValueStore, name: str) -> None:
    """50 simultaneous hits from one client against a limit of 5 allow exactly 5."""
    limiter = _limiter(kv)
    barrier = threading.Barrier(50)

    def hit(_: int) -> bool:
        barrier.wait()
        return limiter.hit(name, "203.0.113.5").allowed

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(hit, range(50)))
    assert results.count(True) == 5


# Each process imports only what a server process imports for rate limiting, so four of
# them start in well under a second (re-importing this test module would take seconds).
_PROCESS_CODE = """
import sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from paulyops.core.kv import RedisKV
from paulyops.core.security.ratelimit import RateLimiter

url, prefix, name, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
kv = RedisKV(url, prefix=prefix)
limiter = RateLimiter(kv, {"signin": "5/minute", "api": "5/day"}, strict={"signin"})
kv.ping()
barrier = threading.Barrier(10)

def hit(_):
    barrier.wait()
    return limiter.hit(name, "203.0.113.9").allowed

time.sleep(max(0.0, start_at - time.time()))
with ThreadPoolExecutor(max_workers=10) as pool:
    allowed = list(pool.map(hit, range(10))).count(True)
kv.close()
print(f"ALLOWED={allowed}")
"""


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("name", ["signin", "api"])
def test_processes_sharing_redis_let_exactly_the_limit_through(name: str) -> None:
    """4 processes x 10 threads hitting one client's limit of 5 on one Redis allow 5 in all."""
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    prefix = f"paulyops-test:{uuid.uuid4().hex[:12]}:"
    start_at = str(time.time() + 2.0)  # after every process has imported and connected
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_CODE, REDIS_URL, prefix, name, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        cleanup = RedisKV(REDIS_URL, prefix=prefix)
        keys = list(cleanup.client.scan_iter(match=prefix + "*"))
        if keys:
            cleanup.client.delete(*keys)
        cleanup.close()
    counts = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        counts.append(int(out.strip().splitlines()[-1].removeprefix("ALLOWED=")))
    assert sum(counts) == 5


# --- Redis outages ------------------------------------------------------------------------


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    """A TCP proxy in front of the test Redis that a test can switch off."""
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    host, port, _db = _redis_parts(REDIS_URL)
    with TcpProxy(host, port) as proxy:
        yield proxy


@pytest.mark.redis
def test_redis_outage_fails_strict_limits_closed_and_others_open(
    redis_proxy: TcpProxy, events: list[Mapping[str, Any]]
) -> None:
    """Redis down: sign-in gets ServiceUnavailableError, api passes uncounted; then it recovers."""
    _host, _port, db = _redis_parts(REDIS_URL or "")
    kv = RedisKV(
        f"redis://127.0.0.1:{redis_proxy.port}/{db or 0}",
        prefix=f"paulyops-test:{uuid.uuid4().hex[:12]}:",
        retries=1,
        socket_timeout=0.5,
    )
    try:
        limiter = _limiter(kv, outage_probe_interval=0.5)
        assert limiter.hit("signin", "m").allowed
        redis_proxy.disable()
        with pytest.raises(ServiceUnavailableError, match="signin is unavailable"):
            limiter.hit("signin", "m")
        for _ in range(10):
            decision = limiter.hit("api", "m")
            assert decision.allowed
            assert decision.outcome == "unavailable"
        assert headers(decision) == {}
        opened = [e for e in _kinds(events, "ratelimit.unavailable") if e["failed"] == "open"]
        closed = [e for e in _kinds(events, "ratelimit.unavailable") if e["failed"] == "closed"]
        assert len(opened) == 1
        assert len(closed) == 1
        # Within the probe interval checks do not even try Redis: no connection attempt
        # reaches the proxy (counted, not timed: this machine's clock is noisy).
        attempts = (redis_proxy.accepted, redis_proxy.refused)
        with pytest.raises(ServiceUnavailableError):
            limiter.hit("signin", "m")
        assert (redis_proxy.accepted, redis_proxy.refused) == attempts
        redis_proxy.enable()
        time.sleep(0.6)
        assert limiter.hit("signin", "m").remaining == 3
    finally:
        keys = list(kv.client.scan_iter(match=kv.prefix + "*"))
        if keys:
            kv.client.delete(*keys)
        kv.close()


@pytest.mark.redis
@pytest.mark.parametrize("name", ["signin", "api"])
def test_one_round_trip_check_agrees_with_limits_own_window(name: str) -> None:
    """The pipelined check reports what limits' own get_window_stats reports."""
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    kv = RedisKV(REDIS_URL, prefix=f"paulyops-test:{uuid.uuid4().hex[:12]}:")
    try:
        limiter = _limiter(kv)
        storage = RedisStorage(
            "redis://", connection_pool=kv.pool, key_prefix=kv.prefix + "ratelimit"
        )
        strategy = (
            MovingWindowRateLimiter(storage)
            if name in STRICT
            else SlidingWindowCounterRateLimiter(storage)
        )
        item = limiter.policy(name).item
        for expected_remaining in (4, 3, 2, 1, 0, 0):
            decision = limiter.hit(name, "n")
            stats = strategy.get_window_stats(item, client_id("n"))
            assert decision.remaining == stats.remaining == expected_remaining
            # limits' sliding counter says "now" when a TTL is a whole number of windows
            # (the millisecond after a first hit), where we say one window later.
            drift = abs(decision.reset_at - stats.reset_time) % item.get_expiry()
            assert min(drift, item.get_expiry() - drift) < 1.5
    finally:
        keys = list(kv.client.scan_iter(match=kv.prefix + "*"))
        if keys:
            kv.client.delete(*keys)
        kv.close()


def test_in_process_counting_starts_no_threads_and_still_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process hits start no timer thread; expired moving-window entries are swept."""
    from paulyops.core.security import ratecounters, ratelimit

    monkeypatch.setattr(ratecounters, "MEMORY_SWEEP_SECONDS", 0.05)
    clock = FakeClock()
    limiter = _limiter(MemoryKV(), limits={"api": "1000/minute", "burst": "2/second"}, clock=clock)
    limiter.hit("api", "warm-up")
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for i in range(200):
        limiter.hit("api", f"client-{i % 7}")
        limiter.hit("burst", f"client-{i % 7}")
    assert started == []
    storage = limiter._memory.storage if limiter._memory else None
    assert isinstance(storage, ratelimit.LazyMemoryStorage)
    assert storage.events, "the moving window keeps its entries meanwhile"
    clock.advance(1.1)  # the burst window (1 s) has passed
    limiter.hit("api", "late")  # a hit sweeps
    assert not any(storage.events.values()), "expired moving-window entries were dropped"
    assert limiter.hit("burst", "client-1").allowed


def test_limiters_sharing_an_in_process_store_must_share_its_clock() -> None:
    """Two clocks over one set of in-process counters would disagree: a ConfigError."""
    kv = MemoryKV()
    clock = FakeClock()
    _limiter(kv, clock=clock)
    _limiter(kv, clock=clock)  # the same clock is fine
    with pytest.raises(ConfigError, match="share its clock"):
        _limiter(kv)


@pytest.mark.parametrize("name", ["signin", "api"])
def test_window_reset_follows_the_given_clock(kv: KeyValueStore, name: str) -> None:
    """reset_at and the refusal's retry delay are measured on the limiter's clock."""
    clock = FakeClock(start=time.time() + 3600)  # an hour ahead of the real clock
    limiter = _limiter(kv, clock=clock)
    for _ in range(5):
        decision = limiter.hit(name, "clocked")
        assert clock.now <= decision.reset_at <= clock.now + decision.window + 1
    refused = limiter.hit(name, "clocked")
    assert not refused.allowed
    assert 1 <= refused.retry_after <= refused.window


@pytest.mark.redis
@pytest.mark.parametrize("name", ["signin", "api"])
def test_a_check_script_redis_does_not_know_is_loaded_and_counted_once(name: str) -> None:
    """NOSCRIPT (a restarted Redis) runs nothing: the script is loaded, the hit counted once."""
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    kv = RedisKV(REDIS_URL, prefix=f"paulyops-test:{uuid.uuid4().hex[:12]}:")
    try:
        limiter = _limiter(kv)
        counters = limiter._redis
        assert counters is not None
        known = dict(counters._shas)
        counters._shas = dict.fromkeys(known, "0" * 40)  # a sha no Redis holds
        assert limiter.hit(name, "o").remaining == 4
        reloaded = [script for script, sha in counters._shas.items() if sha == known[script]]
        assert len(reloaded) == 1  # the script of this limit's strategy, loaded again
        assert limiter.hit(name, "o").remaining == 3
    finally:
        keys = list(kv.client.scan_iter(match=kv.prefix + "*"))
        if keys:
            kv.client.delete(*keys)
        kv.close()
