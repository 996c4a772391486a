"""``paulyops token``: API tokens for scripts: create, list and revoke.

A token acts for one member of one organization and can never hold a permission that
member lacks. Its secret is printed once, alone on standard output (so
``TOKEN=$(paulyops token create ... --quiet)`` captures exactly the secret); PaulyOps
keeps only its hash.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, err_console, open_instance, read_settings
from paulyops.cli.users import find_organization
from paulyops.core.errors import PermissionDeniedError

if TYPE_CHECKING:
    from paulyops.core.db import Session

app = typer.Typer(
    cls=CommandGroup, help="API tokens for scripts and integrations.", no_args_is_help=True
)

ORG_HELP = "the organization (id or slug)"
MAX_EXPIRES_DAYS = 3650
# Below this terminal width `token list` prints one block per token instead of a table.
WIDE_TABLE = 120


def holder_email(session: Session, email: str) -> str:
    """Return the normalized address of the member a token is for."""
    from paulyops.services.auth import members

    return members.user_identity(session, email)[0]


@app.command()
def create(
    org: str = typer.Option(..., "--org", help=ORG_HELP),
    user: str = typer.Option(..., "--user", help="e-mail of the member the token acts for"),
    name: str = typer.Option(..., "--name", help="what the token is for, e.g. 'backup script'"),
    permission: list[str] = typer.Option(
        ...,
        "--permission",
        "-p",
        help="a permission the token holds, e.g. storage:read (repeat for more)",
    ),
    expires_days: int | None = typer.Option(
        None,
        "--expires-days",
        min=1,
        max=MAX_EXPIRES_DAYS,
        help="days until the token stops working (default: never)",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the secret"),
) -> None:
    """Create an API token; its secret is shown this one time only."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.actor import CLI
    from paulyops.services.auth import members, tokens
    from paulyops.services.commands import parse

    expires_at = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    command = parse(
        tokens.CreateToken, {"name": name, "permissions": permission, "expires_at": expires_at}
    )
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.write_session() as session:
        organization = find_organization(session, org)
        grant = members.member_grant(session, organization.id, user)
        holder = holder_email(session, user)
        try:
            issued = tokens.create_token(
                OrgScope(session, organization.id),
                grant=grant,
                command=command,
                actor=CLI,
                # A platform administrator's token may carry metrics:read and health:read
                # (a Prometheus scraper's token); nobody else's.
                platform_permissions=tokens.platform_permissions_of(session, grant.user_id),
            )
        except PermissionDeniedError as err:
            # The service speaks to a signed-in holder ("you lack"); here the
            # operator creates the token for someone else, so name that person.
            lacking = ", ".join(sorted(set(command.permissions) - grant.grantable))
            raise PermissionDeniedError(
                f"--permission: {holder} is {grant.role_name} of "
                f"{organization.slug} and does not hold {lacking} through that role; a "
                "token can only hold permissions its holder's role gives (never "
                "delegated ones)"
            ) from err
        view = tokens.token_view(issued.row)
        token_id, perms, org_slug = view.id, view.permissions, organization.slug
    if not quiet:
        expiry = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never expires"
        err_console.print(
            f"Created API token {token_id} for {escape(holder)} in {escape(org_slug)} "
            f"with {', '.join(perms)}; it {expiry}.",
            highlight=False,
        )
    # The secret goes alone to stdout through plain echo: no markup, no line wrapping.
    typer.echo(issued.secret)
    if not quiet:
        err_console.print(
            "[bold yellow]Store it now:[/] this is the only time the token is shown; "
            "PaulyOps keeps only its hash. Lost it? Revoke it and create a new one.",
            highlight=False,
        )


@app.command("list")
def list_(org: str = typer.Option(..., "--org", help=ORG_HELP)) -> None:
    """List the organization's live API tokens (never their secrets)."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.auth import tokens

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.session() as session:
        organization = find_organization(session, org)
        rows = tokens.list_tokens(OrgScope(session, organization.id))
        org_slug = organization.slug
    if not rows:
        console.print(f"{escape(org_slug)} has no API tokens.")
        return
    fields = [
        {
            "id": row.id,
            "name": escape(row.name),
            "holder": escape(row.holder_email),
            "prefix": f"{row.prefix}…",
            "permissions": ", ".join(row.permissions),
            "expires": f"{row.expires_at:%Y-%m-%d}" if row.expires_at else "never",
            "last used": f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never",
        }
        for row in rows
    ]
    if console.width < WIDE_TABLE:
        # Seven columns with 30-character ids do not fit a narrow terminal: one block
        # per token keeps the id and prefix whole, so they can be copied.
        for item in fields:
            console.print(f"[bold]{item.pop('id')}[/]  {item.pop('name')}", highlight=False)
            for label, value in item.items():
                console.print(f"  {label + ':':<13}{value}", highlight=False)
        return
    table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD)
    for label in fields[0]:
        table.add_column(label, no_wrap=label in {"id", "prefix"})
    for item in fields:
        table.add_row(*item.values())
    console.print(table)


@app.command()
def revoke(
    token_id: str = typer.Argument(..., help="the token's id (tok_...), from `token list`"),
    org: str = typer.Option(..., "--org", help=ORG_HELP),
) -> None:
    """Revoke an API token: it stops working at once."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.actor import CLI
    from paulyops.services.auth import tokens

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.write_session() as session:
        organization = find_organization(session, org)
        # The local operator may revoke any token of the organization.
        tokens.revoke_token(
            OrgScope(session, organization.id),
            grant=None,
            token_id=token_id.strip(),
            actor=CLI,
        )
    console.print(f"Revoked API token {escape(token_id.strip())}.", highlight=False)


__all__ = ["app"]
