"""``paulyops audit``: verify, export, checkpoint and purge the tamper-evident audit log."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, err_console, open_instance, read_settings

if TYPE_CHECKING:
    from paulyops.services.audit.verification import VerifyReport

app = typer.Typer(cls=CommandGroup, help="The tamper-evident audit log.", no_args_is_help=True)

ORG_HELP = "an organization id or slug, or 'instance' (default: every chain)"


class ExportFormatChoice(StrEnum):
    """The formats ``paulyops audit export`` writes."""

    JSONL = "jsonl"
    CSV = "csv"


def _parse_date(value: str, option: str) -> datetime:
    """Parse ``YYYY-MM-DD`` (or a full ISO timestamp); a date without a zone is UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"expected a date like 2026-01-31, got {value!r}", param_hint=option
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        yield handle


def _print_report(report: VerifyReport) -> None:
    if not report.chains:
        console.print("[yellow]No audit rows yet.[/]")
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("chain", no_wrap=True)
    table.add_column("status")
    table.add_column("rows", justify="right")
    table.add_column("seq", justify="right")
    table.add_column("checkpoints", justify="right")
    table.add_column("unanchored", justify="right")
    for chain in report.chains:
        span = "" if chain.first_seq is None else f"{chain.first_seq}-{chain.last_seq}"
        status = "[green]ok[/]" if chain.status == "ok" else "[bold red]broken[/]"
        table.add_row(
            escape(chain.chain),
            status,
            str(chain.rows_checked),
            span,
            str(chain.checkpoints_checked),
            str(chain.unanchored) if chain.unanchored == 0 else f"[yellow]{chain.unanchored}[/]",
        )
    console.print(table)
    if report.unanchored:
        # Rows after the newest signed checkpoint: deleting them would go unnoticed.
        console.print(
            f"[yellow]{report.unanchored} row(s) follow the newest signed checkpoint "
            "(unanchored):[/] deleting them would not be detected. The server signs new "
            "rows every PAULYOPS_AUDIT_CHECKPOINT_INTERVAL_S seconds and at shutdown; "
            "`paulyops audit checkpoint` signs them now.",
            soft_wrap=True,
            highlight=False,
        )
    else:
        console.print("Unanchored rows: 0 (every row is covered by a signed checkpoint).")
    for chain in report.broken:
        problem = chain.problem
        if problem is None:
            continue
        console.print(
            f"[bold red]{escape(chain.chain)}:[/] {problem.kind} at seq {problem.seq}"
            f"{f' ({problem.id})' if problem.id else ''}: {escape(problem.message)}",
            soft_wrap=True,
            highlight=False,
        )


@app.command()
def verify(org: str | None = typer.Option(None, "--org", help=ORG_HELP)) -> None:
    """Check every row hash, link and signed checkpoint; exit 1 naming the first bad row."""
    from paulyops.core.security.signatures import instance_verifying_key
    from paulyops.services.audit.browse import chain_of
    from paulyops.services.audit.verification import verify as verify_chains

    settings = read_settings(generate_secrets=False)
    public_key = instance_verifying_key(settings)
    with open_instance(settings) as instance:
        report = verify_chains(instance.db, public_key, chain=chain_of(instance.db, org))
    _print_report(report)
    raise typer.Exit(0 if report.is_ok else 1)


@app.command()
def export(
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    since: str | None = typer.Option(None, "--since", help="only rows from this date (UTC)"),
    fmt: ExportFormatChoice = typer.Option(ExportFormatChoice.JSONL, "--format"),
    output: Path | None = typer.Option(None, "--output", "-o", help="file (default: stdout)"),
) -> None:
    """Sign a checkpoint of each chain, then write its rows as JSON lines or CSV."""
    from paulyops.services.audit.browse import chain_of
    from paulyops.services.audit.exports import export as export_chains

    cutoff = _parse_date(since, "--since") if since is not None else None
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, _output(output) as out:
        result = export_chains(
            instance.db,
            settings,
            chain=chain_of(instance.db, org),
            since=cutoff,
            fmt="csv" if fmt is ExportFormatChoice.CSV else "jsonl",
            out=out,
        )
    heads = ", ".join(f"{cp.chain}@{cp.seq}" for cp in result.checkpoints) or "none"
    err_console.print(
        f"Exported {result.rows} rows{f' to {output}' if output else ''} "
        f"(signed heads: {escape(heads)}).",
        highlight=False,
    )


@app.command()
def checkpoint(org: str | None = typer.Option(None, "--org", help=ORG_HELP)) -> None:
    """Sign the current head of each chain with the instance key."""
    from paulyops.services.audit.browse import chain_of
    from paulyops.services.audit.checkpoints import checkpoint_all

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        chain = chain_of(instance.db, org)
        checkpoints = checkpoint_all(instance.db, settings, chain=chain)
    if not checkpoints:
        console.print("[yellow]No audit rows yet: nothing to sign.[/]")
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("chain", no_wrap=True)
    table.add_column("seq", justify="right")
    table.add_column("head hash", no_wrap=True)
    table.add_column("key id", no_wrap=True)
    for cp in checkpoints:
        table.add_row(escape(cp.chain), str(cp.seq), cp.head_hash[:16] + "…", cp.key_id)
    console.print(table)


@app.command()
def purge(
    org: str = typer.Option(..., "--org", help="the organization id or slug, or 'instance'"),
    before: str = typer.Option(..., "--before", help="delete rows older than this date (UTC)"),
    yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation"),
) -> None:
    """Delete a chain's rows older than a date, leaving a signed purge checkpoint."""
    from paulyops.services.audit.browse import chain_of
    from paulyops.services.audit.retention import purge as purge_chain

    cutoff = _parse_date(before, "--before")
    if not yes:
        typer.confirm(
            f"Permanently delete audit rows of {org} created before {cutoff.isoformat()}?",
            abort=True,
        )
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        chain = chain_of(instance.db, org) or org
        result = purge_chain(instance.db, settings, chain=chain, before=cutoff)
    if result.through_seq is None:
        console.print(f"Nothing to purge: no row of {escape(org)} is older than {cutoff:%Y-%m-%d}.")
        return
    console.print(
        f"Purged {result.purged} rows of {escape(org)} through seq {result.through_seq}; "
        f"signed purge checkpoint {result.checkpoint.id if result.checkpoint else '?'}.",
        highlight=False,
    )
