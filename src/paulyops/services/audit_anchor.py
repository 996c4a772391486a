"""The server anchors the audit chains' tails by itself: a signed checkpoint on an interval.

Without a checkpoint, the newest audit rows can be deleted straight in the database and
:func:`~paulyops.services.audit.verify` cannot tell (the chain that is left is valid). A
cron job running ``paulyops audit checkpoint`` is what a non-technical admin never sets
up, so every server process runs an :class:`AuditAnchor`: every
``PAULYOPS_AUDIT_CHECKPOINT_INTERVAL_S`` seconds (default 300) it signs the head of each
chain that has rows after its newest checkpoint, and once more when the server shuts
down. Provisioning anchors its own rows in its transaction (``provision()``).
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import SQLAlchemyError

from paulyops.core.db.engine import Database
from paulyops.core.errors import PaulyOpsError
from paulyops.core.logging import get_logger
from paulyops.core.settings import Settings
from paulyops.services import audit

log = get_logger("paulyops.audit")


class AuditAnchor:
    """Sign new chain heads every ``interval`` seconds, and once more at :meth:`stop`.

    Args:
        db: the database.
        key: the instance's checkpoint signing key.
        interval: seconds between rounds; 0 signs only at :meth:`stop`.
    """

    def __init__(self, db: Database, key: Ed25519PrivateKey, *, interval: float) -> None:
        self.db = db
        self.key = key
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background rounds (no thread when the interval is 0)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="audit-anchor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> int:
        """Sign every chain with unanchored rows; return how many checkpoints were written.

        A failure (database away, key missing) is logged and retried next round: it must
        never take the server down.
        """
        try:
            written = audit.checkpoint_unanchored(self.db, self.key)
        except (SQLAlchemyError, PaulyOpsError) as err:
            log.warning("audit_anchor_failed", error=type(err).__name__)
            return 0
        if written:
            log.info("audit_anchored", chains=len(written))
        return len(written)

    def stop(self) -> None:
        """Stop the rounds and sign what is still unanchored (graceful shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.run_once()


def start_anchor(db: Database, settings: Settings) -> AuditAnchor | None:
    """Start the anchor of a server process; ``None`` without an instance key (logged)."""
    key = audit.checkpoint_key(settings)
    if key is None:
        log.warning("audit_anchor_off", reason="PAULYOPS_INSTANCE_KEY is not set")
        return None
    anchor = AuditAnchor(db, key, interval=settings.audit_checkpoint_interval_s)
    anchor.start()
    return anchor


__all__ = ["AuditAnchor", "start_anchor"]
