"""``paulyops package``: tools for agent authors: init, build, keygen, sign, verify, schema,
checksums, run.

Installing agents into an organization is ``paulyops agents``; catalogs and trusted
publishers are ``paulyops marketplace``. These commands work on files only and need no
instance.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, err_console, exit_code_of
from paulyops.core.errors import ConfigError

if TYPE_CHECKING:
    from paulyops.services.marketplace.validate import Report, TrustedKey

app = typer.Typer(
    cls=CommandGroup, help="Build, sign and verify agent packages.", no_args_is_help=True
)

STATUS_STYLE = {"ok": "[green]ok[/]", "failed": "[bold red]failed[/]", "skipped": "[dim]skipped[/]"}


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a reader never sees half a package)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
def init(
    agent_id: str = typer.Argument(..., metavar="NAME", help="the agent id, e.g. acme.hello"),
    directory: Path | None = typer.Option(
        None, "--dir", help="where to create it (default: ./<name>)"
    ),
) -> None:
    """Create a new agent's source folder, with a test of its own."""
    from paulyops.services.marketplace.scaffold import scaffold_agent

    dest = directory or Path(agent_id.partition(".")[2] or agent_id)
    files = scaffold_agent(agent_id, dest)
    for path in files:
        console.print(f"  created {escape(str(path))}", highlight=False)
    console.print(
        f"Next: edit {escape(str(dest / 'agent.py'))}, then `paulyops package build {dest}`.",
        highlight=False,
    )


@app.command()
def build(
    directory: Path = typer.Argument(..., metavar="DIR", help="the agent's source folder"),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="the package file (default: ./<id>-<version>.pauly)"
    ),
    key: Path | None = typer.Option(None, "--key", help="sign with this private key file"),
) -> None:
    """Build the canonical package of an agent (same input, same bytes)."""
    import hashlib

    from paulyops.core.security.signatures import load_private_key
    from paulyops.services.marketplace.build import PACKAGE_SUFFIX, build_package
    from paulyops.services.marketplace.manifest import MANIFEST_NAME, parse_manifest

    private = load_private_key(key) if key else None
    data = build_package(directory, key=private)
    manifest = parse_manifest((directory / MANIFEST_NAME).read_bytes(), bundled=True)
    out = output or Path(f"{manifest.id}-{manifest.version}{PACKAGE_SUFFIX}")
    _write_atomic(out, data)
    state = "signed" if private else "unsigned"
    console.print(
        f"Built {escape(str(out))} ({len(data)} bytes, {state}, "
        f"sha256 {hashlib.sha256(data).hexdigest()}).",
        highlight=False,
    )


@app.command()
def keygen(
    out: Path = typer.Option(
        Path("signing.key"), "--out", help="the private key file (its .pub goes beside it)"
    ),
    publisher: str | None = typer.Option(
        None, "--publisher", help="the namespace the key signs for, noted in the .pub file"
    ),
) -> None:
    """Make a new Ed25519 signing key: FILE (private, 0600) and FILE.pub."""
    from paulyops.core.security.signatures import (
        generate_key,
        public_key_id,
        save_private_key,
        save_public_key,
    )

    public_path = out.with_name(out.name + ".pub")
    if public_path.exists():
        raise ConfigError(f"{public_path}: already exists; refusing to overwrite a key")
    key = generate_key()
    save_private_key(key, out)
    save_public_key(key.public_key(), public_path, publisher=publisher)
    console.print(
        f"Key {public_key_id(key)}: private key {escape(str(out))} (keep it secret, never "
        f"commit it), public key {escape(str(public_path))} (give it to those who trust you).",
        highlight=False,
    )


@app.command()
def sign(
    package: Path = typer.Argument(..., metavar="PKG", help="the .pauly file"),
    key: Path = typer.Option(..., "--key", help="the private key file"),
    output: Path | None = typer.Option(None, "-o", "--output", help="default: sign in place"),
) -> None:
    """Sign a built package (replacing any earlier signature)."""
    from paulyops.core.security.signatures import load_private_key, public_key_id
    from paulyops.services.marketplace.build import sign_package

    private = load_private_key(key)
    data = sign_package(package, private)
    _write_atomic(output or package, data)
    console.print(
        f"Signed {escape(str(output or package))} with key {public_key_id(private)}.",
        highlight=False,
    )


def _trusted(values: list[str]) -> list[TrustedKey]:
    """Parse ``--trust [PUBLISHER=]FILE`` values."""
    from paulyops.core.security.signatures import load_public_key
    from paulyops.services.marketplace.validate import TrustedKey

    keys = []
    for value in values:
        publisher, sep, file = value.partition("=")
        if not sep:
            publisher, file = "", value
        loaded = load_public_key(Path(file))
        publisher = publisher or loaded.publisher or ""
        if not publisher:
            raise ConfigError(
                f"--trust {file}: the key names no publisher; say which it is trusted "
                f"for: --trust PUBLISHER={file}"
            )
        keys.append(TrustedKey(key=loaded.key, publisher=publisher))
    return keys


def _print_report(package: Path, report: Report) -> None:
    table = Table(show_header=True, header_style="bold", title=escape(str(package)))
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("details")
    for check in report.checks:
        table.add_row(check.name, STATUS_STYLE[check.status], escape(check.message))
    console.print(table)


@app.command()
def verify(
    package: Path = typer.Argument(..., metavar="PKG", help="the .pauly file"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    trust: list[str] = typer.Option(
        [], "--trust", metavar="[PUBLISHER=]PUBKEY", help="a trusted public key (repeatable)"
    ),
    allow_unsigned: bool = typer.Option(
        False, "--allow-unsigned", help="accept a package without a signature"
    ),
) -> None:
    """Run every check on a package and print each with its result."""
    from paulyops.services.marketplace.errors import PackageError
    from paulyops.services.marketplace.validate import validate_package

    keys = _trusted(trust)
    if not package.is_file():
        raise ConfigError(f"{package}: no such file")
    report = validate_package(package, trusted=keys, allow_unsigned=allow_unsigned)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(package, report)
    if not report.is_ok:
        if not as_json:
            err_console.print(
                f"[bold red]rejected:[/] {escape(report.failures()[0].message)}", highlight=False
            )
        raise typer.Exit(exit_code_of(PackageError("rejected")))
    if not as_json:
        console.print("[green]Package verified.[/]")


@app.command()
def checksums(
    directory: Path = typer.Argument(
        ..., metavar="DIR", help="an agent's source folder, or a folder of agent folders"
    ),
    check: bool = typer.Option(
        False, "--check", help="write nothing; fail when a CHECKSUMS file is stale"
    ),
) -> None:
    """Write the CHECKSUMS of an agent's source folder (e.g. a bundled agent after an edit).

    Given a folder of agent folders (``src/paulyops/bundled``), does each of them.
    """
    from paulyops.services.marketplace.bundled import (
        agent_folders,
        stale_checksums,
        write_checksums,
    )
    from paulyops.services.marketplace.manifest import MANIFEST_NAME

    if (directory / MANIFEST_NAME).is_file():
        folders = [directory]
    elif directory.is_dir():
        folders = agent_folders(directory)
    else:
        folders = []
    if not folders:
        raise ConfigError(f"{directory}: no {MANIFEST_NAME} here or in its subfolders")
    stale = [folder for folder in folders if stale_checksums(folder)]
    for folder in folders:
        where = escape(str(folder / "CHECKSUMS"))
        if folder not in stale:
            console.print(f"  up to date  {where}", highlight=False)
        elif check:
            console.print(f"  [bold red]stale[/]       {where}", highlight=False)
        else:
            write_checksums(folder)
            console.print(f"  written     {where}", highlight=False)
    if check and stale:
        err_console.print(
            f"{len(stale)} CHECKSUMS file(s) are stale; run `paulyops package checksums "
            f"{escape(str(directory))}`.",
            highlight=False,
        )
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of manifest.toml."""
    from paulyops.services.marketplace.manifest import manifest_json_schema

    typer.echo(json.dumps(manifest_json_schema(), indent=2))


__all__ = ["app"]


@app.command("run")
def run_package_command(
    package: Path = typer.Argument(..., metavar="PKG", help="the .pauly file"),
    inputs: list[Path] = typer.Option(
        ..., "--input", metavar="FILE", help="an input file (repeatable, up to 20)"
    ),
    setting: list[str] = typer.Option(
        [], "--setting", metavar="KEY=VALUE", help="a setting (JSON or text; repeatable)"
    ),
    grant: list[str] = typer.Option(
        [], "--grant", metavar="CAP", help="grant a capability the manifest requests"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the outcome as JSON"),
) -> None:
    """Run a package on local files in the same sandbox as the server; print the result."""
    from paulyops.cli.context import read_settings
    from paulyops.services.agents.local_run import outcome_dict, parse_setting, run_package
    from paulyops.services.agents.sandbox import config_from_settings

    if not package.is_file():
        raise ConfigError(f"{package}: no such file")
    settings = dict(parse_setting(item) for item in setting)
    config = config_from_settings(read_settings(generate_secrets=False))
    result = run_package(package, inputs, settings=settings, grants=grant, config=config)
    outcome = result.outcome
    failed = outcome.error is not None or not all(item.ok for item in outcome.items)
    if as_json:
        typer.echo(json.dumps(outcome_dict(outcome), indent=2))
    else:
        console.print(
            f"Ran {escape(str(package))} in the {outcome.mode} sandbox "
            f"({outcome.duration_ms:.0f} ms).",
            highlight=False,
        )
        for path, item in zip(inputs, outcome.items, strict=True):
            if item.ok:
                console.print(f"[green]ok[/] {escape(str(path))}", highlight=False)
                typer.echo(json.dumps(item.result, indent=2))
            else:
                console.print(
                    f"[bold red]failed[/] {escape(str(path))}: {escape(item.error or '')}",
                    highlight=False,
                )
        if outcome.error:
            err_console.print(
                f"[bold red]batch failed:[/] {escape(outcome.error)}", highlight=False
            )
    if failed:
        raise typer.Exit(1)
