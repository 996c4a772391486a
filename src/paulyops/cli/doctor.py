"""``paulyops doctor``: walk the production checklist; pass, warn or fail, with the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from paulyops.cli.context import console, read_settings
from paulyops.cli.setup import resolve_root
from paulyops.core.errors import PaulyOpsError

if TYPE_CHECKING:
    from paulyops.core.settings import Settings
    from paulyops.services.operations.doctor import Check

DIR_HELP = "Instance root (default: PAULYOPS_HOME or the current directory)."
MARK = {"pass": "[green]✓ pass[/]", "warn": "[yellow]! warn[/]", "fail": "[bold red]✗ fail[/]"}


def doctor(
    url: str | None = typer.Option(
        None, "--url", help="Also check a running server, e.g. https://ops.example.com"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
) -> None:
    """Check this instance against the production checklist; exit 1 if anything fails."""
    import httpx

    from paulyops.services.operations import doctor as checklist

    settings = read_settings(resolve_root(directory), generate_secrets=False)
    checks = _instance_checks(settings)
    if url:
        with httpx.Client(timeout=10, follow_redirects=False) as client:
            checks += checklist.server_checks(url, client.get)
    worst = checklist.worst(checks)
    if as_json:
        payload = {"status": worst.value, "checks": [c.as_dict() for c in checks]}
        console.out(json.dumps(payload, indent=2), highlight=False)
    else:
        for check in checks:
            console.print(
                f"{MARK[check.status.value]}  [bold]{escape(check.area)}[/]: "
                f"{escape(check.message)}",
                highlight=False,
            )
            if check.fix:
                console.print(f"          fix: {escape(check.fix)}", highlight=False)
        counts = {s: sum(c.status.value == s for c in checks) for s in ("pass", "warn", "fail")}
        console.print(
            f"\n{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed."
        )
    raise typer.Exit(1 if worst is checklist.Status.FAIL else 0)


def _instance_checks(settings: Settings) -> list[Check]:
    """The instance's checks; an unreachable database is one failed check, not a crash."""
    from paulyops.core.instance import Instance
    from paulyops.services.operations import doctor as checklist

    try:
        instance = Instance(
            settings.model_copy(update={"db_connect_attempts": 1}), migrate_on_start=False
        )
    except PaulyOpsError as err:  # e.g. no encryption key: the other checks still run
        return [
            *checklist.instance_checks(settings, None),
            checklist.Check(
                "instance",
                checklist.Status.FAIL,
                f"the instance cannot open: {err.message}",
                "run `paulyops validate env` and fix what it names",
            ),
        ]
    try:
        try:
            instance.start(background=False)
        except Exception as err:  # reported as the database check, with its reason
            instance.startup_error = instance.startup_error or (
                f"database unreachable ({type(err).__name__})"
            )
        return checklist.instance_checks(settings, instance)
    finally:
        instance.close()
