"""The organization's agents in the console: list, one agent, settings, changes, integrity.

``agents:read`` sees the pages; ``agents:configure`` enables, disables and configures;
``agents:install`` installs, updates, uninstalls, releases a quarantine and repairs.
Every change that grants or removes something is a preview first (the lifecycle's plan,
which changes nothing) and then one explicit confirmation; all of it goes through
:mod:`paulyops.services.agents.lifecycle`, in the request's one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from paulyops.core.db import Session
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, NotFoundError, SpecValidationError
from paulyops.services.agents import integrity, lifecycle, overview, runs, stats
from paulyops.services.agents.installations import ChangeOutcome, agent_cache
from paulyops.services.commands import parse
from paulyops.services.marketplace import listing
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress, InstanceDep
from paulyops.web.pages.console.common import _back, _member_names, _page
from paulyops.web.pages.console.marketplace import BADGE_STYLE
from paulyops.web.pages.render import templates

router = APIRouter(include_in_schema=False)
# Options of a select whose values are shown as they are (versions, enum values).
templates.env.filters["pairs"] = lambda values: [(str(v), str(v)) for v in values]
STATUS_STYLE = {"enabled": "ok", "disabled": "", "quarantined": "bad", "failed": "bad"}
SETTING_PREFIX = "setting."
CLEAR_FIELD = "clear_secret"
# Changes previewed at /console/agents/{ref}/<action> and applied at .../<action>/confirm.
ACTIONS = ("update", "uninstall", "release")
# Recent runs shown on an agent's page (with their log lines).
RECENT_RUNS = 20
RUN_STYLE = {"succeeded": "ok", "dead": "bad", "failed": "warn", "cancelled": ""}


def _common(**context: Any) -> dict[str, Any]:
    return {
        "badge_style": BADGE_STYLE,
        "status_style": STATUS_STYLE,
        "run_style": RUN_STYLE,
        "format_ms": stats.format_ms,
        **context,
    }


def _agent_url(agent_id: str) -> str:
    return f"/console/agents/{agent_id}"


@router.get("/console/agents")
def agents(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("agents:read")],
) -> Response:
    """The installed agents with status and trust, and the defaults that are not installed."""
    scope = principal.scope(session)
    listed = overview.overview(scope)
    return _page(
        request,
        session,
        principal,
        "console/agents.html",
        active="agents",
        **_common(
            overview=listed,
            monitoring=stats.monitoring_enabled(scope),
            summaries=stats.summaries(scope, [row.installation.id for row in listed.installed]),
        ),
    )


@router.get("/console/agents/integrity")
def integrity_page(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: Annotated[Principal, require("agents:read")],
) -> Response:
    """What each installation's files look like next to its stored archive (reads only)."""
    results = integrity.verify_installed(
        principal.scope(session), agent_cache(instance.settings.data_dir), quarantine_damaged=False
    )
    return _page(
        request,
        session,
        principal,
        "console/agents_integrity.html",
        active="agents",
        **_common(results=results),
    )


@router.post("/console/agents/integrity/check")
def integrity_check(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
) -> Response:
    """Verify every installation, quarantining those whose stored archive is damaged."""
    results = integrity.verify_installed(
        principal.scope(session),
        agent_cache(instance.settings.data_dir),
        actor=principal.actor(address),
    )
    quarantined = [r.agent_id for r in results if r.quarantined]
    broken = [r.agent_id for r in results if r.problems]
    if quarantined:
        kind, message = "error", "Quarantined (stored archive damaged): " + ", ".join(quarantined)
    elif broken:
        kind, message = "info", "Files need a repair: " + ", ".join(broken)
    else:
        kind, message = "success", f"All {len(results)} installed agents verified."
    return _back(request, "/console/agents/integrity", kind, message)


@router.post("/console/agents/integrity/repair")
def integrity_repair(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
    installation: Annotated[str, Form(max_length=120)] = "",
) -> Response:
    """Re-extract one installation's files (or all) from the stored archive."""
    done = integrity.repair(
        principal.scope(session),
        installation or None,
        agent_cache(instance.settings.data_dir),
        actor=principal.actor(address),
    )
    failed = any(not r.repaired and "damaged" in r.message for r in done)
    message = "; ".join(r.message for r in done) or "Nothing is installed."
    return _back(request, "/console/agents/integrity", "error" if failed else "success", message)


def _agent_page(
    request: Request,
    session: Session,
    principal: Principal,
    ref: str,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    shown: dict[str, Any] | None = None,
) -> Response:
    scope = principal.scope(session)
    page = overview.agent_page(scope, ref, shown)
    inst_id = page.agent.installation.id
    recent = runs.recent_runs(scope, inst_id, limit=RECENT_RUNS)
    figures = stats.agent_stats(scope, inst_id)
    logs = stats.run_logs(scope, [run.id for run in recent])
    return _page(
        request,
        session,
        principal,
        "console/agent.html",
        active="agents",
        status_code=status_code,
        **_common(
            page=page,
            agent=page.agent,
            errors=errors or {},
            granted_by=_who(scope, page.agent.installation.granted_by),
            recent=recent,
            stats=figures,
            chart=stats.duration_chart(figures),
            logs=logs,
        ),
    )


def _who(scope: OrgScope, actor: str | None) -> str:
    """Name the one who granted (``user:<id>``, ``token:<id>``, ``cli``, ``system``)."""
    kind, _, actor_id = (actor or "").partition(":")
    if kind == "user":
        return _member_names(scope).get(actor_id, "a former member")
    return {"token": "an API token", "cli": "the command line", "system": "PaulyOps setup"}.get(
        kind, kind or "unknown"
    )


@router.get("/console/agents/{ref}")
def agent(
    ref: str,
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("agents:read")],
) -> Response:
    """One installed agent: status, grants, settings, versions, and its actions."""
    return _agent_page(request, session, principal, ref)


@router.post("/console/agents/{ref}/settings")
async def configure(
    ref: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:configure")],
) -> Response:
    """Save the settings form; errors are shown next to their field, other values kept."""
    form = await request.form()
    submitted = {
        key.removeprefix(SETTING_PREFIX): value
        for key, value in form.items()
        if key.startswith(SETTING_PREFIX) and isinstance(value, str)
    }
    clear = {v for v in form.getlist(CLEAR_FIELD) if isinstance(v, str)}
    return await _run_sync(request, _configure, session, principal, address, ref, submitted, clear)


async def _run_sync(request: Request, func: Any, *args: Any) -> Response:
    result: Response = await run_in_threadpool(func, request, *args)
    return result


def _configure(
    request: Request,
    session: Session,
    principal: Principal,
    address: str,
    ref: str,
    submitted: dict[str, str],
    clear: set[str],
) -> Response:
    scope = principal.scope(session)
    inst = lifecycle.show(scope, ref)
    fields = overview.settings_fields(scope, inst)
    command, errors = overview.parse_settings_form(fields, submitted, clear)
    if not errors and not command.settings and not command.unset:
        return _back(request, _agent_url(inst.agent_id), "info", "Nothing changed.")
    if not errors:
        try:
            overview.attempt(
                scope,
                lambda: lifecycle.configure(
                    scope, inst.id, command, actor=principal.actor(address)
                ),
            )
        except SpecValidationError as err:
            errors = overview.setting_errors(err)
    if errors:
        shown = overview.shown_values(fields, submitted)
        # The form's inputs are keyed "setting-<field>" (ids apart from the page's others).
        keyed = {k if k == "form" else f"setting-{k}": v for k, v in errors.items()}
        keyed.setdefault("form", "Nothing was saved: correct the fields marked below.")
        return _agent_page(
            request, session, principal, inst.id, status_code=422, errors=keyed, shown=shown
        )
    secrets = [f for f in command.settings if any(x.name == f and x.secret for x in fields)]
    note = " Secret values are stored encrypted and are not shown again." if secrets else ""
    return _back(request, _agent_url(inst.agent_id), "success", f"Settings saved.{note}")


def _toggle(
    request: Request,
    session: Session,
    principal: Principal,
    address: str,
    ref: str,
    enabled: bool,
) -> Response:
    scope = principal.scope(session)
    inst = lifecycle.show(scope, ref)
    try:
        outcome = overview.attempt(
            scope,
            lambda: lifecycle.set_enabled(
                scope, inst.id, enabled, lifecycle.PlanOnly(), actor=principal.actor(address)
            ),
        )
    except ConflictError as err:
        return _back(request, _agent_url(inst.agent_id), "error", err.message)
    kind = "success" if outcome.applied else "info"
    return _back(request, _agent_url(inst.agent_id), kind, outcome.message + ".")


@router.post("/console/agents/{ref}/enable")
def enable(
    ref: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:configure")],
) -> Response:
    """Enable an installed agent (a quarantined one must be released first)."""
    return _toggle(request, session, principal, address, ref, True)


@router.post("/console/agents/{ref}/disable")
def disable(
    ref: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:configure")],
) -> Response:
    """Disable an installed agent: it runs no more until enabled again."""
    return _toggle(request, session, principal, address, ref, False)


# --- previews and confirmations --------------------------------------------------------------


def _change_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    action: str,
    agent_id: str,
    name: str,
    outcome: ChangeOutcome | None,
    error: str = "",
    status_code: int = 200,
    reason: str = "",
) -> Response:
    # Notes the page already says in its own words (the highlighted new capabilities, the
    # history an uninstall keeps) are not repeated.
    notes = [
        note
        for note in (outcome.plan.notes if outcome else [])
        if not note.startswith(("asks for new capabilities", "audit rows, agent events"))
    ]
    return _page(
        request,
        session,
        principal,
        "console/agent_change.html",
        active="agents",
        status_code=status_code,
        action=action,
        agent_id=agent_id,
        name=name,
        notes=notes,
        outcome=outcome,
        plan=outcome.plan if outcome else None,
        error=error,
        reason=reason,
        back=(
            f"/console/marketplace/agents/{agent_id}"
            if action == "install"
            else _agent_url(agent_id)
        ),
    )


def _change(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    action: str,
    agent_id: str,
    name: str,
    step: Callable[[bool], ChangeOutcome],
    preview: bool,
    reason: str = "",
) -> Response:
    """Preview a change (nothing changes), or apply it and go back to the agent."""
    scope = principal.scope(session)
    try:
        outcome: ChangeOutcome = overview.attempt(scope, lambda: step(preview))
    except (ConflictError, SpecValidationError) as err:
        # A refusal (dependents, a damaged archive, a grant that no longer matches the
        # package) is shown on the preview page, with what the plan says now.
        shown: ChangeOutcome | None = None
        if not preview:
            try:
                shown = step(True)
            except (ConflictError, SpecValidationError):
                shown = None
        return _change_page(
            request,
            session,
            principal,
            action=action,
            agent_id=agent_id,
            name=name,
            outcome=shown,
            error=err.message,
            status_code=409 if isinstance(err, ConflictError) else 422,
            reason=reason,
        )
    if preview and outcome.noop:
        # Nothing to confirm (e.g. "up to date"): say so where the request came from.
        return _back(request, _agent_url(agent_id), "info", outcome.message + ".")
    if preview:
        return _change_page(
            request,
            session,
            principal,
            action=action,
            agent_id=agent_id,
            name=name,
            outcome=outcome,
            reason=reason,
        )
    target = "/console/agents" if action == "uninstall" else _agent_url(agent_id)
    kind = "success" if outcome.applied else "info"
    return _back(request, target, kind, outcome.message + ".")


@router.post("/console/marketplace/agents/{agent_id}/install")
def install_preview(
    agent_id: str,
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
    version: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Show what installing would grant and write (nothing changes yet)."""
    return _install(
        request,
        session,
        principal,
        address,
        instance.settings.data_dir,
        agent_id=agent_id,
        version=version,
        grant=None,
    )


@router.post("/console/marketplace/agents/{agent_id}/install/confirm")
def install_confirm(
    agent_id: str,
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
    version: Annotated[str, Form(max_length=40)] = "",
    grant: Annotated[list[str] | None, Form(max_length=64)] = None,
) -> Response:
    """Grant exactly what the previewed version asks for, and install it."""
    return _install(
        request,
        session,
        principal,
        address,
        instance.settings.data_dir,
        agent_id=agent_id,
        version=version,
        grant=grant or [],
    )


def _install(
    request: Request,
    session: Session,
    principal: Principal,
    address: str,
    data_dir: Path,
    *,
    agent_id: str,
    version: str,
    grant: list[str] | None,
) -> Response:
    scope = principal.scope(session)
    cache = agent_cache(data_dir)
    # The confirmation names the version the preview showed, so what is granted is what
    # was read (a newer version stored meanwhile needs a preview of its own).
    fields = {"agent_id": agent_id[:120], "version": version or None}

    def step(plan: bool) -> ChangeOutcome:
        command = parse(lifecycle.InstallAgent, {**fields, "grant": grant, "plan": plan})
        return lifecycle.install(scope, command, actor=principal.actor(address), cache=cache)

    try:
        name = listing.agent_detail(scope, agent_id).name
    except NotFoundError:
        name = agent_id
    return _change(
        request,
        session,
        principal,
        action="install",
        agent_id=agent_id,
        name=name,
        step=step,
        preview=grant is None,
    )


def _change_route(action: str, *, confirm: bool) -> None:
    """Register the preview (``/console/agents/{ref}/<action>``) or confirm route of one change."""

    def route(
        ref: str,
        request: Request,
        session: DbSession,
        instance: InstanceDep,
        address: ClientAddress,
        principal: Annotated[Principal, require("agents:install")],
        package_id: Annotated[str, Form(max_length=40)] = "",
        version: Annotated[str, Form(max_length=40)] = "",
        reason: Annotated[str, Form(max_length=500)] = "",
        grant: Annotated[list[str] | None, Form(max_length=64)] = None,
    ) -> Response:
        scope = principal.scope(session)
        inst = lifecycle.show(scope, ref)
        cache = agent_cache(instance.settings.data_dir)
        actor = principal.actor(address)

        def step(plan: bool) -> ChangeOutcome:
            if action == "update":
                command = parse(
                    lifecycle.UpdateAgent,
                    {
                        "package_id": package_id or None,
                        "version": None if package_id else version or None,
                        "grant": None if plan else (grant or []),
                        "plan": plan,
                    },
                )
                return lifecycle.update(scope, inst.id, command, actor=actor, cache=cache)
            if action == "uninstall":
                return lifecycle.uninstall(
                    scope, inst.id, lifecycle.PlanOnly(plan=plan), actor=actor, cache=cache
                )
            return lifecycle.release(
                scope, inst.id, lifecycle.ReleaseAgent(reason=reason, plan=plan), actor=actor
            )

        return _change(
            request,
            session,
            principal,
            action=action,
            agent_id=inst.agent_id,
            name=inst.name,
            step=step,
            preview=not confirm,
            reason=reason,
        )

    verb = "Apply" if confirm else "Preview"
    route.__name__ = f"{action}_{'confirm' if confirm else 'preview'}"
    route.__doc__ = f"{verb} the {action} of an installed agent" + (
        "." if confirm else " (nothing changes yet)."
    )
    path = f"/console/agents/{{ref}}/{action}" + ("/confirm" if confirm else "")
    router.add_api_route(path, route, methods=["POST"])


for _action in ACTIONS:
    _change_route(_action, confirm=False)
    _change_route(_action, confirm=True)


__all__ = ["router"]
