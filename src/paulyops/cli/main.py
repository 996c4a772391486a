"""The ``paulyops`` command: one Typer root, one module per command group."""

from __future__ import annotations

import typer

from paulyops import __version__
from paulyops.cli import (
    agents,
    audit,
    backups,
    catalog,
    compliance,
    db,
    docker,
    documents,
    keys,
    marketplace,
    package,
    service,
    tokens,
    users,
    validate,
)
from paulyops.cli.context import CommandGroup
from paulyops.cli.doctor import doctor
from paulyops.cli.health import health
from paulyops.cli.lifecycle import reset, upgrade
from paulyops.cli.logs import logs
from paulyops.cli.serve import serve
from paulyops.cli.setup import app as setup_app
from paulyops.cli.worker import worker

app = typer.Typer(
    cls=CommandGroup,
    name="paulyops",
    help="PaulyOps: self-hosted operations platform. Start with `paulyops serve`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command()(serve)
app.command()(health)
app.command()(doctor)
app.command()(upgrade)
app.command()(reset)
app.command()(logs)
app.command()(worker)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="user")
app.add_typer(tokens.app, name="token")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(compliance.app, name="compliance")
app.add_typer(setup_app, name="setup", invoke_without_command=True)
app.add_typer(validate.app, name="validate")
app.add_typer(backups.app, name="backup")
app.add_typer(package.app, name="package")
app.add_typer(service.app, name="service")
app.add_typer(docker.app, name="docker")
catalog.register(marketplace.app)  # sources, catalog, publish beside trust/search/show
app.add_typer(marketplace.app, name="marketplace")
agents.register_jobs()  # `agents run` and `agents logs`, from the job layer
app.add_typer(agents.app, name="agents")
app.add_typer(documents.ingest_app, name="ingest")
app.add_typer(documents.documents_app, name="documents")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the PaulyOps version and exit.",
    ),
) -> None:
    """PaulyOps: self-hosted operations platform. Start with `paulyops serve`."""


@app.command()
def version() -> None:
    """Print the PaulyOps version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
