"""``paulyops agents run | logs``: run an agent on a file, and read its recent runs.

:func:`register` adds both commands to the ``paulyops agents`` group (``cli/agents.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from paulyops.cli.context import console, err_console, open_instance, read_settings

if TYPE_CHECKING:
    from paulyops.services.agents.runs import JobView

ORG_HELP = "the organization (slug or id; default: the only one)"
STYLE = {
    "succeeded": "green",
    "running": "cyan",
    "queued": "dim",
    "failed": "yellow",
    "dead": "red",
    "cancelled": "dim",
}


def _describe(view: JobView) -> dict[str, Any]:
    return {
        "id": view.id,
        "agent": view.agent_id,
        "status": view.status,
        "attempts": view.attempts,
        "maxAttempts": view.max_attempts,
        "input": view.input_name,
        "createdAt": view.created_at.isoformat(),
        "finishedAt": view.finished_at.isoformat() if view.finished_at else None,
        "durationMs": round(view.duration_ms, 1) if view.duration_ms is not None else None,
        "error": view.error,
        "result": view.result,
    }


def run(
    agent: str = typer.Argument(..., help="the installed agent (its id, or inst_...)"),
    input_file: Path = typer.Option(..., "--input", help="the file to run it on (up to 50 MB)"),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="wait for the run to finish (without a broker this command runs it itself)",
    ),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds --wait waits at most"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the job as JSON"),
) -> None:
    """Queue a run of an agent on one file; with --wait, print its result or error."""
    from paulyops.services.actor import CLI
    from paulyops.services.agents.jobs import JobPolicy
    from paulyops.services.agents.runs import resolve_organization, run_file, wait_for
    from paulyops.workers.runtime import attach_dispatcher, run_here

    settings = read_settings()
    with open_instance(settings) as instance:
        attach_dispatcher(instance)
        org_id = resolve_organization(instance.db, org)
        view = run_file(
            instance.db,
            org_id,
            agent,
            input_file,
            actor=CLI,
            policy=JobPolicy.from_settings(settings),
        )
        if not as_json:
            console.print(f"Queued job [bold]{view.id}[/] ({view.agent_id} on {view.input_name}).")
        if wait:
            if not settings.celery_broker_url:
                # No broker: nobody but a running server would pick the job up, so this
                # command runs it itself unless a server claimed it first.
                run_here(instance.db, settings, view.id)
            view = wait_for(instance.db, org_id, view.id, timeout_s=timeout)
    if as_json:
        console.print_json(json.dumps(_describe(view)))
    elif wait:
        _print_outcome(view)
    if wait and view.status != "succeeded":
        raise typer.Exit(1)


def _print_outcome(view: JobView) -> None:
    style = STYLE.get(view.status, "")
    console.print(f"[{style}]{view.status}[/] after {view.attempts} attempt(s)", highlight=False)
    if view.error:
        err_console.print(view.error, highlight=False, markup=False)
    if view.result is not None:
        console.print_json(json.dumps(view.result))
    if not view.is_finished:
        console.print("Not finished yet: see `paulyops agents logs` later.", highlight=False)


def logs(
    ref: str = typer.Argument(..., help="an installed agent (id or inst_...) or a job id"),
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="how many runs to show"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the runs as JSON"),
) -> None:
    """Show an agent's recent runs (status, attempts, duration, error), newest first."""
    from paulyops.services.agents.runs import job_history, resolve_organization

    settings = read_settings()
    with open_instance(settings) as instance:
        org_id = resolve_organization(instance.db, org)
        views = job_history(instance.db, org_id, ref, limit=limit)
    if as_json:
        console.print_json(json.dumps([_describe(v) for v in views]))
        return
    if not views:
        console.print("No runs yet.")
        return
    table = Table("job", "status", "attempts", "input", "finished", "ms", "error")
    for view in views:
        table.add_row(
            view.id,
            f"[{STYLE.get(view.status, '')}]{view.status}[/]",
            f"{view.attempts}/{view.max_attempts}",
            view.input_name,
            view.finished_at.strftime("%Y-%m-%d %H:%M:%S") if view.finished_at else "",
            f"{view.duration_ms:.0f}" if view.duration_ms is not None else "",
            (view.error or "")[:120],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``logs`` to the ``paulyops agents`` group."""
    app.command("run")(run)
    app.command("logs")(logs)


__all__ = ["logs", "register", "run"]
