"""Validating a package against the bare minimum: a streamed read + sha256 of every entry.

Run: ``uv run python bench/package_validate.py``. One signed package of 500 files, 5 MB in
all (random bytes, so nothing compresses), validated in full (archive safety, canonical
form, checksums, manifest, signature, compatibility, dependencies) next to reading every
entry of the same archive through :mod:`zipfile` in 64 KiB chunks and hashing it. Rounds
interleave the two sides and the median ratio is printed (aim: validation <= 2x the
baseline). The script reports; it asserts nothing about wall time.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from paulyops.core.security.signatures import generate_key
from paulyops.services.marketplace.build import assemble
from paulyops.services.marketplace.validate import TrustedKey, validate_package

FILES = 500
TOTAL_BYTES = 5 * 1024 * 1024
ROUNDS = 15
AIM = 2.0
MANIFEST = b"""\
id = "bench.agent"
name = "Bench"
version = "1.0.0"
description = "A package for the benchmark."
publisher = "bench"
license = "MIT"
entrypoint = "agent:handle"
[compatibility]
paulyops = ">=0.1"
"""


def make_package(path: Path) -> TrustedKey:
    """Write the benchmark package; return the key that trusts it."""
    key = generate_key()
    size = (TOTAL_BYTES - len(MANIFEST)) // (FILES - 2)
    files = {"manifest.toml": MANIFEST, "agent.py": b"def handle(ctx, item):\n    return None\n"}
    for i in range(FILES - 2):
        files[f"data/part{i:03}.bin"] = os.urandom(size)
    path.write_bytes(assemble(files, key))
    return TrustedKey(key=key.public_key(), publisher="bench")


def baseline(path: Path) -> None:
    """Stream every entry through zipfile and sha256 it."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            digest = hashlib.sha256()
            with zf.open(info) as entry:
                while chunk := entry.read(64 * 1024):
                    digest.update(chunk)


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pauly"
        trusted = make_package(path)
        report = validate_package(path, trusted=[trusted])
        assert report.is_ok, report.checks
        base_times, validate_times = [], []
        for round_ in range(ROUNDS):
            sides = [
                ("base", lambda: baseline(path)),
                ("validate", lambda: validate_package(path, trusted=[trusted])),
            ]
            if round_ % 2:
                sides.reverse()
            for name, func in sides:
                (base_times if name == "base" else validate_times).append(timed(func))
        base = statistics.median(base_times)
        full = statistics.median(validate_times)
        size = path.stat().st_size
    print(f"package: {FILES} files, {size / 1e6:.2f} MB archive")
    print(f"streamed read + sha256: {base * 1000:.1f} ms (median of {ROUNDS})")
    print(f"full validation:        {full * 1000:.1f} ms (median of {ROUNDS})")
    print(f"ratio: {full / base:.2f}x (aim <= {AIM}x)")


if __name__ == "__main__":
    main()
