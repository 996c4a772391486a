"""``paulyops keys``: the encryption key ring: status, rotate, reencrypt, retire.

The usual cycle is ``rotate`` (a new active key; the old one keeps decrypting through its
grace period), ``reencrypt`` (move every stored secret to the new key) and ``retire``
(drop the old key once nothing uses it). Each state change writes an instance-level
audit row naming key ids only. Key material appears in exactly one place: the lines
``rotate`` and ``retire`` print for the operator to copy to the instance's other
machines; they go to the terminal and never to a log or the audit trail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, err_console, open_instance, read_settings
from paulyops.core.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from paulyops.core.instance import Instance
    from paulyops.core.security.crypto import FieldCounts, KeyRing

app = typer.Typer(
    cls=CommandGroup, help="Encryption keys for secrets at rest.", no_args_is_help=True
)

KEY_ID_PATTERN = re.compile(r"[0-9a-f]{8}")
TARGET_TYPE = "encryption_key"


def _audit(
    instance: Instance,
    action: str,
    *,
    key_id: str | None,
    changes: Mapping[str, Any],
    outcome: str = "success",
) -> None:
    """Write the instance-level audit row of a key command (key ids and counts only)."""
    from paulyops.services import actor as actors
    from paulyops.services.actor import CLI

    with instance.db.write_session() as session:
        actors.record(
            session,
            CLI,
            action,
            organization_id=None,
            target_type=TARGET_TYPE,
            target_id=key_id,
            outcome=outcome,
            changes=changes,
        )


def _require_current_writers(instance: Instance, command: str, *, key_id: str | None) -> None:
    """Refuse (audited) while a live process still encrypts with an older key."""
    from paulyops.core.processes import require_current_writers

    try:
        require_current_writers(instance.db, instance.keyring.active_key_id, command=command)
    except ConflictError:
        if key_id is not None:  # retire audits its own refusals
            _audit(
                instance,
                "keys.reencrypted",
                key_id=key_id,
                outcome="failure",
                changes={"error": "stale_processes"},
            )
        raise


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


def _deadline(ring: KeyRing, kid: str, now: datetime) -> str:
    when = ring.retired_after(kid)
    if when is None:
        return "no deadline"
    if when <= now:
        return f"[bold red]expired {when:%Y-%m-%d %H:%M} UTC[/]"
    return f"{when:%Y-%m-%d %H:%M} UTC"


@app.command()
def status() -> None:
    """Show the active key, the previous keys with their grace end, and what each encrypts."""
    from paulyops.core.db.models import utcnow
    from paulyops.core.processes import live_processes
    from paulyops.core.security.crypto import MALFORMED, keys_in_use

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        ring = instance.keyring
        counts = keys_in_use(instance.db, ring)
        processes = live_processes(instance.db)
    now = utcnow()
    table = Table(show_header=True, header_style="bold")
    table.add_column("key id", no_wrap=True)
    table.add_column("state")
    table.add_column("decrypts until")
    table.add_column("stored values", justify="right")
    for kid in ring.key_ids:
        active = kid == ring.active_key_id
        table.add_row(
            kid,
            "[green]active[/]" if active else "previous",
            "—" if active else _deadline(ring, kid, now),
            str(counts.get(kid, 0)),
        )
    strays = {kid: n for kid, n in counts.items() if kid not in ring.key_ids}
    for kid, number in strays.items():
        state = "not ring ciphertext" if kid == MALFORMED else "unknown key"
        table.add_row(escape(kid), f"[bold red]{state}[/]", "cannot decrypt", str(number))
    console.print(table)
    for process in processes:
        note = "" if process.key_id == ring.active_key_id else " [bold yellow](older key)[/]"
        console.print(
            f"Running: {escape(process.label)} ({process.kind}) writes with key "
            f"{process.key_id}{note}",
            highlight=False,
        )
    old_in_use = [k for k in ring.key_ids if k != ring.active_key_id and counts.get(k, 0)]
    unused = [k for k in ring.key_ids if k != ring.active_key_id and not counts.get(k, 0)]
    if old_in_use:
        console.print("Run `paulyops keys reencrypt` to move every value to the active key.")
    for kid in unused:
        console.print(f"Key {kid} encrypts nothing: `paulyops keys retire {kid}` removes it.")
    if strays:
        err_console.print(
            "[bold red]Some stored values use a key this machine does not have.[/] Add it to "
            "ENCRYPTION_KEYS_PREVIOUS (from the machine that wrote them), then reencrypt."
        )


@app.command()
def rotate() -> None:
    """Make a new active key in .env.local; the old key keeps decrypting for a grace period."""
    from paulyops.core.security.crypto import rotate_env_file
    from paulyops.core.settings import ENV_FILE_NAME

    settings = read_settings(generate_secrets=False)
    env_path = settings.root / ENV_FILE_NAME
    # Open the instance first: the audit row needs the database, and an unreachable
    # database should stop the rotation before .env.local changes.
    with open_instance(settings) as instance:
        result = rotate_env_file(env_path)
        _audit(
            instance,
            "keys.rotated",
            key_id=result.new_key_id,
            changes={
                "new_key_id": result.new_key_id,
                "previous_key_ids": list(result.previous_key_ids),
                "retire_after": result.retire_after.isoformat(),
            },
        )
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
    batch_size: int = typer.Option(
        200, "--batch-size", min=1, max=10_000, help="rows per transaction"
    ),
) -> None:
    """Move every stored secret to the active key (safe to stop and run again)."""
    from paulyops.core.processes import live_processes
    from paulyops.core.security.crypto import DecryptionError, keys_in_use, reencrypt_all

    progress: dict[str, FieldCounts] = {}

    def on_batch(field: str, counts: FieldCounts) -> None:
        progress[field] = counts
        console.print(
            f"  {field}: {counts.scanned} checked, {counts.reencrypted} re-encrypted, "
            f"{counts.skipped} already current",
            highlight=False,
        )

    def total() -> int:
        # A total, not per field: the audit log redacts keys named like secrets
        # ("users.totp_secret"), which would hide the numbers.
        return sum(c.reencrypted for c in progress.values())

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        active = instance.keyring.active_key_id
        _require_current_writers(instance, "keys reencrypt", key_id=active)
        console.print(f"Re-encrypting stored secrets to key {active}…", highlight=False)
        try:
            result = reencrypt_all(
                instance.db, instance.keyring, batch_size=batch_size, on_batch=on_batch
            )
        except (DecryptionError, KeyboardInterrupt) as err:
            # Batches done so far stay committed; a second run skips them.
            _audit(
                instance,
                "keys.reencrypted",
                key_id=active,
                outcome="failure",
                changes={"reencrypted": total(), "error": type(err).__name__},
            )
            err_console.print(
                "Stopped. Values re-encrypted so far are saved; "
                "run `paulyops keys reencrypt` again to continue."
            )
            if isinstance(err, KeyboardInterrupt):
                raise typer.Exit(130) from None
            raise
        concurrent = sum(c.changed_concurrently for c in result.fields.values())
        _audit(
            instance,
            "keys.reencrypted",
            key_id=active,
            changes={"reencrypted": total(), "changed_concurrently": concurrent},
        )
        counts = keys_in_use(instance.db, instance.keyring)
        # A process started with an old ring while this ran would write old-key values
        # again: only claim "encrypts nothing" while every live process is current.
        late = [p for p in live_processes(instance.db) if p.key_id != active]
    console.print(
        f"Done: {result.reencrypted} value(s) re-encrypted to key {active}.", highlight=False
    )
    if concurrent:
        console.print(f"{concurrent} value(s) changed while this ran; run it again to check them.")
    for process in late:
        err_console.print(
            f"[bold yellow]warning:[/] {process.label} started meanwhile and writes with key "
            f"{process.key_id}; update it, then run `paulyops keys reencrypt` again.",
            highlight=False,
        )
    for kid, number in counts.items():
        if kid != active and number == 0 and not late:
            console.print(f"Key {kid} encrypts nothing now: `paulyops keys retire {kid}`.")


@app.command()
def retire(
    key_id: str = typer.Argument(..., help="the 8-character key id from `paulyops keys status`"),
) -> None:
    """Remove a previous key from .env.local once no stored value uses it."""
    from paulyops.core.security.crypto import retire_key
    from paulyops.core.settings import ENV_FILE_NAME

    kid = key_id.strip().lower()
    if not KEY_ID_PATTERN.fullmatch(kid):
        # Not echoed: an operator may have pasted the key itself instead of its id.
        raise typer.BadParameter(
            "expected a key id of 8 hex characters, as `paulyops keys status` shows "
            "(the id, not the key)",
            param_hint="KEY_ID",
        )
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        try:
            _require_current_writers(instance, "keys retire", key_id=None)
            result = retire_key(settings.root / ENV_FILE_NAME, instance.db, instance.keyring, kid)
        except (ConflictError, NotFoundError):
            _audit(instance, "keys.retired", key_id=kid, outcome="failure", changes={"key_id": kid})
            raise
        _audit(
            instance,
            "keys.retired",
            key_id=kid,
            changes={"key_id": kid, "previous_key_ids": list(result.previous_key_ids)},
        )
    console.print(
        f"Retired key {kid}: removed from ENCRYPTION_KEYS_PREVIOUS in {result.env_path}.",
        highlight=False,
    )
    _print_copy_lines(result.copy_lines())


__all__ = ["app"]


@app.command("rotate-signing")
def rotate_signing() -> None:
    """Give SESSION_SECRET and JWT_SECRET new values; the old ones keep verifying."""
    from paulyops.core.settings import ENV_FILE_NAME, SIGNING_SECRETS, rotate_signing_secrets

    settings = read_settings(generate_secrets=False)
    env_path = settings.root / ENV_FILE_NAME
    with open_instance(settings) as instance:
        changed = rotate_signing_secrets(env_path)
        _audit(
            instance,
            "keys.signing_rotated",
            key_id=None,
            changes={"rotated": sorted(SIGNING_SECRETS)},
        )
    console.print(
        "New SESSION_SECRET and JWT_SECRET written; the previous values stay accepted "
        "(PAULYOPS_SESSION_SECRETS_PREVIOUS, PAULYOPS_JWT_SECRETS_PREVIOUS) until you remove "
        "them. Restart PaulyOps to use the new secrets."
    )
    _print_copy_lines([f"{key}={value}" for key, value in changed.items()])
