"""``paulyops service install|show``: run the instance under systemd, hardened."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from paulyops.cli.context import CommandGroup, console
from paulyops.cli.setup import resolve_root
from paulyops.core.errors import PermissionDeniedError

if TYPE_CHECKING:
    from paulyops.core.settings import Settings
    from paulyops.services.deploy.systemd import UnitPlan

app = typer.Typer(
    cls=CommandGroup, help="Run PaulyOps as a system service (systemd).", no_args_is_help=True
)

DIR_HELP = "Instance root (default: PAULYOPS_HOME or the current directory)."
USER_HELP = "The dedicated system user the server runs as (created when missing)."


def _executable() -> Path:
    """The absolute path of this ``paulyops`` command (the venv's script)."""
    candidate = Path(sys.argv[0])
    if candidate.name == "paulyops" and candidate.exists():
        return candidate.resolve()
    found = shutil.which("paulyops")
    if found:
        return Path(found).resolve()
    return (Path(sys.executable).parent / "paulyops").resolve()


def _plan(directory: Path | None, user: str, port: int | None) -> tuple[Settings, UnitPlan]:
    from paulyops.core.settings import load_settings
    from paulyops.services.deploy.systemd import render_units

    settings = load_settings(root=resolve_root(directory))
    plan = render_units(
        executable=_executable(),
        interpreter=Path(sys.executable).resolve(),
        root=settings.root,
        data_dir=settings.data_dir,
        user=user,
        host=settings.host,
        port=port or settings.port,
        worker=bool(settings.celery_broker_url),
        worker_grace_s=settings.worker_grace_s,
    )
    return settings, plan


@app.command("show")
def show(
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    user: str = typer.Option("paulyops", "--user", help=USER_HELP),
    port: int | None = typer.Option(None, "--port", help="port (default PORT, 8000)"),
) -> None:
    """Print the unit files `service install` would write, without writing anything."""
    _, plan = _plan(directory, user, port)
    for name, text in plan.units.items():
        console.print(f"[bold]# {name}[/bold]")
        console.print(escape(text), highlight=False)
    for note in plan.notes:
        console.print(f"[dim]note: {escape(note)}[/dim]")


@app.command("install")
def install(
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    user: str = typer.Option("paulyops", "--user", help=USER_HELP),
    port: int | None = typer.Option(None, "--port", help="port (default PORT, 8000)"),
    unit_dir: Path | None = typer.Option(
        None,
        "--unit-dir",
        help="Write the units here instead of /etc/systemd/system (no user, no systemctl).",
    ),
    start: bool = typer.Option(False, "--start", help="Enable and start the server now."),
) -> None:
    """Install hardened systemd units for this instance (run as root)."""
    from paulyops.services.deploy import systemd

    settings, plan = _plan(directory, user, port)
    target = unit_dir or systemd.DEFAULT_UNIT_DIR
    system_wide = unit_dir is None
    if system_wide and os.geteuid() != 0:
        raise PermissionDeniedError(
            "installing a system service needs root: run `sudo paulyops service install`, "
            "or add --unit-dir DIR to only write the unit files"
        )
    for path in systemd.install_units(plan, target):
        console.print(f"[green]wrote[/green] {escape(str(path))}")
    for note in plan.notes:
        console.print(f"[dim]note: {escape(note)}[/dim]")
    if not system_wide:
        console.print("Unit files only: no user created, systemd not told (--unit-dir).")
        return
    ran = systemd.prepare_host(user, [settings.root, settings.data_dir])
    ran += systemd.enable_units(list(plan.units), start=start)
    for command in ran:
        console.print(f"[dim]ran: {escape(command)}[/dim]")
    state = "enabled and started" if start else "enabled (start it: systemctl start paulyops)"
    console.print(f"[green]PaulyOps is {state}.[/green] Logs: journalctl --unit=paulyops --follow")
