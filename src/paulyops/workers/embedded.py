"""The embedded job runner: worker threads inside the server process (no broker configured).

Threads claim batches (``services/agents/jobs.claim``) and hand them to the
:class:`~paulyops.services.agents.execute.JobExecutor`. They sleep on a condition and are
woken by :meth:`EmbeddedRunner.wake`, which the job store calls after every enqueue
commits; a sleeping thread also wakes when the next retry becomes due, and once a
``sweep_s`` as a safety net (jobs enqueued by another process, e.g. the CLI). At start
the threads look for work at once, so jobs left queued by a previous run are picked up;
jobs that were *running* when the process died come back when the reaper sees their
lease expire.

:meth:`EmbeddedRunner.stop` is graceful: no new claims, running batches get ``grace_s``
to finish, and the jobs of a batch still running after that are handed back (their
lease released, so any worker can take them at once; a late result is discarded).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from paulyops.core.db.engine import Database
from paulyops.core.db.models import utcnow
from paulyops.core.logging import get_logger
from paulyops.services.agents import jobs
from paulyops.services.agents.execute import JobExecutor
from paulyops.services.agents.jobs import Claim, JobPolicy
from paulyops.services.agents.scheduler import process_owner

log = get_logger("paulyops.workers.embedded")

# Jobs enqueued by another process (the CLI, another server process) have no one to wake
# this runner: the sweep finds them. A sweep is one indexed query.
DEFAULT_SWEEP_S = 5.0


class EmbeddedRunner:
    """Worker threads that run agent jobs in this process.

    Args:
        db: the database.
        executor: runs one claimed batch.
        policy: lease and retry policy.
        concurrency: threads (batches at once).
        grace_s: seconds running batches get at :meth:`stop`.
        sweep_s: longest sleep without a wake-up (the safety sweep).
    """

    def __init__(
        self,
        db: Database,
        executor: JobExecutor,
        *,
        policy: JobPolicy,
        concurrency: int = 2,
        grace_s: float = 30.0,
        sweep_s: float = DEFAULT_SWEEP_S,
    ) -> None:
        self.db = db
        self.executor = executor
        self.policy = policy
        self.concurrency = max(1, concurrency)
        self.grace_s = grace_s
        self.sweep_s = sweep_s
        self.owner = process_owner("embedded")
        self._cond = threading.Condition()
        self._generation = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._inflight: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self.batches_run = 0

    # --- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the threads and make this runner hear of every enqueue on ``db``."""
        if self._threads:
            return
        self._stopping = False
        jobs.set_dispatcher(self.db, self._dispatched)
        for n in range(self.concurrency):
            thread = threading.Thread(
                target=self._loop, args=(f"{self.owner}:{n}",), name=f"jobs-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        log.info("embedded_runner_started", threads=self.concurrency)

    def wake(self) -> None:
        """Tell sleeping threads there may be work (cheap; safe from any thread)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _dispatched(self, _installation_id: str, _job_ids: Sequence[str]) -> None:
        self.wake()

    def stop(self, grace_s: float | None = None) -> list[str]:
        """Stop claiming, let running batches finish within the grace, hand the rest back.

        Returns:
            The ids of jobs handed back to the queue.
        """
        grace = self.grace_s if grace_s is None else grace_s
        jobs.set_dispatcher(self.db, None)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        handed_back: list[str] = []
        with self._lock:
            leftovers = list(self._inflight.values())
        for claim in leftovers:
            try:
                handed_back += jobs.release(self.db, claim.job_ids, owner=claim.owner, started=True)
            except Exception:  # then the reaper brings them back when the lease expires
                log.exception("embedded_handback_failed", owner=claim.owner)
        if handed_back:
            log.warning("embedded_jobs_handed_back", jobs=handed_back, grace_s=grace)
        self._threads = [t for t in self._threads if t.is_alive()]
        log.info("embedded_runner_stopped", handed_back=len(handed_back))
        return handed_back

    @property
    def running(self) -> int:
        """Batches running now."""
        with self._lock:
            return len(self._inflight)

    # --- the threads ----------------------------------------------------------------------
    def _loop(self, owner: str) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                generation = self._generation
            claim = self._claim(owner)
            if claim is not None:
                self._run(owner, claim)
                continue
            timeout = self._sleep_for()
            with self._cond:
                if not self._stopping and self._generation == generation:
                    self._cond.wait(timeout)

    def _claim(self, owner: str) -> Claim | None:
        try:
            return jobs.claim(self.db, owner=owner, policy=self.policy)
        except Exception:  # the database is down: sleep, then try again
            log.warning("embedded_claim_failed", exc_info=True)
            return None

    def _run(self, owner: str, claim: Claim) -> None:
        with self._lock:
            self._inflight[owner] = claim
        try:
            self.executor.run(claim)
        except Exception:  # one broken batch must not end the thread; its leases expire
            log.exception("embedded_batch_failed", installation=claim.installation_id)
        finally:
            with self._lock:
                self._inflight.pop(owner, None)
                self.batches_run += 1

    def _sleep_for(self) -> float:
        """Sleep until the next retry is due, at most ``sweep_s``."""
        try:
            due = jobs.next_due_at(self.db)
        except Exception:  # the database is down: the sweep interval decides
            return self.sweep_s
        if due is None:
            return self.sweep_s
        seconds = (due - utcnow()).total_seconds()
        return min(self.sweep_s, max(0.05, seconds))


__all__ = ["DEFAULT_SWEEP_S", "EmbeddedRunner"]
