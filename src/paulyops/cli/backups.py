"""``paulyops backup create|list|restore|config``: instance backups and the config archive.

``backup create`` writes the whole database and configuration into one encrypted file
(``services/backups/instance.py``); ``backup restore`` puts one back; ``backup config``
packs only the generated configuration files (``.env.local`` only on request).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, open_instance, read_settings
from paulyops.cli.setup import resolve_root

app = typer.Typer(
    cls=CommandGroup,
    help="Back up and restore the instance (database and configuration).",
    no_args_is_help=True,
)
backup_app = app  # the name cli/main.py mounts as `backup`

DIR_HELP = "Instance root (default: PAULYOPS_HOME or the current directory)."


@app.command("create")
def create(directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Back up the database and configuration into <root>/backups (encrypted)."""
    from paulyops.core.db import migrate
    from paulyops.services.backups import instance as backups

    settings = read_settings(resolve_root(directory), generate_secrets=False)
    with open_instance(settings, migrate=False) as instance:
        info = backups.create(
            settings, instance.db, reason="manual", revision=migrate.current_revision(instance.db)
        )
    console.print(f"[green]✓[/] backed up to {escape(str(info.path))} ({info.size:,} bytes)")
    console.print(
        f"[dim]Encrypted with {backups.BACKUP_KEY_VAR} from {settings.root / '.env.local'}: "
        "keep a copy of that key off this machine, or the backup cannot be read.[/]"
    )


@app.command("list")
def list_command(directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """List the instance backups, newest first."""
    from paulyops.services.backups import instance as backups

    settings = read_settings(resolve_root(directory), generate_secrets=False)
    paths = backups.list_backups(settings)
    if not paths:
        console.print(f"No backups in {escape(str(backups.backup_dir(settings)))}.")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("file", "size"):
        table.add_column(column)
    for path in paths:
        table.add_row(escape(path.name), f"{path.stat().st_size:,}")
    console.print(table)


@app.command("restore")
def restore(
    backup: Path = typer.Argument(..., help="The .pobak file to restore."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation (scripts)."),
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
) -> None:
    """Replace the database and configuration with a backup (stop the servers first)."""
    from paulyops.core.db.engine import Database
    from paulyops.services.backups import instance as backups

    settings = read_settings(resolve_root(directory), generate_secrets=False)
    info = backups.read_info(settings, backup)  # decrypts and checks before asking
    if not yes:
        console.print(
            f"{escape(backup.name)}: {info.reason} backup of {info.created_at:%Y-%m-%d %H:%M} UTC, "
            f"PaulyOps {info.version}, schema {info.revision}. It replaces the database and "
            f"the configuration of {settings.root}."
        )
        if not typer.confirm("Restore it?", default=False):
            console.print("Nothing changed.")
            raise typer.Exit(1)
    db = Database(settings.effective_database_url)
    try:
        backups.restore(settings, db, backup, config=True)
    finally:
        db.close()
    console.print(
        f"[green]✓[/] restored {escape(backup.name)} (schema {info.revision}). "
        "Start the server again; it migrates the schema if the backup is older."
    )


@app.command("config")
def backup_config_command(
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    output: Path | None = typer.Option(
        None, "--output", help="Folder for the archive (default: <root>/backups)."
    ),
    include_secrets: bool = typer.Option(
        False,
        "--include-secrets",
        help="Also pack .env.local (the archive is then readable by you only).",
    ),
) -> None:
    """Pack configs/*.json, start-paulyops.sh and README.md into a timestamped .tar.gz."""
    from paulyops.services.onboarding.artifacts import backup_config

    root = resolve_root(directory)
    target = backup_config(root, output or root / "backups", include_secrets=include_secrets)
    console.print(f"[green]✓[/] Configuration backed up to {escape(str(target))}")
    if include_secrets:
        console.print(
            "[bold yellow]The archive holds the instance secrets:[/] store it like a "
            "password (mode 0600), never in a ticket or chat."
        )
    else:
        console.print(
            "[dim]Secrets (.env.local) are not included; add --include-secrets to pack them too.[/]"
        )
