"""A clock that tests move by hand, for code that takes a ``clock`` callable."""

from __future__ import annotations

import time


class FakeClock:
    """Return a time that only :meth:`advance` moves.

    Args:
        start: the first reading; defaults to the real wall clock's, so values stored
            elsewhere (Redis TTLs, signed timestamps) stay plausible.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds
