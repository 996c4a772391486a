"""Slot uids: one host uid per concurrent run, reserved with a file lock across processes.

RLIMIT_NPROC counts per host uid, so runs that shared a uid would share one process
limit (and could signal each other): each concurrent run takes its own uid from
``PAULYOPS_SANDBOX_UIDS``. The lock is an ``flock`` on ``<root>/slots/<uid>.lock``,
released when the run ends or its process dies.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paulyops.core.errors import SandboxError


@contextmanager
def reserve_slot(root: Path, uid_range: tuple[int, int], *, wait_s: float) -> Iterator[int]:
    """Hold one free slot uid for the ``with`` block.

    Raises:
        SandboxError: every slot stayed busy for ``wait_s`` seconds.
    """
    slots = root / "slots"
    slots.mkdir(mode=0o755, parents=True, exist_ok=True)
    first, last = uid_range
    uids = list(range(first, last + 1))
    start = random.randrange(len(uids))  # noqa: S311  # not a secret: it only spreads concurrent runs over the range
    order = uids[start:] + uids[:start]
    deadline = time.monotonic() + wait_s
    while True:
        for uid in order:
            fd = os.open(slots / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if time.monotonic() >= deadline:
            raise SandboxError(
                f"sandbox: all {len(uids)} slot uids ({first}-{last}) stayed busy for "
                f"{wait_s:g} s; raise PAULYOPS_SANDBOX_UIDS or lower the concurrency"
            )
        time.sleep(0.05)
