"""The key-value store: same behaviour in process and on Redis."""

from __future__ import annotations

import threading
import time

import pytest

from paulyops.core.kv import KeyValueStore, MemoryKV, RedisKV, create_kv
from tests.support.clock import FakeClock


def test_set_get_delete(kv):
    """Values round-trip and can be deleted."""
    assert kv.get("missing") is None
    assert kv.set("a", "1")
    assert kv.get("a") == "1"
    kv.delete("a")
    assert kv.get("a") is None


def test_only_new_does_not_overwrite(kv):
    """set(only_new=True) stores only when the key is absent."""
    assert kv.set("once", "first", only_new=True)
    assert not kv.set("once", "second", only_new=True)
    assert kv.get("once") == "first"


def test_ttl_expires(kv):
    """A value with a TTL disappears after it.

    The in-process store runs on a fake clock; Redis expires keys on its own clock, so its
    variant waits for real (0.35 s).
    """
    if isinstance(kv, MemoryKV):
        clock = FakeClock()
        kv = MemoryKV(clock=clock)
        kv.set("short", "x", ttl=0.2)
        clock.advance(0.15)
        assert kv.get("short") == "x"
        clock.advance(0.2)
    else:
        kv.set("short", "x", ttl=0.2)
        time.sleep(0.35)
    assert kv.get("short") is None


def test_incr_is_atomic_under_threads(kv):
    """Concurrent increments from many threads are never lost."""

    def bump():
        for _ in range(50):
            kv.incr("counter", ttl=30)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kv.get("counter") == "400"


def test_lock_excludes_concurrent_holders(kv):
    """Only one holder of a named lock runs at a time."""
    inside = []
    overlaps = []

    def work():
        with kv.lock("job", ttl=5, wait=5):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(0.02)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_ping_and_protocol(kv):
    """Both stores satisfy the protocol and answer ping."""
    assert isinstance(kv, KeyValueStore)
    assert kv.ping() >= 0


def test_create_kv_picks_backend():
    """Without REDIS_URL the in-process store is used; with it, Redis."""
    assert isinstance(create_kv(None), MemoryKV)
    store = create_kv("redis://127.0.0.1:1/0")
    assert isinstance(store, RedisKV)
    store.close()


def test_unreachable_redis_raises_clear_error():
    """Commands against an unreachable Redis raise KVUnavailableError and count errors."""
    from paulyops.core.kv import KVUnavailableError

    store = RedisKV("redis://127.0.0.1:1/0", retries=1, socket_timeout=0.2)
    with pytest.raises(KVUnavailableError, match="unreachable"):
        store.get("x")
    details = store.pool_details()
    assert details["errors"] == 1
    assert details["state"] == "unhealthy"
    store.close()
