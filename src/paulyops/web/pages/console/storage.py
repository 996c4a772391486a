"""Storage connections: add, test and remove."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    StorageConfig,
)
from paulyops.core.errors import (
    ConflictError,
    SpecValidationError,
)
from paulyops.core.security.crypto import DecryptionError
from paulyops.core.security.fields import read_secret_json
from paulyops.services import console as console_service
from paulyops.web.auth import (
    DbSession,
    Principal,
    require,
)
from paulyops.web.deps import ClientAddress, InstanceDep
from paulyops.web.pages.console.common import (
    _back,
    _field_errors,
    _page,
)

PROVIDER_LABELS = {
    "local": "Folder on this server",
    "s3": "Amazon S3 or S3-compatible",
    "google-drive": "Google Drive",
    "dropbox": "Dropbox",
}
# Form inputs of the storage form, by provider (secrets are password inputs).
STORAGE_INPUTS = (
    "name",
    "path",
    "bucket",
    "region",
    "endpoint",
    "access_key_id",
    "secret_access_key",
    "client_id",
    "client_secret",
    "app_key",
    "app_secret",
)
STORAGE_SECRETS = frozenset({"access_key_id", "secret_access_key", "client_secret", "app_secret"})
router = APIRouter(include_in_schema=False)

# --- storage --------------------------------------------------------------------------------


def _storage_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    scope = principal.scope(session)
    rows = []
    for row in scope.list(StorageConfig, order_by=StorageConfig.name):
        try:
            stored = read_secret_json(row, "credentials") or {}
        except DecryptionError:
            stored = None
        rows.append(
            {
                "row": row,
                "label": PROVIDER_LABELS.get(row.provider, row.provider),
                # Names of the stored credentials only; their values are never shown.
                "credentials": sorted(stored) if isinstance(stored, dict) else None,
                "settings": {k: v for k, v in row.settings.items() if v not in (None, "")},
            }
        )
    return _page(
        request,
        session,
        principal,
        "console/storage.html",
        active="storage",
        status_code=status_code,
        rows=rows,
        providers=PROVIDER_LABELS,
        errors=errors or {},
        form=form or {},
    )


@router.get("/console/storage")
def storage(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("storage:read")],
) -> Response:
    """The storage connections, with their status."""
    return _storage_page(request, session, principal)


@router.post("/console/storage")
def add_storage(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("storage:manage")],
    provider: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    path: Annotated[str, Form()] = "",
    bucket: Annotated[str, Form()] = "",
    region: Annotated[str, Form()] = "",
    endpoint: Annotated[str, Form()] = "",
    access_key_id: Annotated[str, Form()] = "",
    secret_access_key: Annotated[str, Form()] = "",
    client_id: Annotated[str, Form()] = "",
    client_secret: Annotated[str, Form()] = "",
    app_key: Annotated[str, Form()] = "",
    app_secret: Annotated[str, Form()] = "",
    backup_strategy: Annotated[str, Form()] = "local",
    retention_days: Annotated[str, Form()] = "365",
) -> Response:
    """Add a connection; credentials are stored encrypted and never shown again."""
    values = {
        "name": name,
        "path": path,
        "bucket": bucket,
        "region": region,
        "endpoint": endpoint,
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "client_id": client_id,
        "client_secret": client_secret,
        "app_key": app_key,
        "app_secret": app_secret,
    }
    # What the form shows again after an error: never the secrets.
    form = {k: v[:300] for k, v in values.items() if k not in STORAGE_SECRETS}
    form.update(
        provider=provider[:20],
        backup_strategy=backup_strategy[:20],
        retention_days=retention_days[:10],
    )
    try:
        row = console_service.add_storage(
            principal.scope(session),
            provider=provider,
            fields={to_camel(k): v for k, v in values.items()},
            backup_strategy=backup_strategy,
            retention_days=retention_days,
            actor=principal.actor(address),
            may_use_server_paths=principal.can("org:create"),
        )
    except SpecValidationError as err:
        return _storage_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    except ConflictError as err:
        return _storage_page(
            request, session, principal, status_code=409, errors={"name": err.message}, form=form
        )
    return _back(
        request,
        "/console/storage",
        "success",
        f"Storage connection {row.name!r} added; its credentials are stored encrypted.",
    )


@router.post("/console/storage/{storage_id}/test")
def storage_test(
    storage_id: str,
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("storage:manage")],
) -> Response:
    """Test a connection and report the result honestly."""
    result = console_service.check_storage(
        principal.scope(session),
        storage_id=storage_id,
        data_dir=instance.settings.data_dir,
        actor=principal.actor(address),
        allow_private_endpoints=instance.settings.storage_private_endpoints,
    )
    kind = {True: "success", False: "error", None: "info"}[result.ok]
    prefix = {True: "Connection works: ", False: "Connection failed: ", None: "Not tested: "}
    return _back(request, "/console/storage", kind, prefix[result.ok] + result.message + ".")


@router.post("/console/storage/{storage_id}/remove")
def storage_remove_confirm(
    storage_id: str,
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("storage:manage")],
) -> Response:
    """Ask to confirm removing a connection (nothing changes yet)."""
    row = principal.scope(session).get(StorageConfig, storage_id)
    return _page(
        request,
        session,
        principal,
        "console/storage_remove.html",
        active="storage",
        row=row,
        label=PROVIDER_LABELS.get(row.provider, row.provider),
    )


@router.post("/console/storage/{storage_id}/remove/confirm")
def storage_remove(
    storage_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("storage:manage")],
) -> Response:
    """Remove a connection and its stored credentials (files in it stay where they are)."""
    row = console_service.remove_storage(
        principal.scope(session), storage_id=storage_id, actor=principal.actor(address)
    )
    return _back(
        request,
        "/console/storage",
        "success",
        f"Storage connection {row.name!r} removed; its stored credentials are gone.",
    )
