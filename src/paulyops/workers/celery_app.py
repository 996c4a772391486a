"""Agent jobs on Celery (``CELERY_BROKER_URL``: Redis or RabbitMQ), run by ``paulyops worker``.

A task carries job ids, never inputs: the worker claims them from the database the same
way the embedded runner does (a conditional update with a lease), so a redelivered
message can never complete a job twice. The settings that keep a job from being lost or
run in a loop:

* ``acks_late=True`` with ``task_reject_on_worker_lost=True``: a message is acknowledged
  only after its task returned, so a killed worker's message is delivered again;
* prefetch 1: a worker holds no messages it is not running;
* the JSON serializer only (as root, Celery refuses pickle; and it is safer anyway);
* **Redis**: an unacknowledged message comes back after ``visibility_timeout``; if that
  were shorter than the task time limit, a long run would be delivered twice while
  running. :func:`check_timeouts` refuses to start a worker unless it is longer;
* **RabbitMQ**: the broker closes a channel whose message stays unacknowledged longer
  than its ``consumer_timeout`` (30 min by default), which 3.10 cannot report to a
  client: ``PAULYOPS_AMQP_CONSUMER_TIMEOUT_S`` states it (default 1800) and must exceed
  the task time limit (docs/agents/jobs.md says how to raise the broker's setting).

A job whose run always kills its worker is not redelivered for ever: every claim counts
an attempt, and the reaper ends it ``dead`` after ``max_attempts``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from celery import Celery

from paulyops.core.db.engine import Database
from paulyops.core.errors import ConfigError
from paulyops.core.logging import get_logger
from paulyops.core.settings import Settings
from paulyops.services.agents import jobs
from paulyops.services.agents.execute import JobExecutor
from paulyops.services.agents.jobs import Claim, JobPolicy
from paulyops.services.agents.runtime import MAX_BATCH

log = get_logger("paulyops.workers.celery")

TASK_NAME = "paulyops.jobs.run"


def broker_kind(url: str) -> str:
    """Return ``redis`` or ``amqp`` for a broker URL."""
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "amqp"
    raise ConfigError(f"CELERY_BROKER_URL: expected redis:// or amqp://, got {scheme}://")


def check_timeouts(settings: Settings) -> None:
    """Refuse a broker set-up that would deliver a running job a second time.

    Raises:
        ConfigError: no broker, or its redelivery timeout does not exceed the task time
            limit (naming both settings).
    """
    url = settings.celery_broker_url
    if not url:
        raise ConfigError(
            "CELERY_BROKER_URL is not set: without a broker, agent jobs run on worker "
            "threads inside `paulyops serve` and no worker process is needed"
        )
    limit = settings.celery_task_time_limit_s
    if broker_kind(url) == "redis":
        if settings.redis_visibility_timeout_s <= limit:
            raise ConfigError(
                f"PAULYOPS_REDIS_VISIBILITY_TIMEOUT_S ({settings.redis_visibility_timeout_s:g} s) "
                f"must be longer than PAULYOPS_CELERY_TASK_TIME_LIMIT_S ({limit:g} s): Redis "
                "would hand a still-running job to a second worker when the visibility "
                "timeout runs out"
            )
    elif settings.amqp_consumer_timeout_s <= limit:
        raise ConfigError(
            f"PAULYOPS_AMQP_CONSUMER_TIMEOUT_S ({settings.amqp_consumer_timeout_s:g} s) must "
            f"be longer than PAULYOPS_CELERY_TASK_TIME_LIMIT_S ({limit:g} s): RabbitMQ closes "
            "the channel of a task that runs past its consumer_timeout; raise the broker's "
            "consumer_timeout and this setting together (docs/agents/jobs.md)"
        )


def create_celery(settings: Settings) -> Celery:
    """Return the Celery app for ``settings`` (the server sends with it, workers run it)."""
    url = settings.celery_broker_url
    if not url:
        raise ConfigError("CELERY_BROKER_URL is not set")
    app = Celery("paulyops", broker=url, set_as_current=False)
    limit = settings.celery_task_time_limit_s
    transport: dict[str, Any] = {}
    if broker_kind(url) == "redis":
        transport["visibility_timeout"] = settings.redis_visibility_timeout_s
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=limit,
        task_soft_time_limit=max(1.0, limit - 5),
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        task_routes={TASK_NAME: {"queue": settings.celery_queue}},
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(
        run_jobs
    )
    return app


# --- the worker side ------------------------------------------------------------------------


@dataclass
class WorkerState:
    """What tasks in this worker process share: the database, the executor, claims in flight."""

    db: Database
    executor: JobExecutor
    policy: JobPolicy
    owner: str
    inflight: dict[int, Claim] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hand_back(self) -> list[str]:
        """Release every claim in flight (the grace period ran out)."""
        with self.lock:
            claims = list(self.inflight.values())
        released: list[str] = []
        for claim in claims:
            try:
                released += jobs.release(self.db, claim.job_ids, owner=claim.owner, started=True)
            except Exception:  # their leases then expire and the reaper brings them back
                log.exception("worker_handback_failed", owner=claim.owner)
        return released


_state: list[WorkerState] = []


def set_worker_state(state: WorkerState | None) -> None:
    """Install (or remove) the state tasks of this process run with."""
    _state[:] = [state] if state is not None else []


def run_jobs(installation_id: str, job_ids: list[str]) -> dict[str, int]:
    """The task: claim these jobs (and their installation's other due ones) and run them."""
    if not _state:
        raise RuntimeError("this process is not a paulyops worker (no worker state)")
    state = _state[0]
    owner = f"{state.owner}:{threading.get_ident()}"
    claim = jobs.claim(state.db, owner=owner, policy=state.policy, job_ids=job_ids)
    if claim is None:  # already claimed, finished, cancelled, or not due yet
        return {"claimed": 0}
    key = threading.get_ident()
    with state.lock:
        state.inflight[key] = claim
    try:
        report = state.executor.run(claim)
    finally:
        with state.lock:
            state.inflight.pop(key, None)
    return {
        "claimed": len(claim.jobs),
        "succeeded": len(report.succeeded),
        "failed": len(report.failed) + len(report.dead),
    }


# --- the server side ------------------------------------------------------------------------


def send_jobs(app: Celery, db: Database, installation_id: str, job_ids: Sequence[str]) -> None:
    """Send one task for these jobs and stamp them as dispatched."""
    app.send_task(TASK_NAME, args=[installation_id, list(job_ids)])
    with db.write_session() as session:
        jobs.mark_dispatched(session, job_ids)


def dispatcher_for(app: Celery, db: Database, settings: Settings) -> jobs.Dispatcher:
    """Return the job store's dispatcher that sends Celery tasks (after each commit)."""

    def dispatch(installation_id: str, job_ids: Sequence[str]) -> None:
        try:
            send_jobs(app, db, installation_id, job_ids)
        except Exception:  # the broker is down: the scheduler's sweep sends them later
            log.warning("celery_send_failed", jobs=len(job_ids), exc_info=True)

    return dispatch


_sweep_apps: dict[str, Celery] = {}


def sweep_due(db: Database, settings: Settings, resend_after_s: float) -> int:
    """Send tasks for due jobs without a message in flight (retries, lost messages)."""
    url = settings.celery_broker_url or ""
    app = _sweep_apps.get(url)
    if app is None:
        app = _sweep_apps[url] = create_celery(settings)
    sent = 0
    for installation_id, ids in jobs.due_for_dispatch(db, stale_s=resend_after_s).items():
        for start in range(0, len(ids), MAX_BATCH):
            batch = ids[start : start + MAX_BATCH]
            app.send_task(TASK_NAME, args=[installation_id, batch])
            sent += len(batch)
    return sent


def worker_argv(settings: Settings, *, concurrency: int | None = None) -> list[str]:
    """The ``celery worker`` arguments of ``paulyops worker``.

    The threads pool: one process, so the database pool and the in-flight claims are
    shared by its tasks, and ``kill -9`` takes every running task with it (their
    messages are delivered again, their leases expire).
    """
    return [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--queues={settings.celery_queue}",
        f"--hostname=paulyops@{os.uname().nodename}.{os.getpid()}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]


__all__ = [
    "TASK_NAME",
    "WorkerState",
    "broker_kind",
    "check_timeouts",
    "create_celery",
    "dispatcher_for",
    "run_jobs",
    "send_jobs",
    "set_worker_state",
    "sweep_due",
    "worker_argv",
]
