"""``paulyops docker up|down|logs|restart``: the bundled compose.yaml, without typing compose."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from paulyops.cli.context import CommandGroup, console

app = typer.Typer(
    cls=CommandGroup,
    help="Run PaulyOps, PostgreSQL and Redis in containers (Docker Compose).",
    no_args_is_help=True,
)

PROJECT_HELP = "Directory holding compose.yaml (default: the current directory or the checkout)."


def _compose(action: str, project_dir: Path | None, extra: list[str]) -> None:
    from paulyops.services.deploy import docker

    project = docker.find_project(project_dir)
    base = docker.compose_base()
    if action == "up" and docker.ensure_env_file(project):
        console.print(
            f"[green]created[/green] {escape(str(project / docker.ENV_FILE))} "
            "(generated database password, mode 600)"
        )
    code = docker.run_compose(docker.compose_command(base, project, action, extra))
    if code != 0:
        raise typer.Exit(code)
    if action == "up":
        console.print("[green]PaulyOps is up[/green] at http://127.0.0.1:8000")


@app.command("up")
def up(project_dir: Path | None = typer.Option(None, "--project-dir", help=PROJECT_HELP)) -> None:
    """Build the image and start the server, PostgreSQL and Redis; wait until healthy."""
    _compose("up", project_dir, [])


@app.command("down")
def down(
    project_dir: Path | None = typer.Option(None, "--project-dir", help=PROJECT_HELP),
) -> None:
    """Stop and remove the containers. The data volumes are kept."""
    _compose("down", project_dir, [])


@app.command("restart")
def restart(
    service: str | None = typer.Argument(None, help="server, postgres or redis (default: all)"),
    project_dir: Path | None = typer.Option(None, "--project-dir", help=PROJECT_HELP),
) -> None:
    """Restart every container, or one."""
    _compose("restart", project_dir, [service] if service else [])


@app.command("logs")
def logs(
    service: str | None = typer.Argument(None, help="server, postgres or redis (default: all)"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    project_dir: Path | None = typer.Option(None, "--project-dir", help=PROJECT_HELP),
) -> None:
    """Show the containers' last 200 log lines (and follow them with --follow)."""
    extra = (["--follow"] if follow else []) + ([service] if service else [])
    _compose("logs", project_dir, extra)
