"""Wire the job runtime of one process: executor, runner, scheduler, dispatch.

The executor runs batches with the sandbox (``services.agents.sandbox.run_batch``,
configured from the settings once per process) and takes each run's settings from the
lifecycle service (``lifecycle.settings_for_run``: secrets only with their grant). Under
``PAULYOPS_ENV=test`` only, ``PAULYOPS_TEST_AGENT_RUNNER=module:function`` names another
runner (the test suite's small subprocess runner), so worker subprocesses in tests can
run jobs where the sandbox is not the subject.

:func:`start_job_runtime` is called once the instance is ready: without a broker it
starts the embedded runner; with ``CELERY_BROKER_URL`` it makes enqueues send Celery
tasks instead. Either way it starts the leased scheduler with the lease reaper (and the
broker sweep that re-sends due retries).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from paulyops.core.db.engine import Database
from paulyops.core.errors import ConfigError
from paulyops.core.instance import Instance
from paulyops.core.logging import get_logger
from paulyops.core.settings import Environment, Settings
from paulyops.services.agents import jobs, lifecycle
from paulyops.services.agents.execute import (
    BatchFinishedHook,
    JobExecutor,
    JobFinishedHook,
    SettingsProvider,
)
from paulyops.services.agents.jobs import ClaimedJob, JobPolicy
from paulyops.services.agents.runtime import BatchRunner
from paulyops.services.agents.scheduler import Scheduler, process_owner

log = get_logger("paulyops.workers")

TEST_RUNNER_ENV = "PAULYOPS_TEST_AGENT_RUNNER"
# With a broker: how often the leader re-sends tasks for due retries and lost messages,
# and after how long a sent message counts as lost.
SWEEP_S = 10.0
RESEND_AFTER_S = 600.0


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve_runner(settings: Settings) -> BatchRunner:
    """Return the sandbox's batch runner (or the test runner under ``PAULYOPS_ENV=test``)."""
    override = os.environ.get(TEST_RUNNER_ENV)
    if override and settings.env is Environment.TEST:
        return cast(BatchRunner, _load(override))
    from paulyops.services.agents import sandbox

    sandbox.configure(sandbox.config_from_settings(settings))
    return sandbox.run_batch


def build_executor(
    db: Database,
    settings: Settings,
    *,
    runner: BatchRunner | None = None,
    settings_provider: SettingsProvider | None = None,
    on_batch_finished: BatchFinishedHook | None = None,
) -> JobExecutor:
    """Return the executor of this process, resolving the seams not given."""
    policy = JobPolicy.from_settings(settings)
    return JobExecutor(
        db,
        runner=runner or resolve_runner(settings),
        settings_provider=settings_provider or lifecycle.settings_for_run,
        data_dir=settings.data_dir,
        policy=JobPolicy.from_settings(settings),
        quarantine_after=settings.agent_quarantine_after,
        on_batch_finished=on_batch_finished,
        on_job_finished=document_hook(policy, settings.data_dir),
    )


def document_hook(policy: JobPolicy, data_dir: Path) -> JobFinishedHook:
    """Return the hook that advances a finished job's Document (services.ingestion.routing)."""
    from paulyops.services.ingestion import routing

    def hook(
        session: Any,
        job: ClaimedJob,
        state: str,
        result: Mapping[str, Any] | None,
        error: str | None,
    ) -> None:
        routing.on_job_finished(
            session,
            organization_id=job.organization_id,
            agent_id=job.agent_id,
            job_id=job.id,
            job_input=job.input,
            state=state,
            result=result,
            error=error,
            policy=policy,
            data_dir=data_dir,
        )

    return hook


def run_here(db: Database, settings: Settings, job_id: str) -> bool:
    """Claim one queued job and run it in this process (``agents run --wait``, no broker).

    The claim is the same leased one every runner takes, so a server that picked the job
    up first keeps it (this returns False and the caller waits for its outcome).
    """
    policy = JobPolicy.from_settings(settings)
    claim = jobs.claim(db, owner=process_owner("cli"), policy=policy, job_ids=[job_id])
    if claim is None:
        return False
    build_executor(db, settings).run(claim)
    return True


def start_scheduler(db: Database, settings: Settings, *, role: str, broker: bool) -> Scheduler:
    """Start this process's scheduler: the lease reaper, and the broker sweep with Celery."""
    policy = JobPolicy.from_settings(settings)
    scheduler = Scheduler(db, owner=process_owner(role), lease_s=max(3.0, policy.lease_s / 2))
    scheduler.register(
        "jobs.reap",
        interval_s=max(1.0, policy.lease_s / 3),
        run=lambda: jobs.reap(db, policy=policy),
    )
    if broker:
        from paulyops.workers.celery_app import sweep_due

        # Retries become due within about a lease of the reaper freeing them.
        sweep_s = max(1.0, min(SWEEP_S, policy.lease_s))
        scheduler.register(
            "jobs.dispatch", interval_s=sweep_s, run=lambda: sweep_due(db, settings, RESEND_AFTER_S)
        )
    scheduler.start()
    return scheduler


@dataclass
class JobRuntime:
    """What :func:`start_job_runtime` started, so it can be stopped in reverse."""

    scheduler: Scheduler | None = None
    embedded: Any = None
    stops: list[Callable[[], object]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the embedded runner (graceful), the dispatch and the scheduler."""
        if self.embedded is not None:
            self.embedded.stop()
        for stop in reversed(self.stops):
            stop()
        if self.scheduler is not None:
            self.scheduler.stop()


def attach_dispatcher(instance: Instance) -> None:
    """Make jobs enqueued by this (short-lived) process reach a runner at once.

    With a broker, enqueues send Celery tasks. Without one, the server's embedded
    runner is in another process: its sweep picks the jobs up within
    :data:`~paulyops.workers.embedded.DEFAULT_SWEEP_S` seconds.
    """
    settings, db = instance.settings, instance.db
    if not settings.celery_broker_url:
        return
    from paulyops.workers.celery_app import create_celery, dispatcher_for

    jobs.set_dispatcher(db, dispatcher_for(create_celery(settings), db, settings))
    instance.on_close.append(lambda _instance: jobs.set_dispatcher(db, None))


def start_job_runtime(instance: Instance, executor: JobExecutor | None = None) -> JobRuntime:
    """Start the jobs side of a server process (call it when the instance is ready).

    Without a broker: the embedded runner (worker threads here). With one: enqueues send
    Celery tasks; ``paulyops worker`` processes run them. The runtime stops with the
    instance (``on_close``).
    """
    settings, db = instance.settings, instance.db
    runtime = JobRuntime()
    broker = bool(settings.celery_broker_url)
    if broker:
        from paulyops.workers.celery_app import create_celery, dispatcher_for

        app = create_celery(settings)
        jobs.set_dispatcher(db, dispatcher_for(app, db, settings))
        runtime.stops.append(lambda: jobs.set_dispatcher(db, None))
    else:
        from paulyops.workers.embedded import EmbeddedRunner

        try:
            executor = executor or build_executor(db, settings)
        except ConfigError as err:
            log.error("agent_runs_unavailable", reason=err.message)
        else:
            runner = EmbeddedRunner(
                db,
                executor,
                policy=JobPolicy.from_settings(settings),
                concurrency=settings.worker_concurrency,
                grace_s=settings.worker_grace_s,
            )
            runner.start()
            runtime.embedded = runner
    runtime.scheduler = start_scheduler(db, settings, role="server", broker=broker)
    instance.on_close.append(lambda _instance: runtime.stop())
    return runtime


__all__ = [
    "TEST_RUNNER_ENV",
    "JobRuntime",
    "attach_dispatcher",
    "build_executor",
    "resolve_runner",
    "run_here",
    "start_job_runtime",
    "start_scheduler",
]
