"""The marketplace in the console: browse and search, an agent's details, upload.

Browsing needs ``marketplace:read``; the upload form and the organization's
unsigned-package mode need ``marketplace:manage``. Capabilities are shown in the plain
words of the capability vocabulary, and every version carries its trust badge.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from paulyops.core.db import Session
from paulyops.core.errors import ConflictError, NotFoundError, SpecValidationError
from paulyops.services.agents import lifecycle
from paulyops.services.marketplace import listing, store
from paulyops.services.marketplace.capabilities import CAPABILITIES
from paulyops.services.onboarding.spec import Industry
from paulyops.web.api.marketplace import ClosesForm, package_form, search_query, upload_from_form
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress
from paulyops.web.pages.console.common import _back, _page

router = APIRouter(include_in_schema=False)
BADGE_STYLE = {
    "bundled": "ok",
    "verified-publisher": "ok",
    "organization-local": "",
    "unsigned-allowed": "warn",
}


def _bounds() -> dict[str, Any]:
    """The search form's limits, from the command's JSON Schema (never typed twice)."""
    props = listing.SearchAgents.model_json_schema()["properties"]
    return {"q": props["q"]["maxLength"]}


def _common(**context: Any) -> dict[str, Any]:
    return {
        "badge_style": BADGE_STYLE,
        "badge_help": listing.BADGE_HELP,
        "industries": [(i.value, i.value.title()) for i in Industry],
        "capabilities": [(name, name) for name in CAPABILITIES],
        **context,
    }


@router.get("/console/marketplace")
def browse(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("marketplace:read")],
    q: str = "",
    industry: str = "",
    capability: str = "",
    publisher: str = "",
) -> Response:
    """Browse and search the agents the organization may install."""
    form = {
        "q": q[:200],
        "industry": industry[:40],
        "capability": capability[:80],
        "publisher": publisher[:40],
    }
    errors: dict[str, str] = {}
    agents: list[listing.AgentSummary] = []
    status_code = 200
    try:
        query = search_query(form["q"], form["industry"], form["capability"], form["publisher"])
        agents = listing.search_agents(principal.scope(session), query)
    except SpecValidationError as err:
        errors = {item.field or "form": item.message for item in err.errors}
        status_code = 422
    return _page(
        request,
        session,
        principal,
        "console/marketplace.html",
        active="marketplace",
        status_code=status_code,
        **_common(
            agents=agents,
            form=form,
            errors=errors,
            bounds=_bounds(),
            searched=any(form.values()),
        ),
    )


@router.get("/console/marketplace/agents/{agent_id}")
def agent(
    agent_id: str,
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("marketplace:read")],
) -> Response:
    """One agent: what it asks for in plain words, its publisher, versions and trust.

    With ``agents:install`` it offers the install (a preview first); once installed it
    links to the agent's own page.
    """
    scope = principal.scope(session)
    detail = listing.agent_detail(scope, agent_id)
    installed = None
    if principal.can("agents:read"):
        try:
            installed = lifecycle.show(scope, detail.id)
        except NotFoundError:
            installed = None
    return _page(
        request,
        session,
        principal,
        "console/marketplace_agent.html",
        active="marketplace",
        **_common(agent=detail, installed=installed),
    )


def _upload_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    problems: list[tuple[str, str]] | None = None,
    message: str = "",
) -> Response:
    return _page(
        request,
        session,
        principal,
        "console/marketplace_upload.html",
        active="marketplace",
        status_code=status_code,
        allow_unsigned=store.unsigned_allowed(principal.scope(session)),
        problems=problems or [],
        message=message,
        max_mb=store.max_upload_bytes() // (1024 * 1024),
    )


@router.get("/console/marketplace/upload")
def upload_form(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("marketplace:manage")],
) -> Response:
    """The upload form and the organization's unsigned-package mode."""
    return _upload_page(request, session, principal)


@router.post("/console/marketplace/upload", dependencies=[ClosesForm])
async def upload(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("marketplace:manage")],
) -> Response:
    """Upload a package; show every failed check, or go to the stored agent."""
    try:
        async with package_form(request) as (file, _fields):
            stored = await run_in_threadpool(upload_from_form, session, principal, address, file)
    except SpecValidationError as err:
        problems = [(item.field, item.message) for item in err.errors]
        return await run_in_threadpool(
            _upload_page,
            request,
            session,
            principal,
            status_code=422,
            problems=problems,
            message=err.message,
        )
    except ConflictError as err:
        return await run_in_threadpool(
            _upload_page, request, session, principal, status_code=409, message=err.message
        )
    verb = "Stored" if stored.created else "Already stored:"
    return _back(
        request,
        f"/console/marketplace/agents/{stored.agent_id}",
        "success",
        f"{verb} {stored.agent_id} {stored.version} ({stored.signature_state}); "
        "every check passed.",
    )


@router.post("/console/marketplace/policy")
def policy(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("marketplace:manage")],
    allow_unsigned: Annotated[str, Form()] = "",
) -> Response:
    """Turn the unsigned-package mode on or off."""
    wanted = allow_unsigned == "on"
    store.set_unsigned_policy(
        principal.scope(session),
        store.SetUnsignedPolicy(allow_unsigned=wanted),
        actor=principal.actor(address),
    )
    message = (
        "Unsigned packages are now accepted (developer mode). Every use is recorded as a "
        "security event."
        if wanted
        else "Unsigned packages are refused again."
    )
    return _back(request, "/console/marketplace/upload", "success", message)


__all__ = ["router"]
