"""Throughput of key-ring encryption against raw AES-GCM on the same payloads.

Run: ``uv run python bench/crypto_encrypt.py``. Every side draws a fresh 12-byte nonce per
call and uses the same associated data. Two baselines:

* ``raw`` keeps the nonce with its ciphertext (``nonce + AESGCM.encrypt(...)``), as any
  real storage of GCM output must; the ratio against it is what the key ring costs in
  practice (the aim is >= 0.9);
* ``bare`` throws the nonce away: the ring's full cost, including the one extra copy of
  the ciphertext that joining header and output takes.

Timings interleave the sides and keep the best of several repeats, so background noise
hits all alike. The script reports; it asserts nothing about wall time.
"""

from __future__ import annotations

import os
import statistics
import timeit
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paulyops.core.security.crypto import Aad, KeyRing

PAYLOAD_SIZES = (64, 1024, 16 * 1024, 256 * 1024)
ROUNDS = 31
ROUND_SECONDS = 0.01  # per side and round: short rounds, many of them, a few seconds in all
AIM = 0.9


def per_call_ratios(funcs: list[Callable[[], bytes]]) -> list[float]:
    """Return, per function, its median over rounds of (first function's time / its time).

    Each round times every function back to back, in rotating order, so a burst of
    background load hits a round's sides alike; the median drops the rounds it did not.
    """
    number, elapsed = timeit.Timer(funcs[0]).autorange()
    number = max(1, int(number * ROUND_SECONDS / max(elapsed, 1e-9)))
    ratios: list[list[float]] = [[] for _ in funcs]
    for round_no in range(ROUNDS):
        order = list(range(len(funcs)))
        shift = round_no % len(order)
        order = order[shift:] + order[:shift]
        times = [0.0] * len(funcs)
        for index in order:
            times[index] = timeit.timeit(funcs[index], number=number)
        for index, seconds in enumerate(times):
            ratios[index].append(times[0] / seconds)
    return [statistics.median(r) for r in ratios]


def measure(size: int) -> tuple[float, float]:
    """Return the ring's throughput relative to (raw, bare) for a ``size``-byte payload."""
    key = os.urandom(32)
    aead = AESGCM(key)
    ring = KeyRing(key)
    aad = Aad("storage_configs", "stor_01JBENCHMARK00000000000000", "credentials")
    aad_bytes = aad.encoded
    payload = os.urandom(size)

    def raw_encrypt() -> bytes:
        nonce = os.urandom(12)
        return nonce + aead.encrypt(nonce, payload, aad_bytes)

    def bare_encrypt() -> bytes:
        return aead.encrypt(os.urandom(12), payload, aad_bytes)

    def ring_encrypt() -> bytes:
        return ring.encrypt(payload, aad=aad)

    assert ring.decrypt(ring_encrypt(), aad=aad) == payload  # same work, not a shortcut
    # Times relative to the ring's: ring_time / bare_time and ring_time / raw_time.
    bare_rel, raw_rel = per_call_ratios([ring_encrypt, bare_encrypt, raw_encrypt])[1:]
    # Equal work per call, so a time ratio inverted is the throughput ratio ring / other.
    return 1 / raw_rel, 1 / bare_rel


def main() -> None:
    """Print the ring/raw and ring/bare throughput ratios per payload size."""
    print(f"{'payload':>9} {'ring/raw':>9} {'ring/bare':>10}")
    ratios = []
    for size in PAYLOAD_SIZES:
        vs_raw, vs_bare = measure(size)
        ratios.append(vs_raw)
        mark = "" if vs_raw >= AIM else f"  below the {AIM} aim"
        print(f"{size:>9} {vs_raw:>9.3f} {vs_bare:>10.3f}{mark}")
    print(f"throughput ratio key ring / raw AES-GCM (lowest): {min(ratios):.3f} (aim >= {AIM})")


if __name__ == "__main__":
    main()
