"""The first-run wizard in the browser: unlock, owner account, four steps, review, result.

Another front door onto the same :class:`SetupSpec` and :func:`provision`: the form
fields come from :func:`spec_fields`, their errors from :func:`validate_partial`, and the
final submit from :func:`parse_spec` — no rule is written twice. Answers live in an
encrypted server-side draft bound to the setup session (see ``services/onboarding/wizard``).
Every step works without JavaScript; ``static/app.js`` adds validation while typing
through ``POST /api/onboarding/validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from paulyops.core.db import Session
from paulyops.core.errors import (
    FieldError,
    NotFoundError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.security.passwords import check_password
from paulyops.services.actor import Actor
from paulyops.services.auth import sessions
from paulyops.services.onboarding import provision as provisioning
from paulyops.services.onboarding import wizard
from paulyops.services.onboarding.firstrun import has_organization
from paulyops.services.onboarding.form import ANSWER_STEPS, plan_step, provider_plans
from paulyops.services.onboarding.presentation import STEP_TEXTS
from paulyops.services.onboarding.spec import Step, parse_spec, validate_partial
from paulyops.services.onboarding.templates import settings_defaults
from paulyops.web.auth import DbSession, session_cookie_name, set_session_cookie
from paulyops.web.deps import (
    ACCESS_ATTR,
    DeferredSession,
    Public,
    client_address,
    get_instance,
)
from paulyops.web.pages.render import (
    check_pre_session,
    flash,
    redirect,
    render,
    session_form_token,
)
from paulyops.web.ratelimit import limit_request

router = APIRouter(include_in_schema=False)

STEP_NAMES: list[Step] = list(ANSWER_STEPS)


# --- access ---------------------------------------------------------------------------


@dataclass
class SetupVisit:
    """A request inside the wizard: its setup session, draft and form token."""

    row: wizard.SetupSession
    draft: wizard.Draft
    session: Session
    csrf_token: str = field(repr=False)


async def _form(request: Request) -> FormData:
    """Read the form body (it streams, so this is async), so the handlers can be sync.

    The handlers wait on the database and the key-value store: as sync functions they
    run in the thread pool instead of blocking the event loop.
    """
    return await request.form()


FormDep = Annotated[FormData, Depends(_form)]


def _setup_session(
    request: Request,
    session: DeferredSession,
    form: FormDep,
) -> SetupVisit:
    """Admit requests that carry a live setup session (from the unlock page)."""
    instance = get_instance(request)
    if has_organization(instance.db):
        raise PermissionDeniedError("PaulyOps is already set up; sign in instead")
    cookie = request.cookies.get(session_cookie_name(request), "")
    found = wizard.admit(session, cookie, activity=instance.activity)
    visit = SetupVisit(found.row, found.draft, session, session_form_token(request, found.row))
    if request.method == "POST":
        submitted = form.get("csrf_token")
        instance.csrf.ensure_valid(
            found.row.id,
            submitted if isinstance(submitted, str) else None,
            fallback_hash=found.row.csrf_token_hash,
        )
    return visit


setattr(_setup_session, ACCESS_ATTR, "setup_token")
SetupDep = Depends(_setup_session)


# --- entry and unlock -------------------------------------------------------------------


@router.get("/", dependencies=[Public])
def home(request: Request) -> Response:
    """Send visitors where they belong: the wizard, sign-in or the console."""
    instance = get_instance(request)
    instance.require_ready()
    if not has_organization(instance.db):
        return redirect("/setup")
    if request.cookies.get(session_cookie_name(request)):
        return redirect("/console")
    return redirect("/sign-in")


@router.get("/setup", dependencies=[Public])
def unlock_page(request: Request) -> Response:
    """Ask for the setup token printed on the server console."""
    instance = get_instance(request)
    instance.require_ready()
    if has_organization(instance.db):
        return redirect("/sign-in")
    return render(
        request,
        "setup/unlock.html",
        pre_session=True,
        token_file=str(instance.settings.data_dir / "setup-token"),
        error=None,
    )


@router.post("/setup", dependencies=[Public])
def unlock(request: Request, session: DbSession, form: FormDep) -> Response:
    """Check the setup token and start the wizard's setup session."""
    instance = get_instance(request)
    check_pre_session(request, _text(form, "csrf_token"))
    # Setup tokens are long and random; the strict sign-in limit still stops guessing.
    limit_request(request, None, user_id=None, name="signin")
    secret = _text(form, "token").strip()
    try:
        new, _draft = wizard.start(
            session,
            secret,
            client_address=client_address(request),
            user_agent=request.headers.get("user-agent"),
        )
    except PermissionDeniedError as err:
        return render(
            request,
            "setup/unlock.html",
            status_code=403,
            pre_session=True,
            token_file=str(instance.settings.data_dir / "setup-token"),
            error=err.message,
            token_value=secret,
        )
    response = redirect("/setup/owner")
    set_session_cookie(request, response, new.token)
    return response


# --- owner ------------------------------------------------------------------------------


@router.get("/setup/owner")
def owner_page(request: Request, visit: SetupVisit = SetupDep) -> Response:
    """Ask who will own the organization (their account is created at the end)."""
    return _render_owner(request, visit, visit.draft.owner, {})


@router.post("/setup/owner")
def owner_submit(request: Request, form: FormDep, visit: SetupVisit = SetupDep) -> Response:
    """Check and keep the owner's details; the password is hashed at once."""
    owner: dict[str, Any] = {
        "email": _text(form, "owner.email").strip(),
        "name": _text(form, "owner.name").strip(),
    }
    password = _text(form, "password")
    confirm = _text(form, "password_confirm")
    errors = {e.field: e for e in validate_partial({"owner": owner}, "owner")}
    if password or not visit.draft.owner.get("passwordHash"):
        problems = check_password(password, email=owner["email"], name=owner["name"])
        if problems:
            errors["password"] = FieldError("password", "; ".join(problems))
        elif password != confirm:
            errors["password_confirm"] = FieldError("password_confirm", "the passwords differ")
    if errors:
        return _render_owner(request, visit, owner, errors, status_code=422)
    if password:
        owner["passwordHash"] = get_instance(request).hashing.hash(password)
    else:
        owner["passwordHash"] = visit.draft.owner.get("passwordHash")
    visit.draft.owner = owner
    wizard.save(visit.draft)
    return redirect("/setup/organization")


def _render_owner(
    request: Request,
    visit: SetupVisit,
    owner: dict[str, Any],
    errors: dict[str, FieldError],
    *,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "setup/owner.html",
        status_code=status_code,
        csrf_token=visit.csrf_token,
        owner=owner,
        errors=errors,
        has_password=bool(visit.draft.owner.get("passwordHash")),
        steps=_progress(visit.draft, current="owner"),
        percent=8,
    )


# --- the four steps ---------------------------------------------------------------------


def _answers_from_form(step: Step, form: FormData) -> dict[str, Any]:
    """Turn a step's form into the section's wire dict (the same mapping app.js uses)."""
    answers: dict[str, Any] = {}
    for item in plan_step(step, {}).fields:
        if item.kind == "providers":
            picked = {kind for kind in form.getlist(item.path) if isinstance(kind, str)}
            providers = []
            for provider in provider_plans():
                if provider.type not in picked:
                    continue
                entry: dict[str, Any] = {"type": provider.type}
                for setting in provider.settings:
                    value = _text(form, f"{item.path}.{provider.type}.{setting.key}").strip()
                    if value:
                        entry[setting.key] = value
                providers.append(entry)
            answers[item.key] = providers
        elif item.kind == "multi":
            answers[item.key] = [v for v in form.getlist(item.path) if isinstance(v, str)]
        elif item.kind == "bool":
            answers[item.key] = _text(form, item.path) in {"on", "true", "1"}
        else:
            value = _text(form, item.path).strip()
            if value != "":
                answers[item.key] = value
    return answers


def _progress(draft: wizard.Draft, *, current: str) -> list[dict[str, Any]]:
    items = [
        {
            "name": "owner",
            "title": "Owner",
            "url": "/setup/owner",
            "done": bool(draft.owner.get("passwordHash")),
        }
    ]
    for name, text in STEP_TEXTS.items():
        items.append(
            {"name": name, "title": text.title, "url": f"/setup/{name}", "done": name in draft.spec}
        )
    items.append({"name": "review", "title": "Review", "url": "/setup/review", "done": False})
    for item in items:
        item["current"] = item["name"] == current
    return items


def _step_or_404(step: str) -> Step:
    for name in STEP_NAMES:
        if name == step:
            return name
    raise NotFoundError(f"there is no setup step {step!r}")


def _render_step(
    request: Request,
    visit: SetupVisit,
    step: Step,
    errors: dict[str, FieldError],
    *,
    status_code: int = 200,
) -> Response:
    instance = get_instance(request)
    plan = plan_step(step, visit.draft.spec, instance_defaults=settings_defaults(instance.settings))
    index = STEP_NAMES.index(step)
    context_spec = {k: v for k, v in visit.draft.spec.items() if k != step}
    return render(
        request,
        "setup/step.html",
        status_code=status_code,
        csrf_token=visit.csrf_token,
        step=step,
        title=plan.title,
        lead=plan.lead,
        fields=plan.fields,
        errors=errors,
        providers=plan.providers,
        provider_error=errors.get("storage.providers"),
        other_errors=[e for path, e in errors.items() if not path.startswith(step)],
        preset=plan.preset,
        steps=_progress(visit.draft, current=step),
        percent=round(100 * (index + 2) / (len(STEP_NAMES) + 2)),
        back_url="/setup/owner" if index == 0 else f"/setup/{STEP_NAMES[index - 1]}",
        context_spec=context_spec,
    )


@router.get("/setup/review")
def review_page(request: Request, visit: SetupVisit = SetupDep) -> Response:
    """Show everything that will be created, with the problems still to fix."""
    return _render_review(request, visit)


def _render_review(request: Request, visit: SetupVisit, *, status_code: int = 200) -> Response:
    instance = get_instance(request)
    raw = {**visit.draft.spec, "owner": _owner_wire(visit.draft)}
    errors: list[FieldError] = []
    summary: dict[str, Any] | None = None
    try:
        spec = parse_spec(raw, instance_defaults=settings_defaults(instance.settings))
        summary = provisioning.describe(spec)
    except SpecValidationError as err:
        errors = err.errors
    if not visit.draft.owner.get("passwordHash"):
        errors.append(FieldError("owner", "set the owner's account first"))
    return render(
        request,
        "setup/review.html",
        status_code=status_code,
        csrf_token=visit.csrf_token,
        summary=summary,
        errors=[
            {"field": e.field, "message": e.message, "url": _url_for_field(e.field)} for e in errors
        ],
        owner=visit.draft.owner,
        steps=_progress(visit.draft, current="review"),
        percent=95,
    )


def _url_for_field(path: str) -> str:
    section = path.split(".", 1)[0]
    return f"/setup/{section}" if section in STEP_NAMES else "/setup/owner"


def _owner_wire(draft: wizard.Draft) -> dict[str, Any]:
    return {"email": draft.owner.get("email"), "name": draft.owner.get("name")}


@router.post("/setup/review")
def submit(request: Request, visit: SetupVisit = SetupDep) -> Response:
    """Provision the organization, sign the owner in and show the next steps."""
    instance = get_instance(request)
    limit_request(request, None, user_id=None, name="onboarding_setup")
    raw = {**visit.draft.spec, "owner": _owner_wire(visit.draft)}
    try:
        spec = parse_spec(raw, instance_defaults=settings_defaults(instance.settings))
    except SpecValidationError:
        return _render_review(request, visit, status_code=422)
    password_hash = visit.draft.owner.get("passwordHash")
    if not password_hash:
        return _render_review(request, visit, status_code=422)
    setup_token_id = visit.draft.setup_token_id
    # End this request's read snapshot: on SQLite a transaction that read before
    # provision() committed could not write afterwards.
    visit.session.commit()
    result = provisioning.provision(
        instance.db,
        spec,
        provisioning.ProvisionContext.for_settings(
            instance.settings,
            actor=Actor("setup_token", setup_token_id, client_address(request)),
            setup_token_id=setup_token_id,
            owner_password_hash=str(password_hash),
        ),
    )
    # Only now does this request write: the draft goes, the setup session ends.
    wizard.finish(visit.session, visit.draft, visit.row)
    session = visit.session
    new = sessions.create_session(
        session,
        user_id=result.owner_user_id,
        organization_id=result.organization_id,
        client_address=client_address(request),
        user_agent=request.headers.get("user-agent"),
    )
    response = redirect("/setup/done")
    set_session_cookie(request, response, new.token)
    flash(response, request, "success", result.message)
    for step in result.next_steps:
        flash(response, request, "info", step)
    return response


@router.get("/setup/done", dependencies=[Public])
def done(request: Request) -> Response:
    """Show the result and the next steps (carried over as flash messages)."""
    return render(request, "setup/done.html", percent=100)


@router.get("/setup/{step}")
def step_page(step: str, request: Request, visit: SetupVisit = SetupDep) -> Response:
    """Show one of the four steps, filled with what was entered or suggested."""
    return _render_step(request, visit, _step_or_404(step), {})


@router.post("/setup/{step}")
def step_submit(
    step: str, request: Request, form: FormDep, visit: SetupVisit = SetupDep
) -> Response:
    """Keep the step's answers; move on when they are valid (Back never validates)."""
    name = _step_or_404(step)
    wizard.merge_step(visit.draft, name, _answers_from_form(name, form))
    wizard.save(visit.draft)
    index = STEP_NAMES.index(name)
    if _text(form, "action") == "back":
        return redirect("/setup/owner" if index == 0 else f"/setup/{STEP_NAMES[index - 1]}")
    instance = get_instance(request)
    errors = validate_partial(
        visit.draft.spec, name, instance_defaults=settings_defaults(instance.settings)
    )
    if errors:
        return _render_step(request, visit, name, {e.field: e for e in errors}, status_code=422)
    target = _text(form, "goto")
    if target in STEP_NAMES or target in {"owner", "review"}:
        return redirect(f"/setup/{target}")
    return redirect(
        "/setup/review" if index == len(STEP_NAMES) - 1 else f"/setup/{STEP_NAMES[index + 1]}"
    )


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


__all__ = ["router"]
