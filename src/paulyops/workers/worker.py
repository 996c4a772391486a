"""The ``paulyops worker`` process: a Celery worker that runs agent jobs from the database.

It needs only the database, the broker and the instance settings: packages come from
the database (``agent_packages.archive``, checked against their sha256 in this machine's
cache) and inputs from the database or a shared storage connection, never a disk shared
with the server.

SIGTERM is a warm shutdown: no new tasks; running batches get ``PAULYOPS_WORKER_GRACE_S``
to finish; after that their jobs are handed back (leases released, due again, sent again
by the scheduler's sweep) and the process exits. Nothing is lost and, since a completion
needs the lease, nothing completes twice.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

from paulyops.core.files import make_private_dir
from paulyops.core.instance import Instance
from paulyops.core.logging import get_logger
from paulyops.core.settings import Settings
from paulyops.services.agents.jobs import JobPolicy
from paulyops.services.agents.scheduler import process_owner
from paulyops.workers.celery_app import (
    WorkerState,
    check_timeouts,
    create_celery,
    set_worker_state,
    worker_argv,
)
from paulyops.workers.runtime import build_executor, start_scheduler

log = get_logger("paulyops.workers.worker")

# The worker touches <data dir>/run/worker-<hostname>.alive this often while it runs; a
# container health check (compose.yaml) calls it dead after a minute without a touch.
ALIVE_INTERVAL_S = 15.0


def alive_file(settings: Settings) -> Path:
    """The liveness file of a worker on this host."""
    return settings.data_dir / "run" / f"worker-{socket.gethostname()}.alive"


def _keep_alive(path: Path, stop: threading.Event) -> None:
    make_private_dir(path.parent)
    while True:
        try:
            path.touch()
        except OSError:  # a full or read-only disk: the health check will say so
            log.warning("worker_alive_file_failed", path=str(path))
        if stop.wait(ALIVE_INTERVAL_S):
            return


def _grace_timer(state: WorkerState, grace_s: float) -> Any:
    """On the first shutdown signal, start the grace period's clock."""
    started = threading.Event()

    def expire() -> None:
        released = state.hand_back()
        log.warning("worker_grace_expired", handed_back=released, grace_s=grace_s)
        # Celery would keep waiting for the running tasks; their jobs are back in the queue.
        os._exit(1)

    def on_shutdown(**_kwargs: Any) -> None:
        if started.is_set():
            return
        started.set()
        log.info("worker_warm_shutdown", grace_s=grace_s)
        timer = threading.Timer(grace_s, expire)
        timer.daemon = True
        timer.start()

    return on_shutdown


def run_worker(settings: Settings, *, concurrency: int | None = None) -> None:
    """Run a Celery worker for agent jobs until it is stopped.

    Raises:
        ConfigError: no broker, a redelivery timeout not above the task time limit, or a
            build without the sandbox.
    """
    from celery.signals import worker_shutting_down

    check_timeouts(settings)
    instance = Instance(settings)
    instance.start(background=False)
    try:
        executor = build_executor(instance.db, settings)
        state = WorkerState(
            db=instance.db,
            executor=executor,
            policy=JobPolicy.from_settings(settings),
            owner=process_owner("worker"),
        )
        set_worker_state(state)
        handler = _grace_timer(state, settings.worker_grace_s)
        worker_shutting_down.connect(handler, weak=False)
        scheduler = start_scheduler(instance.db, settings, role="worker", broker=True)
        stop_alive = threading.Event()
        threading.Thread(
            target=_keep_alive, args=(alive_file(settings), stop_alive), daemon=True
        ).start()
        try:
            app = create_celery(settings)
            log.info("worker_starting", queue=settings.celery_queue)
            app.worker_main(worker_argv(settings, concurrency=concurrency))
        finally:
            stop_alive.set()
            scheduler.stop()
            worker_shutting_down.disconnect(handler)
            set_worker_state(None)
    finally:
        instance.close()


__all__ = ["ALIVE_INTERVAL_S", "alive_file", "run_worker"]
