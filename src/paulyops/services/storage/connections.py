"""Storage connections of an organization: add, test and remove one; list them for display.

Each use case takes the organization's scope, its command and the actor; it validates,
changes the rows and writes its own audit row in the caller's transaction. A connection's
secrets go to the encrypted ``credentials`` column and are never returned: views name the
credentials stored, never their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Final, cast

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from paulyops.core.db.models import StorageConfig, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, FieldError
from paulyops.core.security.crypto import DecryptionError
from paulyops.core.security.fields import read_secret_json, write_secret_json
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.commands import Command, invalid
from paulyops.services.onboarding.errors import custom_error, field_errors
from paulyops.services.onboarding.spec import CHOICE_LABELS, BackupStrategy, ProviderType
from paulyops.services.onboarding.validators import RetentionDays
from paulyops.services.storage import backends
from paulyops.services.storage.providers import PROVIDER_MODELS, SECRET_FIELDS, StorageProvider

# How people read each provider and backup strategy: the setup spec's labels, once.
PROVIDER_LABELS: Final = CHOICE_LABELS[ProviderType]
BACKUP_LABELS: Final = CHOICE_LABELS[BackupStrategy]
# Longest value a setting may have; bucket names, paths and keys are far shorter.
MAX_SETTING_CHARS: Final = 300

SettingText = Annotated[str, Field(max_length=MAX_SETTING_CHARS)]


class AddStorage(Command):
    """A new storage connection: the provider, its settings, backups and retention.

    Every provider's settings are fields of one flat command (as the console's form
    posts them); only the chosen provider's are read, and blank ones count as not given.
    """

    provider: ProviderType = Field(
        title="Provider",
        description="Fill in the settings of this provider; the others are ignored.",
    )
    name: SettingText = Field(
        "",
        title="Name",
        description="Lowercase letters, digits and '-', e.g. 'archive'.",
    )
    path: SettingText = ""
    bucket: SettingText = ""
    region: SettingText = ""
    endpoint: SettingText = ""
    access_key_id: SecretStr = SecretStr("")
    secret_access_key: SecretStr = SecretStr("")
    client_id: SettingText = ""
    client_secret: SecretStr = SecretStr("")
    app_key: SettingText = ""
    app_secret: SecretStr = SecretStr("")
    backup_strategy: BackupStrategy = Field(
        BackupStrategy.LOCAL, title="Backups", description="Where backups of documents go."
    )
    retention_days: RetentionDays = Field(
        365, title="Keep documents (days)", description="How many days documents are kept."
    )

    _connection: StorageProvider | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_provider_settings(self) -> AddStorage:
        model = PROVIDER_MODELS[self.provider.value]
        given: dict[str, str] = {}
        for name in model.model_fields:
            value = getattr(self, name, None) if name != "type" else None
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(text, str) and text.strip():
                given[to_camel(name)] = text.strip()
        try:
            connection = model.model_validate({"type": self.provider.value, **given})
        except ValidationError as err:
            raise custom_error(
                "provider_settings",
                "the provider's settings have problems",
                field_errors=field_errors(err, model),
            ) from None
        self._connection = cast("StorageProvider", connection)
        return self

    @property
    def connection(self) -> StorageProvider:
        """The chosen provider's validated settings (a provider model of the setup spec)."""
        assert self._connection is not None  # set by the validator of every instance
        return self._connection


@dataclass(frozen=True, slots=True)
class StorageView:
    """A storage connection as a page shows it (never its secrets)."""

    id: str
    name: str
    provider: str
    label: str
    settings: dict[str, Any]
    # Names of the stored credentials; ``None`` when they cannot be decrypted.
    credentials: list[str] | None
    status: str
    last_tested_at: datetime | None


def _view(row: StorageConfig) -> StorageView:
    try:
        stored = read_secret_json(row, "credentials") or {}
    except DecryptionError:
        stored = None
    return StorageView(
        id=row.id,
        name=row.name,
        provider=row.provider,
        label=PROVIDER_LABELS.get(row.provider, row.provider),
        settings={k: v for k, v in row.settings.items() if v not in (None, "")},
        credentials=sorted(stored) if isinstance(stored, dict) else None,
        status=row.status,
        last_tested_at=row.last_tested_at,
    )


def list_storage(scope: OrgScope) -> list[StorageView]:
    """Return the organization's storage connections by name."""
    return [_view(row) for row in scope.list(StorageConfig, order_by=StorageConfig.name)]


def get_storage(scope: OrgScope, storage_id: str) -> StorageView:
    """Return one connection of the organization.

    Raises:
        NotFoundError: no such connection in this organization.
    """
    return _view(scope.get(StorageConfig, storage_id))


def _check_server_path(command: AddStorage, *, may_use_server_paths: bool) -> None:
    path = command.path.strip()
    if command.provider is not ProviderType.LOCAL or not path or may_use_server_paths:
        return
    if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
        raise invalid(
            [
                FieldError(
                    "path",
                    "expected a folder name inside this organization's storage (like "
                    "'invoices'); only platform administrators choose folders elsewhere",
                )
            ]
        )


def add_storage(
    scope: OrgScope, command: AddStorage, *, actor: Actor, may_use_server_paths: bool = False
) -> StorageView:
    """Add a storage connection; its secrets go to the encrypted ``credentials`` column.

    Args:
        may_use_server_paths: the caller may point a local connection anywhere on the
            server (platform administrators); others get folders inside their
            organization's own storage, so one tenant cannot reach another's files.

    Raises:
        CommandError: a local folder outside the organization's storage (field ``path``).
        ConflictError: a connection with that name exists.
    """
    _check_server_path(command, may_use_server_paths=may_use_server_paths)
    spec = command.connection
    provider = command.provider.value
    name = str(getattr(spec, "name", provider))
    if scope.first(StorageConfig, StorageConfig.name == name) is not None:
        raise ConflictError(f"a storage connection named {name!r} already exists")
    settings = spec.model_dump(mode="json", by_alias=True, exclude={"type", "name", *SECRET_FIELDS})
    credentials = {
        key: value
        for key, value in spec.model_dump(
            mode="json",
            by_alias=True,
            include=set(SECRET_FIELDS),
            context={"include_secrets": True},
        ).items()
        if value
    }
    missing = spec.missing_settings()
    row = scope.add(
        StorageConfig(
            name=name,
            provider=provider,
            settings={key: value for key, value in settings.items() if value is not None},
            backup_strategy=command.backup_strategy.value,
            retention_days=command.retention_days,
            status="needs_settings" if missing else "configured",
        )
    )
    if credentials:
        write_secret_json(row, "credentials", credentials)
    scope.session.flush()
    actors.record(
        scope.session,
        actor,
        "storage.created",
        organization_id=scope.organization_id,
        target_type="storage_config",
        target_id=row.id,
        # Names of the credentials given, never their values.
        changes={"provider": provider, "name": name, "credentials": sorted(credentials)},
    )
    return _view(row)


@dataclass(frozen=True, slots=True)
class StorageTest:
    """The outcome of a connection test: ``ok`` is ``None`` when no test could run."""

    ok: bool | None
    message: str


def _missing_settings(row: StorageConfig) -> list[str]:
    """Return the wire names of the settings and credentials the provider needs but lacks."""
    model = PROVIDER_MODELS.get(row.provider)
    stored = read_secret_json(row, "credentials") or {}
    needed = list(getattr(model, "NEEDED", ()))
    return [name for name in needed if not (row.settings.get(name) or stored.get(name))]


def check_storage(
    scope: OrgScope,
    *,
    storage_id: str,
    data_dir: Path,
    actor: Actor,
    allow_private_endpoints: bool = False,
) -> StorageTest:
    """Test a connection through its storage backend (local folders and S3 buckets).

    A test that runs sets the row's status to ``connected`` or ``error`` and its
    ``last_tested_at``, and writes one audit row. Nothing changes and nothing is recorded
    when no test can run: settings are missing, or the provider (Google Drive, Dropbox)
    needs an authorization flow that is not built yet; the message says which.

    Raises:
        NotFoundError: no such connection in this organization.
    """
    row = scope.get(StorageConfig, storage_id)
    try:
        missing = _missing_settings(row)
        backend = (
            None
            if missing
            else backends.backend_for(
                row, data_dir=data_dir, allow_private_endpoints=allow_private_endpoints
            )
        )
    except DecryptionError as err:
        check = backends.ConnectionCheck(
            False,
            "the stored credentials cannot be decrypted with this instance's keys",
            {"key_id": err.key_id},
        )
    except ValueError as err:
        return StorageTest(None, str(err))
    else:
        if missing:
            return StorageTest(None, f"settings missing for {row.provider}: {', '.join(missing)}")
        if backend is None:
            why = backends.NOT_AVAILABLE.get(row.provider, "no backend for this provider")
            return StorageTest(
                None,
                f"credentials present, connection test for {row.provider} not available yet "
                f"({why})",
            )
        check = backend.test_connection()
    row.status = "connected" if check.ok else "error"
    row.last_tested_at = utcnow()
    actors.record(
        scope.session,
        actor,
        "storage.tested",
        organization_id=scope.organization_id,
        target_type="storage_config",
        target_id=row.id,
        outcome="success" if check.ok else "failure",
        # Backends keep credentials out of their messages and details.
        changes={"status": row.status, "message": check.message, "details": check.details},
    )
    return StorageTest(check.ok, check.message)


def remove_storage(scope: OrgScope, *, storage_id: str, actor: Actor) -> StorageView:
    """Remove a storage connection and its encrypted credentials.

    Only the connection is removed: files already in the folder or bucket stay there.

    Raises:
        NotFoundError: no such connection in this organization.
    """
    row = scope.get(StorageConfig, storage_id)
    view = _view(row)
    scope.delete(row)
    scope.session.flush()
    actors.record(
        scope.session,
        actor,
        "storage.removed",
        organization_id=scope.organization_id,
        target_type="storage_config",
        target_id=storage_id,
        changes={"name": view.name, "provider": view.provider},
    )
    return view


__all__ = [
    "BACKUP_LABELS",
    "PROVIDER_LABELS",
    "AddStorage",
    "StorageTest",
    "StorageView",
    "add_storage",
    "check_storage",
    "get_storage",
    "list_storage",
    "remove_storage",
]
