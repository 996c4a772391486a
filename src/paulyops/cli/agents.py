"""``paulyops agents``: the agents of one organization.

``list | show ID | install ID[@VERSION] | update ID | uninstall ID | enable ID | disable ID |
configure ID --set k=v [--secret k] | verify-installed [--json] | repair [ID] | release ID``,
each with ``--org SLUG`` (default: the only organization). Every change takes ``--plan``
(show what it would touch, change nothing); installing or updating to a version that
asks for capabilities shows them in plain words and asks before granting them all
(``--yes`` grants without asking). ``agents run`` and ``agents logs`` are added by the
job layer through :func:`paulyops.cli.jobs.register`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, open_instance, read_settings
from paulyops.core.errors import FieldError, SpecValidationError

if TYPE_CHECKING:
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.agents.installations import ChangeOutcome, InstallationView

app = typer.Typer(
    cls=CommandGroup,
    help="The agents of one organization: install, update, configure, verify.",
    no_args_is_help=True,
)

ORG_HELP = "the organization (id or slug); default: the only one"
PLAN_HELP = "show the files, grants, settings and dependent agents it would touch; change nothing"
JSON_HELP = "print JSON"


@contextlib.contextmanager
def _scope(org: str | None, *, write: bool = True) -> Iterator[tuple[OrgScope, Path]]:
    """Open the instance and the organization's scope, with the per-machine agent cache."""
    from paulyops.core.db.scoped import OrgScope
    from paulyops.services.agents.installations import agent_cache
    from paulyops.services.auth.organizations import organization_or_only

    settings = read_settings(generate_secrets=False)
    with open_instance(settings) as instance:
        opener = instance.db.write_session if write else instance.db.session
        with opener() as session:
            found = organization_or_only(session, org)
            yield OrgScope(session, found.id), agent_cache(settings.data_dir)


def _actor() -> Any:
    from paulyops.services.actor import CLI

    return CLI


def _print_plan(outcome: ChangeOutcome) -> None:
    plan = outcome.plan
    versions = " -> ".join(v for v in (plan.from_version, plan.to_version) if v)
    console.print(f"[bold]{plan.action}[/] {plan.agent_id} {versions}", highlight=False)
    if plan.grants.requested:
        console.print("  It asks to:")
        for cap in plan.grants.requested:
            console.print(f"    • {escape(cap.description)} ({cap.name})", highlight=False)
    if plan.grants.new:
        console.print(f"  New capabilities: {', '.join(plan.grants.new)}", highlight=False)
    if plan.grants.dropped:
        console.print(f"  Capabilities dropped: {', '.join(plan.grants.dropped)}", highlight=False)
    if plan.files_added:
        console.print(
            f"  Files to write: {len(plan.files_added)} under {plan.files_added[0].split('/')[0]}/",
            highlight=False,
        )
    for path in plan.files_removed:
        console.print(f"  Folder to remove: {path}", highlight=False)
    settings = plan.settings
    for label, names in (
        ("Settings to set", settings.set if plan.action == "configure" else []),
        ("Secret settings to set", settings.secrets_set),
        ("Settings to remove", settings.removed),
    ):
        if names:
            console.print(f"  {label}: {', '.join(names)}", highlight=False)
    if plan.dependents:
        console.print(f"  Agents that depend on it: {', '.join(plan.dependents)}", highlight=False)
    for note in plan.notes:
        console.print(f"  Note: {escape(note)}", highlight=False)


def _confirm_grant(outcome: ChangeOutcome, yes: bool) -> list[str]:
    """Show what the agent asks for; return the grant once confirmed (all of it)."""
    names = [cap.name for cap in outcome.plan.grants.requested]
    _print_plan(outcome)
    if not names or yes:
        return names
    if not typer.confirm("Grant all of these capabilities?", default=False):
        console.print("Nothing was granted and nothing changed.")
        raise typer.Exit(1)
    return names


def _done(outcome: ChangeOutcome, as_json: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps(outcome.model_dump(mode="json", by_alias=True), indent=2))
        return
    if not outcome.applied:
        _print_plan(outcome)
    console.print(escape(outcome.message), highlight=False)


def _split_ref(ref: str) -> tuple[str, str | None]:
    agent_id, _, version = ref.strip().partition("@")
    return agent_id, version or None


@app.command("list")
def list_agents(
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the organization's installed agents."""
    from paulyops.services.agents import lifecycle

    with _scope(org, write=False) as (scope, _cache):
        found = lifecycle.list_installations(scope)
    if as_json:
        typer.echo(json.dumps([v.model_dump(mode="json", by_alias=True) for v in found], indent=2))
        return
    if not found:
        console.print("No agents are installed (`paulyops agents install ID`).")
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for column in ("agent", "version", "status", "capabilities", "notes"):
        table.add_column(column, no_wrap=column in {"agent", "version"})
    for v in found:
        table.add_row(
            v.agent_id,
            v.version,
            v.status,
            ", ".join(c.name for c in v.granted_capabilities) or "—",
            escape(_notes(v)),
        )
    console.print(table)


def _notes(v: InstallationView) -> str:
    notes = []
    if v.quarantined_reason:
        notes.append(f"quarantined: {v.quarantined_reason}")
    if v.awaiting_grant:
        notes.append(f"{v.awaiting_grant.version} awaits a grant")
    if v.previous_version:
        notes.append(f"previous {v.previous_version}")
    unset = [name for name, state in v.secrets.items() if state == "not set"]
    if unset:
        notes.append(f"secrets not set: {', '.join(unset)}")
    return "; ".join(notes)


@app.command()
def show(
    agent: str = typer.Argument(..., metavar="ID", help="the agent id (or installation id)"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show one installed agent: version, status, grants and settings (secrets as set/not set)."""
    from paulyops.services.agents import lifecycle

    with _scope(org, write=False) as (scope, _cache):
        v = lifecycle.show(scope, agent)
    if as_json:
        typer.echo(json.dumps(v.model_dump(mode="json", by_alias=True), indent=2))
        return
    console.print(f"[bold]{escape(v.name)}[/] ({v.agent_id}) {v.version}", highlight=False)
    console.print(f"Installation {v.id} · status {v.status} · source {v.source}", highlight=False)
    console.print("Granted:" if v.granted_capabilities else "Granted: nothing beyond its inputs")
    for cap in v.granted_capabilities:
        console.print(f"  • {escape(cap.description)} ({cap.name})", highlight=False)
    for name, value in sorted(v.settings.items()):
        console.print(f"Setting {name} = {escape(json.dumps(value))}", highlight=False)
    for name, state in sorted(v.secrets.items()):
        console.print(f"Secret {name}: {state}", highlight=False)
    notes = _notes(v)
    if notes:
        console.print(escape(notes), highlight=False)


@app.command()
def install(
    agent: str = typer.Argument(..., metavar="ID[@VERSION]", help="e.g. acme.reader@1.2.0"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    plan: bool = typer.Option(False, "--plan", help=PLAN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="grant what it asks for without asking"),
    catalog: str | None = typer.Option(
        None, "--catalog", help="fetch the package from this catalog source into the store first"
    ),
) -> None:
    """Install a stored agent package (an upload, a catalog's or a bundled one)."""
    from paulyops.services.agents import lifecycle
    from paulyops.services.commands import parse

    agent_id, version = _split_ref(agent)
    fields: dict[str, Any] = {"agentId": agent_id, "version": version}
    if catalog:
        settings = read_settings(generate_secrets=False)
        with open_instance(settings) as instance:
            fields = {
                "packageId": lifecycle.fetch_from_catalog(
                    instance.db, catalog, agent_id, version, actor=_actor()
                )
            }
    preview = parse(lifecycle.InstallAgent, {**fields, "plan": True})
    with _scope(org) as (scope, cache):
        planned = lifecycle.install(scope, preview, actor=_actor(), cache=cache)
    if plan:
        _done(planned)
        return
    grant = _confirm_grant(planned, yes)
    command = parse(lifecycle.InstallAgent, {**fields, "grant": grant})
    with _scope(org) as (scope, cache):
        outcome = lifecycle.install(scope, command, actor=_actor(), cache=cache)
    console.print(escape(outcome.message), highlight=False)


@app.command()
def update(
    agent: str = typer.Argument(..., metavar="ID[@VERSION]", help="default: the newest stored"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    plan: bool = typer.Option(False, "--plan", help=PLAN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="grant new capabilities without asking"),
) -> None:
    """Update an installed agent; new capabilities are shown and granted only when confirmed."""
    from paulyops.services.agents import lifecycle
    from paulyops.services.commands import parse

    agent_id, version = _split_ref(agent)
    fields: dict[str, Any] = {"version": version}
    with _scope(org) as (scope, cache):
        planned = lifecycle.update(
            scope,
            agent_id,
            parse(lifecycle.UpdateAgent, {**fields, "plan": True}),
            actor=_actor(),
            cache=cache,
        )
    if plan or planned.noop:
        _done(planned)
        return
    if planned.plan.grants.new:
        fields["grant"] = _confirm_grant(planned, yes)
    with _scope(org) as (scope, cache):
        outcome = lifecycle.update(
            scope, agent_id, parse(lifecycle.UpdateAgent, fields), actor=_actor(), cache=cache
        )
    console.print(escape(outcome.message), highlight=False)


@app.command()
def uninstall(
    agent: str = typer.Argument(..., metavar="ID"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    plan: bool = typer.Option(False, "--plan", help=PLAN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
) -> None:
    """Uninstall an agent: its files and secrets go; audit, events and job records stay."""
    from paulyops.services.agents import lifecycle

    with _scope(org) as (scope, cache):
        planned = lifecycle.uninstall(
            scope, agent, lifecycle.PlanOnly(plan=True), actor=_actor(), cache=cache
        )
    if plan:
        _done(planned)
        return
    if not yes:
        _print_plan(planned)
        if not typer.confirm(f"Uninstall {planned.plan.agent_id}?", default=False):
            console.print("Nothing changed.")
            raise typer.Exit(1)
    with _scope(org) as (scope, cache):
        outcome = lifecycle.uninstall(
            scope, agent, lifecycle.PlanOnly(), actor=_actor(), cache=cache
        )
    console.print(escape(outcome.message), highlight=False)


def _toggle(agent: str, org: str | None, plan: bool, enabled: bool) -> None:
    from paulyops.services.agents import lifecycle

    with _scope(org) as (scope, _cache):
        outcome = lifecycle.set_enabled(
            scope, agent, enabled, lifecycle.PlanOnly(plan=plan), actor=_actor()
        )
    _done(outcome)


@app.command()
def enable(
    agent: str = typer.Argument(..., metavar="ID"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    plan: bool = typer.Option(False, "--plan", help=PLAN_HELP),
) -> None:
    """Enable an installed agent."""
    _toggle(agent, org, plan, True)


@app.command()
def disable(
    agent: str = typer.Argument(..., metavar="ID"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    plan: bool = typer.Option(False, "--plan", help=PLAN_HELP),
) -> None:
    """Disable an installed agent (it keeps its settings and grants)."""
    _toggle(agent, org, plan, False)


def _value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@app.command()
def configure(
    agent: str = typer.Argument(..., metavar="ID"),
    assignments: list[str] = typer.Option(
        [], "--set", metavar="FIELD=VALUE", help='a setting (JSON values: 5, true, "text")'
    ),
    secrets: list[str] = typer.Option(
        [], "--secret", metavar="FIELD", help="a secret setting, asked for without echo"
    ),
    unset: list[str] = typer.Option([], "--unset", metavar="FIELD", help="clear a setting"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    plan: bool = typer.Option(False, "--plan", help=PLAN_HELP),
) -> None:
    """Change an agent's settings; secret ones are encrypted and never shown again."""
    from paulyops.services.agents import lifecycle
    from paulyops.services.commands import parse

    values: dict[str, Any] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise SpecValidationError(
                "--set: expected FIELD=VALUE",
                [FieldError("set", f"expected FIELD=VALUE, got {item!r}")],
            )
        values[name.strip()] = _value(raw)
    for name in secrets:
        values[name.strip()] = typer.prompt(f"{name} (hidden)", hide_input=True)
    command = parse(lifecycle.ConfigureAgent, {"settings": values, "unset": unset, "plan": plan})
    with _scope(org) as (scope, _cache):
        outcome = lifecycle.configure(scope, agent, command, actor=_actor())
    _done(outcome)


@app.command("verify-installed")
def verify_installed(
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check every installed agent's files against its stored archive.

    Missing, modified and extra files are reported (``repair`` restores them); an
    installation whose stored archive no longer matches is quarantined. Exits 1 when
    anything was found.
    """
    from paulyops.services.agents import integrity

    with _scope(org) as (scope, cache):
        found = integrity.verify_installed(scope, cache, actor=_actor())
    bad = [f for f in found if f.problems]
    if as_json:
        typer.echo(json.dumps([f.model_dump(mode="json", by_alias=True) for f in found], indent=2))
    elif not found:
        console.print("No agents are installed.")
    else:
        for f in found:
            state = "ok" if not f.problems else "[red]problems[/]"
            console.print(f"{f.agent_id} {f.version}: {state}", highlight=False)
            for problem in f.problems:
                console.print(f"  {escape(problem)}", highlight=False)
            if f.quarantined:
                console.print("  quarantined (its stored archive no longer matches)")
            if f.advice:
                console.print(f"  → {escape(f.advice)}", highlight=False)
    if bad:
        raise typer.Exit(1)


@app.command()
def repair(
    agent: str | None = typer.Argument(None, metavar="[ID]", help="default: every agent"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
) -> None:
    """Re-extract installed agents' files from their stored archives."""
    from paulyops.services.agents import integrity

    with _scope(org) as (scope, cache):
        done = integrity.repair(scope, agent, cache, actor=_actor())
    failed = False
    for r in done:
        console.print(escape(r.message), highlight=False)
        for item in r.fixed:
            console.print(f"  fixed {escape(item)}", highlight=False)
        failed = failed or (not r.repaired and "damaged" in r.message)
    if failed:
        raise typer.Exit(1)


@app.command()
def release(
    agent: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option("", "--reason", help="why it is safe again (audited)"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    plan: bool = typer.Option(False, "--plan", help=PLAN_HELP),
) -> None:
    """Release an agent from quarantine."""
    from paulyops.services.agents import lifecycle
    from paulyops.services.commands import parse

    command = parse(lifecycle.ReleaseAgent, {"reason": reason, "plan": plan})
    with _scope(org) as (scope, _cache):
        outcome = lifecycle.release(scope, agent, command, actor=_actor())
    _done(outcome)


def register_jobs() -> None:
    """Add ``agents run`` and ``agents logs`` when the job layer's CLI module exists."""
    try:
        from paulyops.cli import jobs  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return
    jobs.register(app)


__all__ = ["app", "register_jobs"]
