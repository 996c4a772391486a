"""``paulyops health``: the healthz report in the terminal."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from paulyops.cli.context import console, read_settings

STYLE = {
    "healthy": "green",
    "degraded": "yellow",
    "unhealthy": "red",
    "not_configured": "dim",
}


def health(
    url: str | None = typer.Option(
        None, "--url", help="ask a running server (e.g. http://127.0.0.1:8000) instead"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the raw JSON report"),
) -> None:
    """Check the database, Redis, storage, Stripe and the agent sandbox; exit 1 when unhealthy."""
    report = _from_server(url) if url else _in_process()
    if as_json:
        console.print_json(json.dumps(report))
    else:
        _print(report)
    raise typer.Exit(1 if report.get("status") == "unhealthy" else 0)


def _in_process() -> dict[str, Any]:
    from paulyops.core.instance import Instance
    from paulyops.services.agents.sandbox import config_from_settings, register_health_check

    settings = read_settings(generate_secrets=False)
    settings = settings.model_copy(update={"db_connect_attempts": 1})
    instance = Instance(settings, migrate_on_start=False)
    register_health_check(instance.health, config_from_settings(settings))
    try:
        try:
            instance.start(background=False)
        except Exception as err:  # an unreachable database is reported below, not raised
            instance.startup_error = instance.startup_error or (
                f"database unreachable ({type(err).__name__})"
            )
        return instance.health_report(include_details=True)
    finally:
        instance.close()


def _from_server(url: str) -> dict[str, Any]:
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/api/healthz", timeout=10)
    except httpx.HTTPError as err:
        return {"status": "unhealthy", "checks": {}, "error": f"{url}: {type(err).__name__}"}
    data: dict[str, Any] = response.json()
    return data


def _print(report: dict[str, Any]) -> None:
    status = str(report.get("status", "unknown"))
    console.print(
        f"PaulyOps {report.get('version', '?')} ({report.get('environment', '?')}): "
        f"[bold {STYLE.get(status, 'white')}]{status}[/]"
    )
    if report.get("error"):
        console.print(f"[red]{report['error']}[/]")
    table = Table(show_header=True, header_style="bold")
    table.add_column("check")
    table.add_column("status")
    table.add_column("ms", justify="right")
    table.add_column("details", overflow="fold")
    for name, check in report.get("checks", {}).items():
        st = str(check.get("status"))
        details = check.get("details") or {}
        shown = ", ".join(f"{k}={v}" for k, v in details.items() if v not in (None, ""))
        table.add_row(
            name, f"[{STYLE.get(st, 'white')}]{st}[/]", str(check.get("responseTime", "")), shown
        )
    console.print(table)
