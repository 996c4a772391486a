"""``paulyops upgrade`` and ``paulyops reset``: each behind a fresh backup."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from paulyops.cli.context import console, open_instance, read_settings
from paulyops.cli.setup import resolve_root

DIR_HELP = "Instance root (default: PAULYOPS_HOME or the current directory)."


def upgrade(directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Back up, migrate to this version's schema, re-check the configuration; report."""
    from paulyops.services.operations import lifecycle

    settings = read_settings(resolve_root(directory), generate_secrets=False)
    with open_instance(settings, migrate=False) as instance:
        report = lifecycle.upgrade(settings, instance.db)
    if report.config_checked:
        console.print("[green]✓[/] settings and configs/setup.json are valid")
    else:
        console.print("[green]✓[/] settings are valid (no configs/setup.json to check)")
    if not report.migrations:
        console.print(f"[green]✓[/] the schema is already current ({report.before}); nothing to do")
        return
    assert report.backup is not None  # a backup is taken before any migration
    console.print(f"[green]✓[/] backed up to {escape(str(report.backup.path))}")
    for step in report.migrations:
        console.print(f"  migrated {step.revision}: {escape(step.summary)}", highlight=False)
    console.print(
        f"[bold green]Upgraded[/] the schema from {report.before or 'empty'} to {report.after}. "
        "Restart the server to use the new version."
    )


def reset(
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation (scripts)."),
    include_files: bool = typer.Option(
        False, "--include-files", help="Also delete the files in <data>/storage."
    ),
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
) -> None:
    """Start over at first run: back up, then remove every organization, user and setting."""
    from paulyops.services.actor import CLI
    from paulyops.services.operations import lifecycle

    settings = read_settings(resolve_root(directory), generate_secrets=False)
    if not yes:
        kept = "deleted too" if include_files else "kept"
        console.print(
            f"This removes every organization, user, token and audit row of {settings.root} "
            f"(a backup is made first). Files in {settings.data_dir / 'storage'} are {kept}."
        )
        if not typer.confirm("Reset this instance?", default=False):
            console.print("Nothing changed.")
            raise typer.Exit(1)
    with open_instance(settings, migrate=False) as instance:
        report = lifecycle.reset(settings, instance.db, include_files=include_files, actor=CLI)
    console.print(f"[green]✓[/] backed up to {escape(str(report.backup.path))}")
    for path in report.removed:
        console.print(f"  removed {escape(str(path))}")
    console.print("[bold green]Reset.[/] The instance is back at first run.")
    if report.setup_token:
        console.print(f"  Setup token (valid 24 hours): [bold]{report.setup_token}[/]")
        console.print("  Start the server and open it in a browser, or run `paulyops setup`.")
