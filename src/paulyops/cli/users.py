"""``paulyops user``: create people, list them, reset passwords, and invite people.

The CLI has local access to the instance, so it acts as the operator (actor ``cli``)
without signing in. Passwords come from a hidden prompt (asked twice) or, for scripts,
from standard input with ``--password-stdin``; they are never taken as an argument,
where they would end up in the shell history and the process list.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, err_console, open_instance, read_settings
from paulyops.core.errors import FieldError, SpecValidationError

if TYPE_CHECKING:
    from paulyops.core.db import Session
    from paulyops.services.auth.organizations import OrganizationView

app = typer.Typer(
    cls=CommandGroup,
    help="People who can sign in: create, list, reset passwords, invite.",
    no_args_is_help=True,
)

DEFAULT_ROLE = "User"  # the same as services.auth.members.DEFAULT_ROLE (help texts)
# A mistyped password at the prompt is asked again; after this many policy failures the
# command stops, so a script stuck on a prompt does not loop forever.
PROMPT_ATTEMPTS = 3

STDIN_HELP = "read the password from standard input (for scripts) instead of a prompt"


def find_organization(session: Session, ref: str) -> OrganizationView:
    """Return the organization with id or slug ``ref``.

    Raises:
        NotFoundError: no organization has that id or slug.
    """
    from paulyops.services.auth.organizations import find_organization as find

    return find(session, ref)


def read_new_password(*, from_stdin: bool, email: str, name: str) -> str:
    """Return a new password from standard input, or from a hidden prompt asked twice.

    At the prompt a password that breaks the policy is refused at once, with the reasons,
    and asked again. From standard input the first line is taken as is (only its line
    break is removed); the service checks the policy.

    Raises:
        SpecValidationError: standard input was empty, or the prompt failed too often.
    """
    from paulyops.core.security.passwords import validate_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise SpecValidationError(
                "no password", [FieldError("password", "expected a password on stdin, got none")]
            )
        return password
    attempts = 0
    while True:
        password = str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
        attempts += 1
        try:
            validate_password(password, email=email, name=name)
        except SpecValidationError as err:
            if attempts >= PROMPT_ATTEMPTS:
                raise
            for item in err.errors:
                err_console.print(f"  • {item.field}: {item.message}", highlight=False)
            err_console.print("Please choose another password.")
            continue
        return password


@app.command()
def create(
    email: str = typer.Option(..., "--email", help="their e-mail address (the sign-in name)"),
    name: str = typer.Option(..., "--name", help="their display name"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
    platform_admin: bool = typer.Option(
        False, "--platform-admin", help="may manage the whole instance (every organization)"
    ),
    org: str | None = typer.Option(
        None, "--org", help="also make them a member of this organization (id or slug)"
    ),
    role: str | None = typer.Option(
        None, "--role", help=f"their role in --org, e.g. Admin (default: {DEFAULT_ROLE})"
    ),
) -> None:
    """Create a user who signs in with an e-mail address and password."""
    from paulyops.services.actor import CLI
    from paulyops.services.auth import members
    from paulyops.services.commands import parse

    if role is not None and org is None:
        raise typer.BadParameter(
            "needs --org, the organization the role is in", param_hint="--role"
        )
    command = parse(
        members.NewUser,
        {
            "email": email,
            "name": name,
            "is_platform_admin": platform_admin,
            "organization": org,
            "role": role,
        },
    )
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        # Check what can fail before asking for a password, so nobody types one twice
        # only to learn the address is taken or the role is misspelled.
        with instance.db.session() as session:
            members.check_new_user(session, command)
        password = read_new_password(from_stdin=password_stdin, email=email, name=name)
        with instance.db.write_session() as session:
            created = members.create_user(
                session, hashing=instance.hashing, command=command, password=password, actor=CLI
            )
    user_id, user_email = created.user_id, created.email
    where = None
    if created.organization_id is not None:
        where = f"{created.role_name} of {created.organization_name} ({created.organization_id})"
    console.print(f"Created {escape(user_email)} ({user_id}).", highlight=False)
    if platform_admin:
        console.print("Platform administrator: may manage every organization.")
    if where is not None:
        console.print(f"Member: {escape(where)}.", highlight=False)
    console.print("They can sign in now with this e-mail address and password.")


@app.command("list")
def list_() -> None:
    """List every user of the instance (no passwords or secrets are shown)."""
    from paulyops.services.auth import members

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.session() as session:
        rows = members.list_users(session)
    if not rows:
        console.print("No users yet. Create one with `paulyops user create`.")
        return
    table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("email", no_wrap=True)
    table.add_column("name")
    table.add_column("platform admin")
    table.add_column("2FA")
    table.add_column("last sign-in (UTC)")
    table.add_column("organizations")
    for user in rows:
        orgs = ", ".join(f"{slug} ({role_name})" for slug, role_name in user.memberships)
        name = escape(user.name) + ("" if user.is_active else " [dim](disabled)[/]")
        table.add_row(
            escape(user.email),
            name,
            "yes" if user.is_platform_admin else "no",
            "on" if user.totp_enabled else "off",
            f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never",
            escape(orgs) or "[dim]none[/]",
        )
    console.print(table)


@app.command("reset-password")
def reset_password(
    email: str = typer.Argument(..., help="the e-mail address of the account"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
) -> None:
    """Set a new password for EMAIL, sign them out everywhere and revoke their API tokens."""
    from paulyops.services.actor import CLI
    from paulyops.services.auth import members, passwords

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        with instance.db.session() as session:
            user_email, user_name = members.user_identity(session, email)
        password = read_new_password(from_stdin=password_stdin, email=user_email, name=user_name)
        with instance.db.write_session() as session:
            revoked = passwords.reset_password(
                session,
                passwords.ResetPasswordCommand(password=password),
                hashing=instance.hashing,
                user=members.require_account(session, user_email),
                actor=CLI,
            )
    sessions = (
        "1 session" if revoked.sessions_revoked == 1 else f"{revoked.sessions_revoked} sessions"
    )
    api_tokens = (
        "1 API token" if revoked.tokens_revoked == 1 else f"{revoked.tokens_revoked} API tokens"
    )
    console.print(
        f"New password set for {escape(user_email)}; signed out {sessions} and revoked "
        f"{api_tokens}.",
        highlight=False,
    )


@app.command()
def invite(
    email: str = typer.Argument(..., help="the e-mail address to invite"),
    name: str = typer.Option(..., "--name", help="their display name"),
    org: str = typer.Option(..., "--org", help="the organization they are invited to (id or slug)"),
    role: str = typer.Option(DEFAULT_ROLE, "--role", help="their role there, e.g. Admin"),
) -> None:
    """Invite EMAIL into an organization; prints a single-use link to give them.

    The link joins that organization only. A new address chooses a password through it;
    an address that has an account signs in with it and accepts. What is printed is the
    same either way.
    """
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.actor import CLI
    from paulyops.services.auth import invitations, roles
    from paulyops.services.commands import parse

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.write_session() as session:
        organization = find_organization(session, org)
        scope = OrgScope(session, organization.id)
        role_row = roles.find_role(scope, role)
        created = invitations.create_invitation(
            scope,
            grant=None,
            command=parse(
                invitations.Invite, {"email": email, "name": name, "role_id": role_row.id}
            ),
            public_url=settings.effective_public_url,
            actor=CLI,
        )
        invitation_id, address = created.invitation.id, created.invitation.email
        where = f"{role_row.name} of {organization.name}"
    console.print(
        f"Invitation {invitation_id} created: {escape(address)} as {escape(where)}.",
        highlight=False,
    )
    console.print("Give them this single-use link (valid 7 days; it is not shown again):")
    console.print(f"  {created.link}", highlight=False, soft_wrap=True)


@app.command()
def invitations(
    org: str = typer.Option(..., "--org", help="the organization (id or slug)"),
) -> None:
    """List the organization's pending invitations (never their links)."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.auth import invitations as service

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.session() as session:
        scope = OrgScope(session, find_organization(session, org).id)
        rows = [
            (row.id, row.email, row.role_name, row.expires_at)
            for row in service.list_pending(scope)
        ]
    if not rows:
        console.print("No pending invitations.")
        return
    table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("id", "email", "role", "expires (UTC)"):
        table.add_column(column, no_wrap=True)
    for invitation_id, address, role_name, expires in rows:
        table.add_row(
            invitation_id, escape(address), escape(role_name), f"{expires:%Y-%m-%d %H:%M}"
        )
    console.print(table)


@app.command("revoke-invitation")
def revoke_invitation(
    invitation_id: str = typer.Argument(..., help="the invitation's id (inv_...)"),
    org: str = typer.Option(..., "--org", help="the organization (id or slug)"),
) -> None:
    """Revoke a pending invitation: its link grants nothing from now on."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.actor import CLI
    from paulyops.services.auth import invitations as service

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.write_session() as session:
        scope = OrgScope(session, find_organization(session, org).id)
        service.revoke_invitation(scope, grant=None, invitation_id=invitation_id, actor=CLI)
    console.print(f"Invitation {escape(invitation_id)} revoked.", highlight=False)


__all__ = ["app", "find_organization", "read_new_password"]
