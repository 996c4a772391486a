"""``paulyops logs``: the servers' log files, merged, filtered and readable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.text import Text

from paulyops.cli.context import console
from paulyops.cli.setup import resolve_root
from paulyops.core.errors import FieldError, SpecValidationError

if TYPE_CHECKING:
    from paulyops.core.logfiles import Entry

DIR_HELP = "Instance root (default: PAULYOPS_HOME or the current directory)."
STYLES = {
    "debug": "dim",
    "info": "green",
    "warning": "yellow",
    "error": "bold red",
    "critical": "bold white on red",
}
# Fields every line has or that the columns already show.
_SHOWN = {"logger", "correlation_id", "exception"}


def _render(entry: Entry, *, as_json: bool) -> None:
    if as_json:
        data = {"timestamp": entry.timestamp.isoformat(), "level": entry.level}
        data |= {"event": entry.event, **entry.fields}
        console.out(json.dumps(data, default=str), highlight=False)
        return
    line = Text()
    line.append(entry.timestamp.strftime("%Y-%m-%d %H:%M:%S"), style="dim")
    line.append(f" {entry.level.upper():<8}", style=STYLES[entry.level])
    if entry.request_id:
        line.append(f" [{entry.request_id[:12]}]", style="cyan")
    line.append(f" {entry.event}")
    extra = " ".join(f"{k}={v}" for k, v in entry.fields.items() if k not in _SHOWN)
    if extra:
        line.append(f"  {extra}", style="dim")
    console.print(line, highlight=False, soft_wrap=True)
    exception = entry.fields.get("exception")
    if exception:
        console.print(escape(str(exception)), style="red", highlight=False)


def logs(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    level: str = typer.Option("info", "--level", help="Lowest level: debug, info, warning, error."),
    request_id: str | None = typer.Option(
        None, "--request-id", help="Only the lines of one request (its X-Request-ID)."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only lines from then on: 10m, 2h, 1d or 2026-12-01T09:30."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON lines themselves."),
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
) -> None:
    """Show the servers' logs (every process, merged by time), filtered."""
    from paulyops.core import logfiles
    from paulyops.core.settings import load_settings

    errors = []
    try:
        wanted_level = logfiles.parse_level(level)
    except ValueError as err:
        errors.append(FieldError("--level", str(err)))
    try:
        start = logfiles.parse_since(since) if since else None
    except ValueError as err:
        errors.append(FieldError("--since", str(err)))
    if errors:
        raise SpecValidationError("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    keep = logfiles.Filter(level=wanted_level, request_id=request_id, since=start)
    settings = load_settings(root=resolve_root(directory))
    entries = logfiles.read_entries(settings.log_dir, keep)
    if not entries and not follow:
        where = settings.log_dir
        hint = "" if settings.log_file_enabled else " (file logging is off: PAULYOPS_LOG_FILE)"
        console.print(f"No matching log lines in {escape(str(where))}{hint}.")
        return
    for entry in entries:
        _render(entry, as_json=as_json)
    if follow:
        try:
            for entry in logfiles.follow(settings.log_dir, keep):
                _render(entry, as_json=as_json)
        except KeyboardInterrupt:
            return
