"""Throughput of a rate-limit check against a bare Redis PING, at the same concurrency.

Run: ``PAULYOPS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 uv run python bench/ratelimit_check.py``.

A check (:meth:`RateLimiter.hit`) is one Redis command (one script that counts the hit
and reads the window, sent with redis-py's ``evalsha``) plus the Python around it, so
its throughput is measured against the cheapest possible round trip, PING, with the same
number of threads sharing the same connection pool. The aim is a ratio >= 0.5 for both
the sliding-window counter (``api``) and the exact moving window (``signin``). Client
keys rotate over many addresses, as real traffic does, so the checks take the allowed
path.

The in-process variant compares a check on the embedded store with ``MemoryKV.incr``
(the cheapest in-process shared-state operation) and with a Redis PING, when Redis is
configured. Sides alternate over several rounds and the median ratio is reported. The
script prints; it asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable

from paulyops.core.kv import KeyValueStore, MemoryKV, RedisKV
from paulyops.core.logging import configure_logging
from paulyops.core.security.ratelimit import RateLimiter

CONCURRENCY = (1, 8, 32)
ROUNDS = 5
SECONDS_PER_SIDE = 0.5
AIM = 0.5
# Generous limits: the bench measures the cost of a check, not of refusing.
LIMITS = {"api": "1000000/minute", "signin": "1000/minute"}
KEYS_PER_THREAD = 5000

Call = Callable[[int, int], object]  # (thread index, call number) -> anything


def throughput(call: Call, threads: int, seconds: float) -> float:
    """Return calls per second of ``call`` run by ``threads`` threads for ``seconds``."""
    stop = threading.Event()
    counts = [0] * threads
    ready = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        done = 0
        ready.wait()
        while not stop.is_set():
            call(index, done)
            done += 1
        counts[index] = done

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - start)


def ratios(baseline: Call, sides: dict[str, Call], threads: int) -> dict[str, float]:
    """Return, per side, the median over rounds of (its throughput / the baseline's)."""
    per_side: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        base = throughput(baseline, threads, SECONDS_PER_SIDE)
        for name, call in sides.items():
            per_side[name].append(throughput(call, threads, SECONDS_PER_SIDE) / base)
    return {name: statistics.median(values) for name, values in per_side.items()}


def key_table(threads: int) -> list[list[str]]:
    """Return per-thread client keys (addresses), so each key sees few hits."""
    return [
        [f"10.{t}.{n // 250}.{n % 250}" for n in range(KEYS_PER_THREAD)] for t in range(threads)
    ]


def check_calls(limiter: RateLimiter, keys: list[list[str]]) -> dict[str, Call]:
    """Return one check per limit, rotating client keys per thread."""

    def api(index: int, n: int) -> object:
        return limiter.hit("api", keys[index][n % KEYS_PER_THREAD])

    def signin(index: int, n: int) -> object:
        return limiter.hit("signin", keys[index][n % KEYS_PER_THREAD])

    return {"check api (sliding counter)": api, "check signin (moving window)": signin}


def cleanup(kv: RedisKV) -> None:
    """Delete every key the bench wrote."""
    batch = list(kv.client.scan_iter(match=kv.prefix + "*", count=1000))
    while batch:
        kv.client.delete(*batch[:1000])
        batch = batch[1000:]


def report(title: str, results: dict[str, float], *, aim: float | None) -> None:
    """Print one concurrency level's ratios."""
    print(title)
    for name, ratio in results.items():
        verdict = "" if aim is None else ("  ok" if ratio >= aim else f"  below the {aim} aim")
        print(f"  {name:<32} {ratio:6.2f}{verdict}")


def bench_redis(url: str) -> None:
    """Checks on Redis against PING on the same pool."""
    kv = RedisKV(url, prefix=f"paulyops-bench:{uuid.uuid4().hex[:8]}:")
    limiter = RateLimiter(kv, LIMITS, strict={"signin"})
    try:
        kv.ping()
        for threads in CONCURRENCY:
            calls = check_calls(limiter, key_table(threads))
            for call in calls.values():
                call(0, 0)  # loads the scripts into Redis's cache
            results = ratios(_pinger(kv), calls, threads)
            report(f"Redis, {threads} thread(s): throughput / PING", results, aim=AIM)
    finally:
        cleanup(kv)
        kv.close()


def _pinger(kv: RedisKV) -> Call:
    ping = kv.client.ping
    return lambda _i, _n: ping()


def bench_memory(url: str | None) -> None:
    """Checks on the embedded store against MemoryKV.incr (and Redis PING, if configured)."""
    kv: KeyValueStore = MemoryKV()
    limiter = RateLimiter(kv, LIMITS, strict={"signin"})
    redis_kv = RedisKV(url, prefix="paulyops-bench-unused:") if url else None
    try:
        for threads in CONCURRENCY:
            calls = check_calls(limiter, key_table(threads))
            results = ratios(lambda _i, _n: kv.incr("bench:counter"), calls, threads)
            report(
                f"in-process, {threads} thread(s): throughput / MemoryKV.incr", results, aim=None
            )
            if redis_kv is not None:
                results = ratios(_pinger(redis_kv), calls, threads)
                report(
                    f"in-process, {threads} thread(s): throughput / Redis PING", results, aim=None
                )
    finally:
        if redis_kv is not None:
            redis_kv.close()


def main() -> None:
    """Run the in-process bench, and the Redis bench when PAULYOPS_TEST_REDIS_URL is set."""
    configure_logging(level="WARNING")
    url = os.environ.get("PAULYOPS_TEST_REDIS_URL")
    if url:
        bench_redis(url)
    else:
        print("Redis bench skipped: set PAULYOPS_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    bench_memory(url)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
