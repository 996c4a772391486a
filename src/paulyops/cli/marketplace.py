"""``paulyops marketplace``: trusted publishers, and browsing the marketplace.

``trust add | list | revoke`` manage the instance trust store (instance-level, each
change an audit row); ``search`` and ``show`` list the stored packages, instance-wide or
as one organization sees them (``--org``). Catalog sources and publishing are commands of
this group too, in their own module.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, open_instance, read_settings
from paulyops.core.errors import ConfigError

app = typer.Typer(
    cls=CommandGroup,
    help="Trusted publishers, catalogs and the agents they offer.",
    no_args_is_help=True,
)
trust_app = typer.Typer(
    cls=CommandGroup,
    help="The publisher keys this instance trusts, and revocations.",
    no_args_is_help=True,
)
app.add_typer(trust_app, name="trust")

ORG_HELP = "show what this organization sees (id or slug), its own uploads included"
MAX_KEY_FILE = 4096


def _read_key_file(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_FILE + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the public key: {err.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise ConfigError(f"{path}: larger than a public key file can be ({MAX_KEY_FILE} bytes)")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a PEM public key (not ASCII text)") from None


def _publisher_comment(text: str) -> str | None:
    from paulyops.core.security.signatures import PUBLISHER_COMMENT  # keeps --version light

    for line in text.splitlines():
        if line.startswith(PUBLISHER_COMMENT):
            return line[len(PUBLISHER_COMMENT) :].strip() or None
    return None


@trust_app.command("add")
def trust_add(
    key_file: Path = typer.Argument(..., metavar="KEYFILE", help="the publisher's .pub file"),
    publisher: str | None = typer.Option(
        None,
        "--publisher",
        help="the namespace the key signs for (acme -> acme.*); default: the file's "
        "'# publisher:' line",
    ),
) -> None:
    """Trust a publisher's public key for its namespace."""
    from paulyops.services.actor import CLI
    from paulyops.services.commands import parse
    from paulyops.services.marketplace import trust

    text = _read_key_file(key_file)
    chosen = publisher or _publisher_comment(text)
    if not chosen:
        raise ConfigError(
            f"{key_file}: the key names no publisher; say which it is trusted for: --publisher NAME"
        )
    command = parse(trust.TrustKey, {"publisher": chosen.strip(), "publicKey": text})
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.write_session() as session:
        view = trust.trust_key(session, command, actor=CLI)
    console.print(
        f"Trusted key {view.key_id} for {escape(view.namespace)} (fingerprint {view.fingerprint}).",
        highlight=False,
    )


@trust_app.command("list")
def trust_list(
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List the trusted keys and the revocations."""
    from paulyops.services.marketplace import trust

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.session() as session:
        listing = trust.list_trust(session)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "keys": [
                        {
                            "keyId": k.key_id,
                            "fingerprint": k.fingerprint,
                            "namespace": k.namespace,
                            "addedAt": k.created_at.isoformat(),
                            "revoked": k.revoked_at is not None,
                        }
                        for k in listing.keys
                    ],
                    "revocations": [
                        {
                            "kind": r.kind,
                            "target": r.target,
                            "reason": r.reason,
                            "revokedAt": r.created_at.isoformat(),
                        }
                        for r in listing.revocations
                    ],
                },
                indent=2,
            )
        )
        return
    if not listing.keys:
        console.print("No publisher keys are trusted yet (`paulyops marketplace trust add`).")
    else:
        table = Table(box=box.SIMPLE_HEAD, header_style="bold", title="Trusted publisher keys")
        for column in ("key id", "namespace", "added", "status", "fingerprint"):
            table.add_column(column, no_wrap=column in {"key id", "fingerprint"})
        for k in listing.keys:
            status = "[red]revoked[/]" if k.revoked_at else "[green]trusted[/]"
            table.add_row(
                k.key_id, escape(k.namespace), f"{k.created_at:%Y-%m-%d}", status, k.fingerprint
            )
        console.print(table)
    if listing.revocations:
        table = Table(box=box.SIMPLE_HEAD, header_style="bold", title="Revocations")
        for column in ("revoked", "when", "reason"):
            table.add_column(column)
        for r in listing.revocations:
            table.add_row(escape(r.target), f"{r.created_at:%Y-%m-%d}", escape(r.reason) or "—")
        console.print(table)


@trust_app.command("revoke")
def trust_revoke(
    key: str | None = typer.Argument(
        None, metavar="[KEY]", help="the key id (8 hex characters) or fingerprint"
    ),
    agent: str | None = typer.Option(None, "--agent", help="revoke one version of this agent"),
    version: str | None = typer.Option(None, "--version", help="the version to revoke"),
    reason: str = typer.Option("", "--reason", help="why (kept in the audit trail)"),
) -> None:
    """Revoke a key, or one package version: nothing signed by it validates again."""
    from paulyops.services.actor import CLI
    from paulyops.services.commands import parse
    from paulyops.services.marketplace import trust

    fields: dict[str, object] = {"reason": reason}
    if key is not None:
        fields["key"] = key.strip().lower()
    if agent is not None:
        fields["agentId"] = agent.strip()
    if version is not None:
        fields["version"] = version.strip()
    command = parse(trust.RevokeTrust, fields)
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.write_session() as session:
        view = trust.revoke(session, command, actor=CLI)
    console.print(
        f"Revoked {escape(view.target)}: nothing signed by it validates from now on.",
        highlight=False,
    )


@app.command()
def search(
    text: str = typer.Argument("", metavar="[TEXT]", help="words in the id, name or description"),
    industry: str | None = typer.Option(None, "--industry", help="e.g. legal"),
    capability: str | None = typer.Option(None, "--capability", help="e.g. network"),
    publisher: str | None = typer.Option(None, "--publisher", help="e.g. acme"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Search the agents in the marketplace."""
    from paulyops.cli.users import find_organization
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.commands import parse
    from paulyops.services.marketplace import listing

    fields = {"q": text, "industry": industry, "capability": capability, "publisher": publisher}
    query = parse(listing.SearchAgents, {k: v for k, v in fields.items() if v is not None})
    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.session() as session:
        visible = OrgScope(session, find_organization(session, org).id) if org else session
        found = listing.search_agents(visible, query)
    if as_json:
        typer.echo(json.dumps([a.model_dump(mode="json", by_alias=True) for a in found], indent=2))
        return
    if not found:
        console.print("No agents match.")
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for column in ("id", "name", "version", "trust", "capabilities"):
        table.add_column(column, no_wrap=column in {"id", "version"})
    for a in found:
        trust_text = a.badge_label + (" [red](revoked)[/]" if a.revoked else "")
        table.add_row(
            a.id,
            escape(a.name),
            a.latest_version,
            trust_text,
            ", ".join(a.capabilities) or "—",
        )
    console.print(table)


@app.command()
def show(
    agent_id: str = typer.Argument(..., metavar="ID", help="the agent id, e.g. acme.reader"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show one agent: versions, trust, and the capabilities it asks for in plain words."""
    from paulyops.cli.users import find_organization
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.marketplace import listing

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance, instance.db.session() as session:
        visible = OrgScope(session, find_organization(session, org).id) if org else session
        detail = listing.agent_detail(visible, agent_id.strip())
    if as_json:
        typer.echo(json.dumps(detail.model_dump(mode="json", by_alias=True), indent=2))
        return
    console.print(f"[bold]{escape(detail.name)}[/] ({detail.id})", highlight=False)
    console.print(escape(detail.description), highlight=False)
    console.print(
        f"Publisher {escape(detail.publisher)} · license {escape(detail.license)} · "
        f"trust: {escape(detail.badge_label)}"
        + (f" · key {detail.key_id}" if detail.key_id else ""),
        highlight=False,
    )
    console.print("\n[bold]It asks to[/]", highlight=False)
    if not detail.capability_details:
        console.print("  nothing beyond reading the files it is given.")
    for cap in detail.capability_details:
        console.print(f"  • {escape(cap.description)} ({cap.name})", highlight=False)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title="Versions")
    for column in ("version", "trust", "signature", "size", "sha256"):
        table.add_column(column, no_wrap=True)
    for v in detail.all_versions:
        label = v.badge_label + (
            f" [red](revoked: {escape(v.revoked_reason or '')})[/]" if v.revoked else ""
        )
        table.add_row(v.version, label, v.signature_state, str(v.size), v.sha256[:16] + "…")
    console.print(table)


__all__ = ["app"]
