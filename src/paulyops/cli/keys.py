"""``paulyops keys``: the encryption key ring: status, rotate, reencrypt, retire.

The usual cycle is ``rotate`` (a new active key; the old one keeps decrypting through its
grace period), ``reencrypt`` (move every stored secret to the new key) and ``retire``
(drop the old key once nothing uses it). The commands parse, call one use case of
:mod:`paulyops.services.keys` (which writes the instance-level audit row, key ids only)
and render. Key material appears in exactly one place: the lines ``rotate`` and
``retire`` print for the operator to copy to the instance's other machines; they go to
the terminal and never to a log or the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, err_console, open_instance, read_settings

if TYPE_CHECKING:
    from paulyops.services.keys import FieldCounts, KeyUse

app = typer.Typer(
    cls=CommandGroup, help="Encryption keys for secrets at rest.", no_args_is_help=True
)


def _print_copy_lines(lines: list[str]) -> None:
    """Print the ``KEY=value`` lines other machines need, plainly (no markup or wrapping)."""
    console.print(
        "\nCopy these lines into the environment (or .env.local) of every other machine "
        "that runs this instance, replacing the old values, then restart PaulyOps there:\n"
    )
    for line in lines:
        typer.echo(line)
    console.print(
        "\n[bold yellow]These lines are secret:[/] paste them only into the other machines' "
        "configuration, never into a ticket, chat or log."
    )


def _deadline(key: KeyUse, now: datetime) -> str:
    when = key.retired_after
    if when is None:
        return "no deadline"
    if when <= now:
        return f"[bold red]expired {when:%Y-%m-%d %H:%M} UTC[/]"
    return f"{when:%Y-%m-%d %H:%M} UTC"


@app.command()
def status() -> None:
    """Show the active key, the previous keys with their grace end, and what each encrypts."""
    from paulyops.services import keys

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        report = keys.status(instance)
    table = Table(show_header=True, header_style="bold")
    table.add_column("key id", no_wrap=True)
    table.add_column("state")
    table.add_column("decrypts until")
    table.add_column("stored values", justify="right")
    for key in report.keys:
        if key.role == "active":
            table.add_row(key.key_id, "[green]active[/]", "—", str(key.stored))
        elif key.role == "previous":
            table.add_row(key.key_id, "previous", _deadline(key, report.now), str(key.stored))
        else:
            state = "not ring ciphertext" if key.role == "malformed" else "unknown key"
            table.add_row(
                escape(key.key_id), f"[bold red]{state}[/]", "cannot decrypt", str(key.stored)
            )
    console.print(table)
    for process in report.processes:
        older = process.key_id != report.active_key_id
        note = " [bold yellow](older key)[/]" if older else ""
        console.print(
            f"Running: {escape(process.label)} ({process.kind}) writes with key "
            f"{process.key_id}{note}",
            highlight=False,
        )
    if report.old_keys_in_use:
        console.print("Run `paulyops keys reencrypt` to move every value to the active key.")
    for kid in report.unused_keys:
        console.print(f"Key {kid} encrypts nothing: `paulyops keys retire {kid}` removes it.")
    if report.strays:
        err_console.print(
            "[bold red]Some stored values use a key this machine does not have.[/] Add it to "
            "ENCRYPTION_KEYS_PREVIOUS (from the machine that wrote them), then reencrypt."
        )


@app.command()
def rotate() -> None:
    """Make a new active key in .env.local; the old key keeps decrypting for a grace period."""
    from paulyops.services import keys
    from paulyops.services.actor import CLI

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        result = keys.rotate(instance, CLI)
    console.print(
        f"New active encryption key: [bold]{result.new_key_id}[/] (written to {result.env_path}).",
        highlight=False,
    )
    console.print(
        f"The previous key {result.previous_key_ids[0]} keeps decrypting until "
        f"{result.retire_after:%Y-%m-%d %H:%M} UTC.",
        highlight=False,
    )
    for name in result.shadowed_by_environment:
        err_console.print(
            f"[bold yellow]warning:[/] {name} is also set in this shell's environment, which "
            f"overrides .env.local: set it there too, from the lines below.",
            highlight=False,
        )
    _print_copy_lines(result.copy_lines())
    console.print(
        "\nNext: run `paulyops keys reencrypt` to move every stored secret to the new key."
    )


@app.command()
def reencrypt(
    batch_size: int = typer.Option(200, "--batch-size", help="rows per transaction"),
) -> None:
    """Move every stored secret to the active key (safe to stop and run again)."""
    from paulyops.core.security.crypto import DecryptionError
    from paulyops.services import keys
    from paulyops.services.actor import CLI
    from paulyops.services.commands import CommandError, parse

    try:
        # The bounds are the command's (services/keys.py); a bad value is a usage error.
        command = parse(keys.Reencrypt, {"batchSize": batch_size})
    except CommandError as err:
        message = err.errors[0].message if err.errors else err.message
        raise typer.BadParameter(message, param_hint="--batch-size") from None

    def on_start(active: str) -> None:
        console.print(f"Re-encrypting stored secrets to key {active}…", highlight=False)

    def on_batch(field: str, counts: FieldCounts) -> None:
        console.print(
            f"  {field}: {counts.scanned} checked, {counts.reencrypted} re-encrypted, "
            f"{counts.skipped} already current",
            highlight=False,
        )

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        try:
            outcome = keys.reencrypt(instance, command, CLI, on_start=on_start, on_batch=on_batch)
        except (DecryptionError, KeyboardInterrupt) as err:
            # Batches done so far stay committed; a second run skips them.
            err_console.print(
                "Stopped. Values re-encrypted so far are saved; "
                "run `paulyops keys reencrypt` again to continue."
            )
            if isinstance(err, KeyboardInterrupt):
                raise typer.Exit(130) from None
            raise
    active, result = outcome.active_key_id, outcome.result
    console.print(
        f"Done: {result.reencrypted} value(s) re-encrypted to key {active}.", highlight=False
    )
    if result.changed_concurrently:
        console.print(
            f"{result.changed_concurrently} value(s) changed while this ran; "
            "run it again to check them."
        )
    for process in outcome.late_processes:
        err_console.print(
            f"[bold yellow]warning:[/] {process.label} started meanwhile and writes with key "
            f"{process.key_id}; update it, then run `paulyops keys reencrypt` again.",
            highlight=False,
        )
    for kid in outcome.retirable_keys:
        console.print(f"Key {kid} encrypts nothing now: `paulyops keys retire {kid}`.")


@app.command()
def retire(
    key_id: str = typer.Argument(..., help="the 8-character key id from `paulyops keys status`"),
) -> None:
    """Remove a previous key from .env.local once no stored value uses it."""
    from paulyops.services import keys
    from paulyops.services.actor import CLI
    from paulyops.services.commands import CommandError, parse

    try:
        command = parse(keys.RetireKey, {"keyId": key_id})
    except CommandError:
        # A usage error (exit 2), and never echoed: it may be the key itself.
        raise typer.BadParameter(keys.KEY_ID_HINT, param_hint="KEY_ID") from None
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        result = keys.retire(instance, command, CLI)
    console.print(
        f"Retired key {result.key_id}: removed from ENCRYPTION_KEYS_PREVIOUS in {result.env_path}.",
        highlight=False,
    )
    _print_copy_lines(result.copy_lines())


@app.command("rotate-signing")
def rotate_signing() -> None:
    """Give SESSION_SECRET and JWT_SECRET new values; the old ones keep verifying."""
    from paulyops.services import keys
    from paulyops.services.actor import CLI

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        result = keys.rotate_signing(instance, CLI)
    console.print(
        "New SESSION_SECRET and JWT_SECRET written; the previous values stay accepted "
        "(PAULYOPS_SESSION_SECRETS_PREVIOUS, PAULYOPS_JWT_SECRETS_PREVIOUS) until you remove "
        "them. Restart PaulyOps to use the new secrets."
    )
    _print_copy_lines(result.copy_lines())


__all__ = ["app"]
