"""What every CLI command shares: reading settings, error translation, the console."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from paulyops.core.errors import (
    ConfigError,
    ConflictError,
    ExternalServiceError,
    NotFoundError,
    PaulyOpsError,
    PermissionDeniedError,
    SpecValidationError,
)

if TYPE_CHECKING:
    from paulyops.core.instance import Instance
    from paulyops.core.settings import Settings

console = Console()
err_console = Console(stderr=True)

# Exit codes a script can rely on.
EXIT_CODES: list[tuple[type[PaulyOpsError], int]] = [
    (SpecValidationError, 3),
    (ConfigError, 4),
    (NotFoundError, 5),
    (PermissionDeniedError, 6),
    (ConflictError, 7),
    (ExternalServiceError, 8),
]


def exit_code_of(err: PaulyOpsError) -> int:
    """Return the CLI exit code for a domain error (1 for anything unlisted)."""
    for cls, code in EXIT_CODES:
        if isinstance(err, cls):
            return code
    return 1


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Print a domain error as one clear message and exit with its code.

    Every command runs inside it through :class:`CommandGroup`: commands just raise.
    """
    try:
        yield
    except PaulyOpsError as err:
        err_console.print(f"[bold red]error:[/] {err.message}", highlight=False)
        if isinstance(err, SpecValidationError):
            for item in err.errors:
                hint = f" (did you mean {item.suggestion!r}?)" if item.suggestion else ""
                err_console.print(f"  • {item.field}: {item.message}{hint}", highlight=False)
        raise typer.Exit(exit_code_of(err)) from None


class CommandGroup(TyperGroup):
    """A command group that translates domain errors for every command below it, once."""

    # ``ctx`` is typer's vendored click Context (``typer._click``, private): typed as Any.
    def invoke(self, ctx: Any) -> Any:
        """Run the command; a :class:`PaulyOpsError` becomes a message and its exit code."""
        with handle_errors():
            return super().invoke(ctx)


def read_settings(
    root: Path | None = None, *, generate_secrets: bool = True, verbose: bool = False
) -> Settings:
    """Load settings, generate missing development secrets, configure logging.

    Args:
        root: the instance root (default ``PAULYOPS_HOME`` or the current directory).
        generate_secrets: create missing development secrets in ``.env.local``.
        verbose: log at the configured level (the server); other commands only log
            warnings, so their own output stays readable.
    """
    from paulyops.core.logging import configure_logging
    from paulyops.core.settings import ensure_secrets, load_settings

    settings = load_settings(root=root)
    if generate_secrets:
        settings, generated = ensure_secrets(settings)
        if generated:
            err_console.print(
                f"[dim]Generated {', '.join(generated)} into "
                f"{settings.root / '.env.local'} (keep a copy somewhere safe).[/]"
            )
    log_file = None
    if verbose:  # the server keeps its own rotating file; other commands do not
        from paulyops.core import logfiles

        log_file = logfiles.server_log_file(settings)
        if log_file is not None:
            logfiles.remove_old_files(settings.log_dir, retention_days=settings.log_retention_days)
    configure_logging(
        level=settings.log_level if verbose else "WARNING",
        json_lines=settings.json_logs,
        background=verbose,  # the server: never block a request on a log line
        log_file=log_file,
        debug=settings.debug,
    )
    return settings


@contextlib.contextmanager
def open_instance(settings: Settings, *, migrate: bool = True) -> Iterator[Instance]:
    """Start an instance for one command (blocking connect) and close it afterwards."""
    from paulyops.core.instance import Instance

    settings = settings.model_copy(update={"db_connect_attempts": 3})
    instance = Instance(settings, migrate_on_start=migrate)
    try:
        instance.start(background=False)
        yield instance
    finally:
        instance.close()
