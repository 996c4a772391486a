"""Reload a running process's key ring when ``.env.local`` changes (or on SIGHUP).

``paulyops keys rotate`` rewrites ``.env.local`` while servers keep running. Each server
holds one :class:`~paulyops.core.security.crypto.KeyRing`; :class:`KeyRingWatcher`
compares the file's ``stat`` (inode, size, modification time) at most once per
``min_interval`` and, when it changed, builds a new ring from the settings exactly as a
start would (environment first, then the file) and swaps it into the running ring with
:meth:`KeyRing.adopt <paulyops.core.security.crypto.KeyRing.adopt>`. Only the key ring
is reloaded; every other setting still needs a restart.

A file caught half-written (an editor that does not replace atomically) fails to parse:
the old ring stays and the next check tries again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from paulyops.core.errors import ConfigError
from paulyops.core.logging import get_logger
from paulyops.core.security.crypto import KeyRing
from paulyops.core.settings import ENV_FILE_NAME, load_settings

log = get_logger("paulyops.keywatch")

# A stat per second costs microseconds and bounds how long a rotated key goes unused.
DEFAULT_CHECK_INTERVAL = 1.0

Signature = tuple[int, int, int] | None
_NEVER = object()  # no failed reload yet


class KeyRingWatcher:
    """Keep ``ring`` in step with ``<root>/.env.local``.

    Args:
        ring: the running process's ring; it is updated in place.
        root: the instance root holding ``.env.local``.
        environ: the environment the settings were read from (default ``os.environ``).
        min_interval: at most one ``stat`` of the file per this many seconds.
        clock: a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        ring: KeyRing,
        root: Path,
        *,
        environ: Mapping[str, str] | None = None,
        min_interval: float = DEFAULT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ring = ring
        self.root = root
        self.path = root / ENV_FILE_NAME
        self._environ = environ
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._checked_at = clock()
        self._requested = False
        self._failed: Signature | object = _NEVER

    def _stat(self) -> Signature:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def request_reload(self) -> None:
        """Ask for a reload at the next :meth:`maybe_reload` (safe in a signal handler)."""
        self._requested = True

    def maybe_reload(self) -> bool:
        """Reload when asked to or when the file changed; return whether the ring changed."""
        now = self._clock()
        if not self._requested and now - self._checked_at < self._min_interval:
            return False
        with self._lock:
            self._checked_at = now
            requested, self._requested = self._requested, False
            if requested:
                log.info("keyring_reload_requested", env_file=str(self.path))
            signature = self._stat()
            if not requested and signature == self._signature:
                return False
            return self._reload(signature, reason="signal" if requested else "file changed")

    def _reload(self, signature: Signature, *, reason: str) -> bool:
        before = (self.ring.active_key_id, self.ring.key_ids)
        try:
            environ = None if self._environ is None else dict(self._environ)
            fresh = KeyRing.from_settings(load_settings(root=self.root, environ=environ))
        except (ConfigError, ValueError) as err:
            # Keep the old signature: the next check tries again (a half-written file),
            # but say so once per version of the file, not every second.
            if signature != self._failed:
                message = err.message if isinstance(err, ConfigError) else type(err).__name__
                log.warning("keyring_reload_failed", reason=reason, error=message)
                self._failed = signature
            return False
        self._signature = signature
        self.ring.adopt(fresh)
        after = (self.ring.active_key_id, self.ring.key_ids)
        if after == before:
            return False
        log.info(
            "keyring_reloaded",
            reason=reason,
            active_key_id=after[0],
            previous_active_key_id=before[0],
            key_ids=list(after[1]),
        )
        return True


__all__ = ["DEFAULT_CHECK_INTERVAL", "KeyRingWatcher"]
