"""The organization's installed agents over the JSON API (``/api/agents``).

The organization is the caller's (session or token), as in the first wave's routes; an
agent of another organization is never found, by agent id or installation id. State
changes need the CSRF token on cookie sessions (``require`` checks it), and every change
takes ``plan`` to only answer what it would touch.

* ``GET /api/agents``, ``GET /api/agents/{agentId}`` (with its run ``stats``),
  ``GET /api/agents/{agentId}/runs?limit=``, ``GET /api/agents/integrity``
  (``agents:read``; the integrity report changes nothing);
* ``POST /api/agents`` (install: ``packageId`` or ``agentId`` + ``version``, ``grant``,
  ``plan``), ``POST /api/agents/{agentId}/update``, ``DELETE /api/agents/{agentId}``,
  ``POST /api/agents/{agentId}/release``, ``POST /api/agents/{agentId}/repair``,
  ``POST /api/agents/integrity`` (verify and quarantine what is damaged) — ``agents:install``;
* ``POST /api/agents/{agentId}/enable|disable``, ``PUT /api/agents/{agentId}/settings``
  (``agents:configure``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from paulyops.services.agents import integrity, lifecycle, stats
from paulyops.services.agents.installations import (
    ChangeOutcome,
    InstallationView,
    IntegrityView,
    RepairView,
    agent_cache,
)
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress, get_instance

router = APIRouter(tags=["agents"])

BASE = "/api/agents"


def _cache(request: Request) -> Path:
    return agent_cache(get_instance(request).settings.data_dir)


AgentCache = Annotated[Path, Depends(_cache)]
PlanFlag = Annotated[bool, Query(description="only answer what would change")]


def _created(response: Response, outcome: ChangeOutcome) -> ChangeOutcome:
    if outcome.applied:
        response.status_code = status.HTTP_201_CREATED
    return outcome


@router.get(BASE, response_model=list[InstallationView])
def list_agents(
    session: DbSession, principal: Annotated[Principal, require("agents:read")]
) -> list[InstallationView]:
    """The organization's installed agents (secrets only as set / not set)."""
    return lifecycle.list_installations(principal.scope(session))


@router.get(f"{BASE}/integrity", response_model=list[IntegrityView])
def get_integrity(
    session: DbSession,
    cache: AgentCache,
    principal: Annotated[Principal, require("agents:read")],
) -> list[IntegrityView]:
    """Missing, modified and extra files per installation, and whether its archive matches.

    A report only: ``POST`` the same path (``agents:install``) to also quarantine the
    installations whose stored archive no longer matches.
    """
    return integrity.verify_installed(principal.scope(session), cache, quarantine_damaged=False)


@router.post(f"{BASE}/integrity", response_model=list[IntegrityView])
def post_integrity(
    session: DbSession,
    cache: AgentCache,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
) -> list[IntegrityView]:
    """Verify every installation and quarantine those whose stored archive no longer matches."""
    return integrity.verify_installed(
        principal.scope(session), cache, actor=principal.actor(address)
    )


@router.get(BASE + "/{agent_id}", response_model=stats.AgentDetail)
def get_agent(
    agent_id: str,
    session: DbSession,
    principal: Annotated[Principal, require("agents:read")],
) -> stats.AgentDetail:
    """One installed agent, by agent id or installation id, with its run ``stats``.

    ``stats``: last run, success rate, p50/p95 duration (ms), quarantine state and the
    latest runs' durations; the figures are ``null`` when the organization turned
    monitoring off (``monitoringEnabled: false``).
    """
    return stats.agent_detail(principal.scope(session), agent_id)


@router.get(BASE + "/{agent_id}/runs", response_model=list[stats.RunView])
def list_runs(
    agent_id: str,
    session: DbSession,
    principal: Annotated[Principal, require("agents:read")],
    limit: Annotated[int, Query(ge=1, le=500, description="how many runs, newest first")] = 20,
) -> list[stats.RunView]:
    """An installed agent's recent runs (status, attempts, input, timings, error, result)."""
    return stats.run_views(principal.scope(session), agent_id, limit=limit)


@router.post(BASE, response_model=ChangeOutcome)
def install_agent(
    body: lifecycle.InstallAgent,
    response: Response,
    session: DbSession,
    cache: AgentCache,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
) -> ChangeOutcome:
    """Install a stored package; ``grant`` must list exactly what it requests (201 when done)."""
    outcome = lifecycle.install(
        principal.scope(session), body, actor=principal.actor(address), cache=cache
    )
    return _created(response, outcome)


@router.post(BASE + "/{agent_id}/update", response_model=ChangeOutcome)
def update_agent(
    agent_id: str,
    body: lifecycle.UpdateAgent,
    session: DbSession,
    cache: AgentCache,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
) -> ChangeOutcome:
    """Update to a stored version; new capabilities wait for a grant (``applied: false``)."""
    return lifecycle.update(
        principal.scope(session), agent_id, body, actor=principal.actor(address), cache=cache
    )


@router.delete(BASE + "/{agent_id}", response_model=ChangeOutcome)
def uninstall_agent(
    agent_id: str,
    session: DbSession,
    cache: AgentCache,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
    plan: PlanFlag = False,
) -> ChangeOutcome:
    """Uninstall: files and secrets go; audit rows, events and job records stay."""
    return lifecycle.uninstall(
        principal.scope(session),
        agent_id,
        lifecycle.PlanOnly(plan=plan),
        actor=principal.actor(address),
        cache=cache,
    )


@router.post(BASE + "/{agent_id}/enable", response_model=ChangeOutcome)
def enable_agent(
    agent_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:configure")],
    plan: PlanFlag = False,
) -> ChangeOutcome:
    """Enable an installed agent (a quarantined one must be released first)."""
    return lifecycle.set_enabled(
        principal.scope(session),
        agent_id,
        True,
        lifecycle.PlanOnly(plan=plan),
        actor=principal.actor(address),
    )


@router.post(BASE + "/{agent_id}/disable", response_model=ChangeOutcome)
def disable_agent(
    agent_id: str,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:configure")],
    plan: PlanFlag = False,
) -> ChangeOutcome:
    """Disable an installed agent."""
    return lifecycle.set_enabled(
        principal.scope(session),
        agent_id,
        False,
        lifecycle.PlanOnly(plan=plan),
        actor=principal.actor(address),
    )


@router.post(BASE + "/{agent_id}/release", response_model=ChangeOutcome)
def release_agent(
    agent_id: str,
    body: lifecycle.ReleaseAgent,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
) -> ChangeOutcome:
    """Lift a quarantine (refused while its reason still holds)."""
    return lifecycle.release(
        principal.scope(session), agent_id, body, actor=principal.actor(address)
    )


@router.post(BASE + "/{agent_id}/repair", response_model=list[RepairView])
def repair_agent(
    agent_id: str,
    session: DbSession,
    cache: AgentCache,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:install")],
) -> list[RepairView]:
    """Re-extract this machine's copy of the agent from its stored archive."""
    return integrity.repair(
        principal.scope(session), agent_id, cache, actor=principal.actor(address)
    )


@router.put(BASE + "/{agent_id}/settings", response_model=ChangeOutcome)
def put_settings(
    agent_id: str,
    body: lifecycle.ConfigureAgent,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("agents:configure")],
) -> ChangeOutcome:
    """Change settings (validated by the agent's schema; secret fields are never returned)."""
    return lifecycle.configure(
        principal.scope(session), agent_id, body, actor=principal.actor(address)
    )


__all__ = ["router"]
