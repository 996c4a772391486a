"""The marketplace over the JSON API: browse, search, upload-and-verify, trust.

* ``GET /api/marketplace/agents`` and ``GET /api/marketplace/agents/{agent_id}``
  (``marketplace:read``): what the caller's organization sees — instance-wide packages
  and its own uploads, never another organization's.
* ``POST /api/marketplace/packages`` (``marketplace:manage``): one ``.pauly`` file as
  multipart field ``file``. The body is capped before it is read whole (by its
  ``Content-Length`` and while it streams, see :data:`BODY_LIMITS`); the validator's
  messages come back in the one error shape, and nothing is stored on failure.
* ``GET``/``PUT /api/marketplace/policy``: the organization's unsigned-package mode.
* ``/api/platform/marketplace/...`` (``marketplace:trust``, platform administrators):
  the instance trust store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from paulyops.core.db import Session
from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.services.commands import parse
from paulyops.services.marketplace import listing, store, trust
from paulyops.web.api.auth import CamelModel
from paulyops.web.auth import DbSession, Principal, require
from paulyops.web.deps import ClientAddress

router = APIRouter(tags=["marketplace"])

UPLOAD_PATH = "/api/marketplace/packages"
CONSOLE_UPLOAD_PATH = "/console/marketplace/upload"
# The body limits of the upload routes, for the app's BodyLimitMiddleware.
BODY_LIMITS = {UPLOAD_PATH: store.max_upload_bytes(), CONSOLE_UPLOAD_PATH: store.max_upload_bytes()}
FILE_FIELD = "file"
MAX_FILES = 1
MAX_FIELDS = 8
# The body is read by hand (to cap and close it), so OpenAPI is told its shape here.
UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {
                    FILE_FIELD: {
                        "type": "string",
                        "format": "binary",
                        "description": "the .pauly package",
                    }
                },
            }
        }
    },
}


class CheckOut(CamelModel):
    """One validator check and its outcome."""

    name: str
    status: str
    message: str


class PackageOut(CamelModel):
    """A stored package version and the checks it passed."""

    id: str
    agent_id: str
    version: str
    sha256: str
    size: int
    signature_state: str
    key_id: str | None
    organization_local: bool
    created: bool
    checks: list[CheckOut]


class PolicyOut(CamelModel):
    """The organization's unsigned-package mode."""

    allow_unsigned: bool


class TrustedKeyOut(CamelModel):
    """A trusted publisher key."""

    id: str
    key_id: str
    fingerprint: str
    namespace: str
    created_at: datetime
    revoked: bool


class RevocationOut(CamelModel):
    """A revoked key or package version."""

    id: str
    kind: str
    target: str
    key_id: str | None
    agent_id: str | None
    version: str | None
    reason: str
    created_at: datetime


class TrustOut(CamelModel):
    """The instance trust store."""

    keys: list[TrustedKeyOut]
    revocations: list[RevocationOut]


def _key_out(view: trust.TrustedKeyView) -> TrustedKeyOut:
    return TrustedKeyOut(
        id=view.id,
        key_id=view.key_id,
        fingerprint=view.fingerprint,
        namespace=view.namespace,
        created_at=view.created_at,
        revoked=view.revoked_at is not None,
    )


def _revocation_out(view: trust.RevocationView) -> RevocationOut:
    return RevocationOut.model_validate(view, from_attributes=True)


def _bad_upload(message: str) -> SpecValidationError:
    return SpecValidationError(f"{FILE_FIELD}: {message}", [FieldError(FILE_FIELD, message)])


async def close_request_form(request: Request) -> AsyncIterator[None]:
    """Close whatever form the request parsed, however the request ends.

    The CSRF guard may parse a multipart body itself (the token in a form field) and
    then refuse the request: the spooled upload must be closed then too.
    """
    try:
        yield
    finally:
        await request.close()


ClosesForm = Depends(close_request_form)


@asynccontextmanager
async def package_form(request: Request) -> AsyncIterator[tuple[UploadFile, dict[str, str]]]:
    """Parse an upload's multipart body: exactly one file in ``file``, a few text fields.

    The parsed form (its spooled file included) is closed when the block ends.

    Raises:
        SpecValidationError: not multipart, malformed, or no file (field ``file``, 422).
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _bad_upload("send the package as multipart/form-data, in a field named 'file'")
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except StarletteHTTPException as err:
        # Starlette answers a malformed body with 400; the API's rule is 422 naming the field.
        raise _bad_upload(f"the multipart body is malformed: {err.detail}") from None
    try:
        # The CSRF guard may have parsed (and cached) the form first, without these
        # limits: count again.
        files = sum(isinstance(v, UploadFile) for _k, v in form.multi_items())
        if files > MAX_FILES or len(form.multi_items()) - files > MAX_FIELDS:
            raise _bad_upload(
                f"send one file and at most {MAX_FIELDS} other fields ({files} files sent)"
            )
        upload = form.get(FILE_FIELD)
        if not isinstance(upload, UploadFile):
            raise _bad_upload("no file was sent in the field 'file'")
        yield upload, {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()


def upload_from_form(
    session: Session, principal: Principal, address: str, upload: UploadFile
) -> PackageOut:
    """Validate and store an uploaded file for the caller's organization."""
    command = store.UploadPackage(file_name=(upload.filename or "package.pauly")[:255])
    stored, report = store.upload_package(
        principal.scope(session), command, upload.file, actor=principal.actor(address)
    )
    return PackageOut(
        id=stored.id,
        agent_id=stored.agent_id,
        version=stored.version,
        sha256=stored.sha256,
        size=stored.size,
        signature_state=stored.signature_state,
        key_id=stored.key_id,
        organization_local=stored.organization_id is not None,
        created=stored.created,
        checks=[CheckOut(name=c.name, status=c.status, message=c.message) for c in report.checks],
    )


def search_query(
    q: str, industry: str | None, capability: str | None, publisher: str | None
) -> listing.SearchAgents:
    """Build the search command from query parameters (unset ones are left out)."""
    given: dict[str, Any] = {"q": q}
    for name, value in (
        ("industry", industry),
        ("capability", capability),
        ("publisher", publisher),
    ):
        if value:
            given[name] = value
    return parse(listing.SearchAgents, given)


# --- the organization's view ------------------------------------------------------------


@router.get("/api/marketplace/agents", response_model=list[listing.AgentSummary])
def list_agents(
    session: DbSession,
    principal: Annotated[Principal, require("marketplace:read")],
    q: Annotated[str, Query(max_length=200)] = "",
    industry: Annotated[str | None, Query(max_length=40)] = None,
    capability: Annotated[str | None, Query(max_length=80)] = None,
    publisher: Annotated[str | None, Query(max_length=40)] = None,
) -> list[listing.AgentSummary]:
    """Search the agents the organization sees (text; industry, capability, publisher)."""
    query = search_query(q, industry, capability, publisher)
    return listing.search_agents(principal.scope(session), query)


@router.get("/api/marketplace/agents/{agent_id}", response_model=listing.AgentDetail)
def get_agent(
    agent_id: str,
    session: DbSession,
    principal: Annotated[Principal, require("marketplace:read")],
) -> listing.AgentDetail:
    """One agent: its versions, publisher, signature state, trust badge and capabilities."""
    return listing.agent_detail(principal.scope(session), agent_id)


@router.post(
    UPLOAD_PATH,
    response_model=PackageOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[ClosesForm],
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_package(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("marketplace:manage")],
) -> PackageOut:
    """Upload a ``.pauly`` package (multipart field ``file``); it is kept if it validates."""
    async with package_form(request) as (upload, _fields):
        return await run_in_threadpool(upload_from_form, session, principal, address, upload)


@router.get("/api/marketplace/policy", response_model=PolicyOut)
def get_policy(
    session: DbSession, principal: Annotated[Principal, require("marketplace:read")]
) -> PolicyOut:
    """Whether the organization accepts unsigned packages."""
    return PolicyOut(allow_unsigned=store.unsigned_allowed(principal.scope(session)))


@router.put("/api/marketplace/policy", response_model=PolicyOut)
def put_policy(
    body: store.SetUnsignedPolicy,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("marketplace:manage")],
) -> PolicyOut:
    """Turn the unsigned-package mode on or off (a security event either way)."""
    view = store.set_unsigned_policy(principal.scope(session), body, actor=principal.actor(address))
    return PolicyOut(allow_unsigned=view.allow_unsigned)


# --- the instance trust store (platform) ------------------------------------------------


@router.get("/api/platform/marketplace/trust", response_model=TrustOut)
def get_trust(
    session: DbSession, principal: Annotated[Principal, require("marketplace:trust")]
) -> TrustOut:
    """List the trusted publisher keys and the revocations."""
    found = trust.list_trust(session)
    return TrustOut(
        keys=[_key_out(k) for k in found.keys],
        revocations=[_revocation_out(r) for r in found.revocations],
    )


@router.post(
    "/api/platform/marketplace/keys",
    response_model=TrustedKeyOut,
    status_code=status.HTTP_201_CREATED,
)
def add_key(
    body: trust.TrustKey,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("marketplace:trust")],
) -> TrustedKeyOut:
    """Trust a publisher key (PEM) for its namespace."""
    return _key_out(trust.trust_key(session, body, actor=principal.actor(address)))


@router.post(
    "/api/platform/marketplace/revocations",
    response_model=RevocationOut,
    status_code=status.HTTP_201_CREATED,
)
def add_revocation(
    body: trust.RevokeTrust,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("marketplace:trust")],
) -> RevocationOut:
    """Revoke a key or a package version: nothing signed by it validates again."""
    return _revocation_out(trust.revoke(session, body, actor=principal.actor(address)))


__all__ = [
    "BODY_LIMITS",
    "ClosesForm",
    "package_form",
    "router",
    "search_query",
    "upload_from_form",
]
