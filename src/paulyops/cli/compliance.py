"""``paulyops compliance``: the reproducible compliance report of an organization."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from paulyops.cli.context import CommandGroup, console, open_instance, read_settings

app = typer.Typer(
    cls=CommandGroup,
    help="Compliance reports: preset controls against configuration.",
    no_args_is_help=True,
)


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
    from paulyops.core.security.signatures import instance_verifying_key
    from paulyops.services.onboarding.compliance import compliance_report
    from paulyops.services.organizations import organization_id

    settings = read_settings(generate_secrets=False)
    public_key = instance_verifying_key(settings)
    with open_instance(settings) as instance:
        org_id = organization_id(instance.db, org)
        text = compliance_report(instance.db, org_id, public_key=public_key)
    if output is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        return
    output.write_bytes(text)
    console.print(f"Wrote the compliance report of {org_id} to {output}", highlight=False)


__all__ = ["app", "report"]
