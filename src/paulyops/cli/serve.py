"""``paulyops serve``: run the web server."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

import typer

from paulyops.cli.context import console, err_console, read_settings
from paulyops.core.errors import ConfigError


class _TerminatedError(Exception):
    """SIGTERM arrived: uvicorn re-raises it once its graceful shutdown is done."""


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    raise _TerminatedError


def _run_until_terminated(app: Any, **kwargs: Any) -> None:
    """Run uvicorn; a SIGTERM that stopped it gracefully is a normal stop (exit 0).

    uvicorn >= 0.29 restores the previous SIGTERM handler after its shutdown and raises
    the signal again; with the default handler the process dies by the signal (exit
    status -15/143) and nothing after ``uvicorn.run`` runs.
    """
    import uvicorn

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        uvicorn.run(app, **kwargs)
    except _TerminatedError:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    host: str | None = typer.Option(None, help="bind address (default PAULYOPS_HOST)"),
    port: int | None = typer.Option(None, help="port (default PORT, 8000)"),
    workers: int = typer.Option(1, min=1, max=64, help="server processes (needs Redis if > 1)"),
) -> None:
    """Start PaulyOps, migrating the database first when it is behind."""
    settings = read_settings(verbose=True)
    bind_host = host or settings.host
    bind_port = port or settings.port
    settings = settings.model_copy(update={"host": bind_host, "port": bind_port})
    if workers > 1 and not settings.redis_url:
        raise ConfigError(
            f"--workers {workers} needs REDIS_URL: without Redis, rate limits, CSRF "
            "tokens and sessions live in each process and would not be shared"
        )
    shown_host = "127.0.0.1" if bind_host in {"0.0.0.0", "::"} else bind_host  # noqa: S104  # display only
    public = settings.public_url or f"http://{shown_host}:{bind_port}"
    err_console.print(
        f"[bold green]PaulyOps[/] starting at [link={public}]{public}[/link] "
        f"(data in {settings.data_dir}, database "
        f"{'SQLite' if not settings.database_url else 'PostgreSQL'}, "
        f"{'Redis' if settings.redis_url else 'in-process state'})"
    )
    err_console.print(f"  Next: open {public} in your browser. Stop with Ctrl+C.")
    if workers > 1:
        # Worker processes re-read settings from the environment: point them at this root
        # and migrate once here, before they start.
        os.environ["PAULYOPS_HOME"] = str(settings.root)
        os.environ["PAULYOPS_HOST"] = bind_host
        os.environ["PORT"] = str(bind_port)
        from paulyops.core.db import migrate
        from paulyops.core.db.engine import Database

        db = Database(settings.effective_database_url)
        db.connect(attempts=10)
        migrate.upgrade_if_behind(db)
        db.close()
        from paulyops.core.metrics import prepare_multiprocess_dir

        # Each worker counts into its own files there; /metrics sums them (core/metrics).
        prepare_multiprocess_dir(settings.data_dir)
        _run_until_terminated(
            "paulyops.web.app:create_app_from_env",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=workers,
            log_config=None,
            timeout_graceful_shutdown=30,
            # Forwarded headers are the app's (web/forwarded.py, PAULYOPS_TRUSTED_PROXIES);
            # uvicorn's own reading would be a second mechanism (on by default for loopback).
            proxy_headers=False,
        )
        return
    from paulyops.web.app import create_app

    app = create_app(settings)
    _run_until_terminated(
        app,
        host=bind_host,
        port=bind_port,
        log_config=None,
        timeout_graceful_shutdown=30,
        proxy_headers=False,  # the app reads forwarded headers (web/forwarded.py)
    )
    console.print("PaulyOps stopped.")
