"""``paulyops validate env|config``.

``validate env`` reads the instance settings the way the server does and names every
variable that is malformed, missing or weak. ``validate config`` re-parses
``configs/setup.json`` with the same rules as ``setup --config``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from paulyops.cli.context import CommandGroup, console, err_console
from paulyops.cli.setup import resolve_root
from paulyops.core.errors import ConfigError

app = typer.Typer(
    cls=CommandGroup,
    help="Check the instance's settings and generated configuration.",
    no_args_is_help=True,
)

EXIT_PROBLEMS = 4
DIR_HELP = "Instance root (default: PAULYOPS_HOME or the current directory)."


@app.command("env")
def validate_env(
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
) -> None:
    """Check .env.local and the environment: every value well-formed, every secret strong."""
    from paulyops.core.settings import (
        ENV_FILE_NAME,
        MIN_SECRET_LENGTH,
        SECRET_VAR_FIELDS,
        load_settings,
        weak_secrets,
    )

    root = resolve_root(directory)
    settings = load_settings(root=root)
    problems: list[str] = []
    for var in weak_secrets(settings):
        value = getattr(settings, SECRET_VAR_FIELDS[var])
        if value is None:
            problems.append(f"{var}: is not set (run `paulyops setup` to generate it)")
        else:
            problems.append(
                f"{var}: too weak: a placeholder or shorter than {MIN_SECRET_LENGTH} characters"
            )
    env_file = root / ENV_FILE_NAME
    if env_file.is_file() and env_file.stat().st_mode & 0o077:
        problems.append(
            f"{ENV_FILE_NAME}: readable by other users (mode "
            f"{env_file.stat().st_mode & 0o777:o}); run chmod 600 {env_file}"
        )
    if settings.is_production and not settings.public_url:
        problems.append("PAULYOPS_PUBLIC_URL: is not set (links would point at the bind address)")
    if problems:
        for line in problems:
            err_console.print(f"[bold red]✗[/] {escape(line)}", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS)
    source = env_file if env_file.is_file() else "the environment"
    console.print(f"[green]✓[/] settings valid ({escape(str(source))}; env {settings.env.value})")


@app.command("config")
def validate_config(
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
) -> None:
    """Re-check configs/setup.json with the same rules as `setup --config`."""
    from paulyops.cli.setup import load_config
    from paulyops.services.onboarding.artifacts import SETUP_JSON
    from paulyops.services.onboarding.spec import parse_spec

    path = resolve_root(directory) / SETUP_JSON
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: run `paulyops setup` first")
    raw = load_config(path)  # the caps of `setup --config`: size, depth, integers
    spec = parse_spec(raw)
    console.print(
        f"[green]✓[/] {escape(str(path))} is valid: {escape(spec.organization.name)} "
        f"(slug {spec.slug}, spec hash {spec.canonical_hash()[:12]})"
    )


__all__ = ["app"]
