"""The onboarding API: the JSON front door onto SetupSpec and provision()."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, BeforeValidator, Field
from starlette.concurrency import run_in_threadpool

from paulyops.core.errors import (
    AuthenticationError,
    FieldError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.services.actor import Actor
from paulyops.services.auth import passwords, tokens
from paulyops.services.auth.passwords import SetPasswordCommand
from paulyops.services.onboarding import provision as provisioning
from paulyops.services.onboarding.firstrun import check_setup_token
from paulyops.services.onboarding.spec import (
    SetupSpec,
    parse_spec,
    schema_bundle,
    validate_partial,
)
from paulyops.services.onboarding.templates import settings_defaults
from paulyops.web.api.auth import CamelModel, OkOut
from paulyops.web.auth import DbSession, Principal, authenticate, check_csrf
from paulyops.web.deps import (
    ACCESS_ATTR,
    ClientAddress,
    InstanceDep,
    Public,
    client_address,
    get_instance,
)
from paulyops.web.errors import ErrorOut
from paulyops.web.ratelimit import limit_request

router = APIRouter(prefix="/api/onboarding", tags=["onboarding"])


class SetupAccess(BaseModel):
    """Who may provision: the setup token's holder, or a platform administrator."""

    kind: Literal["setup_token", "platform_admin"]
    actor: Actor
    setup_token_id: str | None = None
    user_id: str | None = None

    model_config = {"arbitrary_types_allowed": True}


async def _setup_access(request: Request) -> SetupAccess:
    """Admit the setup token holder (fresh instance) or a platform administrator.

    Uses its own short transaction: provision() takes the database's write lock itself,
    so the request must not hold one (SQLite would wait on itself).
    """
    # The lookups wait on the database: run them in the thread pool, off the event loop.
    caller = await run_in_threadpool(_setup_caller, request)
    if isinstance(caller, SetupAccess):
        return caller
    principal, address = caller, client_address(request)
    if not principal.is_authenticated:
        raise AuthenticationError(
            "send the setup token as 'Authorization: Bearer pos_...', or sign in as a "
            "platform administrator"
        )
    if not principal.can("org:create"):
        raise PermissionDeniedError("only platform administrators can create organizations")
    await check_csrf(request, principal)
    kind = "token" if principal.kind == "token" else "user"
    return SetupAccess(
        kind="platform_admin",
        actor=Actor(kind, principal.user_id, address),
        user_id=principal.user_id,
    )


def _setup_caller(request: Request) -> SetupAccess | Principal:
    """Return the setup token's access, or the principal to check further."""
    instance = get_instance(request)
    instance.require_ready()
    header = request.headers.get("authorization", "")
    secret = header.partition(" ")[2].strip()
    if secret.startswith(tokens.SETUP_TOKEN_PREFIX):
        # Every setup-token attempt counts against the sign-in limit of the address (the
        # unlock page shares it), so guessing stops long before it could matter.
        limit_request(request, None, user_id=None, name="signin")
    with instance.db.session() as session:
        if secret.startswith(tokens.SETUP_TOKEN_PREFIX):
            row = check_setup_token(session, secret)
            return SetupAccess(
                kind="setup_token",
                actor=Actor("setup_token", row.id, client_address(request)),
                setup_token_id=row.id,
            )
        return authenticate(request, session)


setattr(_setup_access, ACCESS_ATTR, "setup_token")
SetupAllowed = Annotated[SetupAccess, Depends(_setup_access)]


# The body is parsed by parse_spec (templates and presets first, then the one error
# shape), so it arrives as the raw object; OpenAPI declares it as the SetupSpec it is.
SetupBody = Annotated[
    dict[str, Any], BeforeValidator(lambda value: value, json_schema_input_type=SetupSpec)
]


class SetupOut(CamelModel):
    """The brief's response."""

    success: bool
    organization_id: str
    message: str
    next_steps: list[str]
    created: bool
    owner_password_link: str | None = Field(
        None,
        description="one-time link for the new owner to set a password (shown once)",
        repr=False,
    )


class ValidateIn(BaseModel):
    """A partial spec and the wizard step it belongs to."""

    step: Literal["organization", "storage", "security", "agents", "owner", "all"] = "all"
    spec: dict[str, Any] = Field(default_factory=dict)


class ValidateOut(CamelModel):
    """Validation result in the one error shape."""

    success: bool
    message: str
    errors: list[dict[str, Any]]


@router.get("/schema", dependencies=[Public])
def schema() -> dict[str, Any]:
    """Return the SetupSpec JSON Schema with the templates, presets and agent catalog."""
    return schema_bundle()


@router.post("/validate", dependencies=[Public], response_model=ValidateOut)
def validate(
    request: Request, response: Response, body: Annotated[ValidateIn, Body()], instance: InstanceDep
) -> ValidateOut:
    """Validate one wizard step (or the whole spec) with the same rules as setup."""
    limit_request(request, response, user_id=None, name="onboarding_validate")
    defaults = settings_defaults(instance.settings)
    if body.step == "all":
        try:
            parse_spec(body.spec, instance_defaults=defaults)
            errors: list[FieldError] = []
        except SpecValidationError as err:
            errors = err.errors
    else:
        errors = validate_partial(body.spec, body.step, instance_defaults=defaults)
    return ValidateOut(
        success=not errors,
        message="valid" if not errors else f"{len(errors)} problem(s) to fix",
        errors=[error.as_dict() for error in errors],
    )


@router.post(
    "/setup",
    response_model=SetupOut,
    response_model_exclude_none=True,
    responses={409: {"model": ErrorOut, "description": "slug taken with different settings"}},
)
def setup(
    request: Request,
    response: Response,
    body: Annotated[SetupBody, Body(description="a SetupSpec (see /api/onboarding/schema)")],
    access: SetupAllowed,
    instance: InstanceDep,
    address: ClientAddress,
) -> SetupOut:
    """Create an organization from a SetupSpec (idempotent per organization slug)."""
    limit_request(request, response, user_id=None, name="onboarding_setup")
    spec = parse_spec(body, instance_defaults=settings_defaults(instance.settings))
    if access.kind == "setup_token" and spec.owner is None:
        raise SpecValidationError(
            "the first organization needs an owner",
            [FieldError("owner", "expected {email, name} of the person who will own it")],
        )
    result = provisioning.provision(
        instance.db,
        spec,
        provisioning.ProvisionContext.for_settings(
            instance.settings,
            actor=access.actor,
            owner_user_id=access.user_id if spec.owner is None else None,
            setup_token_id=access.setup_token_id,
        ),
    )
    if result.created:
        response.status_code = 201
    if result.owner_password_link:
        # A one-time secret: no browser or proxy cache may keep a copy.
        response.headers["Cache-Control"] = "no-store"
    return SetupOut.model_validate(result.as_wire())


@router.post("/set-password", dependencies=[Public], response_model=OkOut)
def set_password(
    request: Request,
    response: Response,
    body: SetPasswordCommand,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
) -> OkOut:
    """Set a first password through a new owner's one-time link."""
    limit_request(request, response, user_id=None, name="signin")
    passwords.set_password_from_link(session, body, hashing=instance.hashing, address=address)
    return OkOut(message="password set; you can sign in now")
