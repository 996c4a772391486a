"""Storage connections: add, test and remove."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from paulyops.core.db import Session
from paulyops.core.errors import ConflictError, SpecValidationError
from paulyops.services.commands import parse
from paulyops.services.storage import connections
from paulyops.services.storage.connections import AddStorage
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
from paulyops.web.pages.console.schema import form_fields

# Secret inputs of the storage form: never shown again, not even after an error.
STORAGE_SECRETS = frozenset({"access_key_id", "secret_access_key", "client_secret", "app_secret"})
# How much of a typed value the form shows again after an error.
MAX_SHOWN = 300
router = APIRouter(include_in_schema=False)


def _storage_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    fields = form_fields(AddStorage)
    return _page(
        request,
        session,
        principal,
        "console/storage.html",
        active="storage",
        status_code=status_code,
        rows=connections.list_storage(principal.scope(session)),
        providers={name: connections.PROVIDER_LABELS[name] for name in fields["provider"].choices},
        backups=[
            (name, connections.BACKUP_LABELS[name]) for name in fields["backup_strategy"].choices
        ],
        fields=fields,
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
    backup_strategy: Annotated[str, Form()] = "",
    retention_days: Annotated[str, Form()] = "",
) -> Response:
    """Add a connection; credentials are stored encrypted and never shown again."""
    values = {
        "provider": provider,
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
        "backup_strategy": backup_strategy,
        "retention_days": retention_days,
    }
    # What the form shows again after an error: never the secrets.
    form = {k: v[:MAX_SHOWN] for k, v in values.items() if k not in STORAGE_SECRETS}
    try:
        # A field left empty takes the command's default.
        command = parse(AddStorage, {k: v for k, v in values.items() if v.strip()})
        row = connections.add_storage(
            principal.scope(session),
            command,
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
    result = connections.check_storage(
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
    row = connections.get_storage(principal.scope(session), storage_id)
    return _page(
        request,
        session,
        principal,
        "console/storage_remove.html",
        active="storage",
        row=row,
        label=row.label,
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
    row = connections.remove_storage(
        principal.scope(session), storage_id=storage_id, actor=principal.actor(address)
    )
    return _back(
        request,
        "/console/storage",
        "success",
        f"Storage connection {row.name!r} removed; its stored credentials are gone.",
    )
