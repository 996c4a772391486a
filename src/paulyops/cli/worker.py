"""``paulyops worker``: run agent jobs from the broker (CELERY_BROKER_URL) on this machine."""

from __future__ import annotations

import typer

from paulyops.cli.context import read_settings


def worker(
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        max=64,
        help="batches to run at once (default PAULYOPS_WORKER_CONCURRENCY)",
    ),
) -> None:
    """Start a worker for agent jobs on any machine that shares the database and the broker.

    Needs CELERY_BROKER_URL (Redis or RabbitMQ). Without a broker, jobs run inside
    `paulyops serve` and no worker is needed. SIGTERM lets running jobs finish within
    PAULYOPS_WORKER_GRACE_S and hands the rest back.
    """
    from paulyops.workers.worker import run_worker  # Celery and SQLAlchemy only when used

    settings = read_settings(generate_secrets=False, verbose=True)
    run_worker(settings, concurrency=concurrency)
