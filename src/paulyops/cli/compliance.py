"""``paulyops compliance``: the reproducible compliance report of an organization."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from paulyops.cli.context import CommandGroup, console, open_instance, read_settings
from paulyops.core.errors import NotFoundError

if TYPE_CHECKING:
    from paulyops.core.db.engine import Database

app = typer.Typer(
    cls=CommandGroup,
    help="Compliance reports: preset controls against configuration.",
    no_args_is_help=True,
)


def organization_id(db: Database, ref: str) -> str:
    """Return the id of the organization with id or slug ``ref``.

    Raises:
        NotFoundError: no organization has that id or slug.
    """
    from sqlalchemy import select

    from paulyops.core.db.models import Organization

    clean = ref.strip()
    with db.session() as session:
        if session.get(Organization, clean) is not None:
            return clean
        found = session.scalar(select(Organization.id).where(Organization.slug == clean.lower()))
    if found is None:
        raise NotFoundError(f"--org: expected an organization id (org_...) or slug, got {ref!r}")
    return found


@app.command()
def report(
    org: str = typer.Option(..., "--org", help="the organization's id or slug"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="write the report to this file (default: standard output)"
    ),
) -> None:
    """Print the organization's controls, configured values, evidence and audit chain head.

    The same configuration and audit chain give a byte-identical report.
    """
    from paulyops.services import audit
    from paulyops.services.onboarding.compliance import compliance_report

    settings = read_settings(generate_secrets=False)
    public_key = audit.verifying_key(settings)
    with open_instance(settings) as instance:
        org_id = organization_id(instance.db, org)
        text = compliance_report(instance.db, org_id, public_key=public_key)
    if output is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        return
    output.write_bytes(text)
    console.print(f"Wrote the compliance report of {org_id} to {output}", highlight=False)


__all__ = ["app", "organization_id", "report"]
