"""Audited changes the web console makes where no other service owns them.

Each function performs one state change and writes exactly one audit row for it, in the
caller's transaction: changing session timeouts, adding, testing and removing a storage
connection. Setting a password from a one-time link and turning the second factor on and
off moved to :mod:`paulyops.services.auth.passwords` and
:mod:`paulyops.services.auth.second_factor`; their old names here delegate to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    Organization,
    SecurityConfig,
    StorageConfig,
    User,
    utcnow,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    SpecValidationError,
)
from paulyops.core.security.crypto import (
    DecryptionError,
    KeyRing,
    read_secret_json,
    write_secret_json,
)
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import passwords, second_factor
from paulyops.services.commands import parse
from paulyops.services.onboarding.spec import PROVIDER_MODELS, SECRET_FIELDS
from paulyops.services.storage import backends
from paulyops.services.storage.backends import local_folder

# Bounds for the organization's session timeouts.
IDLE_MINUTES = (5, 24 * 60)
ABSOLUTE_HOURS = (1, 30 * 24)
BACKUP_STRATEGIES = ("local", "cloud", "hybrid")
RETENTION_DAYS = (1, 36500)


# --- accounts -------------------------------------------------------------------------------


# The account use cases live in ``services/auth/passwords.py`` and
# ``services/auth/second_factor.py``; these names stay for the pages not switched yet.


def set_password_from_link(
    session: Session, *, hashing: PasswordHashing, token: str, password: str, address: str | None
) -> User:
    """Set a first password through a one-time link: see :mod:`.auth.passwords`."""
    command = parse(passwords.SetPasswordCommand, {"token": token, "password": password})
    return passwords.set_password_from_link(session, command, hashing=hashing, address=address)


def confirm_second_factor(
    session: Session, *, keyring: KeyRing, user: User, code: str, actor: Actor
) -> list[str]:
    """Turn on TOTP after a first valid code: see :func:`.second_factor.enable_totp`."""
    return second_factor.enable_totp(session, keyring=keyring, user=user, code=code, actor=actor)


def second_factor_required_by(session: Session, user_id: str) -> list[Organization]:
    """Return the organizations that require this user's second factor."""
    return second_factor.organizations_requiring_second_factor(session, user_id)


def disable_second_factor(
    session: Session, *, hashing: PasswordHashing, user: User, password: str, actor: Actor
) -> None:
    """Turn the second factor off: see :func:`.second_factor.disable_second_factor`."""
    command = parse(second_factor.DisableTotpCommand, {"password": password})
    second_factor.disable_second_factor(session, command, hashing=hashing, user=user, actor=actor)


# --- security settings ----------------------------------------------------------------------


def _bounded(value: str, field: str, bounds: tuple[int, int], unit: str) -> int:
    low, high = bounds
    try:
        number = int(value.strip())
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise SpecValidationError(
            f"bad {field}",
            [FieldError(field, f"expected a whole number of {unit} from {low} to {high}")],
        )
    return number


def update_security(
    scope: OrgScope,
    *,
    idle_minutes: str,
    absolute_hours: str,
    require_admin_2fa: bool,
    actor: Actor,
) -> SecurityConfig:
    """Change the session timeouts and the second-factor rule for admins.

    Raises:
        SpecValidationError: a timeout out of bounds (fields ``idleMinutes``,
            ``absoluteHours``).
        NotFoundError: the organization has no security settings.
    """
    errors: list[FieldError] = []
    idle = absolute = 0
    try:
        idle = _bounded(idle_minutes, "idleMinutes", IDLE_MINUTES, "minutes")
    except SpecValidationError as err:
        errors.extend(err.errors)
    try:
        absolute = _bounded(absolute_hours, "absoluteHours", ABSOLUTE_HOURS, "hours")
    except SpecValidationError as err:
        errors.extend(err.errors)
    if not errors and idle > absolute * 60:
        errors.append(
            FieldError("idleMinutes", "expected at most the absolute timeout (in minutes)")
        )
    if errors:
        raise SpecValidationError("bad session timeouts", errors)
    config = scope.first(SecurityConfig)
    if config is None:
        raise NotFoundError("organization has no security settings")
    before = {
        "session_idle_minutes": config.session_idle_minutes,
        "session_absolute_hours": config.session_absolute_hours,
        "require_admin_2fa": config.require_admin_2fa,
    }
    config.session_idle_minutes = idle
    config.session_absolute_hours = absolute
    config.require_admin_2fa = require_admin_2fa
    after = {
        "session_idle_minutes": idle,
        "session_absolute_hours": absolute,
        "require_admin_2fa": require_admin_2fa,
    }
    actors.record(
        scope.session,
        actor,
        "security.updated",
        organization_id=scope.organization_id,
        target_type="security_config",
        target_id=config.id,
        changes={k: {"from": before[k], "to": v} for k, v in after.items() if before[k] != v},
    )
    return config


# --- storage --------------------------------------------------------------------------------


def add_storage(
    scope: OrgScope,
    *,
    provider: str,
    fields: dict[str, str],
    backup_strategy: str,
    retention_days: str,
    actor: Actor,
    may_use_server_paths: bool = False,
) -> StorageConfig:
    """Add a storage connection; its secrets go to the encrypted ``credentials`` column.

    Args:
        fields: the provider's settings by wire name (``name``, ``bucket``,
            ``accessKeyId``...); blank values count as not given.
        may_use_server_paths: the caller may point a local connection anywhere on the
            server (platform administrators); others get folders inside their
            organization's own storage, so one tenant cannot reach another's files.

    Raises:
        SpecValidationError: a bad provider, setting, backup strategy or retention.
        ConflictError: a connection with that name exists.
    """
    model = PROVIDER_MODELS.get(provider)
    if model is None:
        raise SpecValidationError(
            "unknown provider",
            [FieldError("provider", "expected a storage provider", allowed=list(PROVIDER_MODELS))],
        )
    errors: list[FieldError] = []
    if backup_strategy not in BACKUP_STRATEGIES:
        errors.append(
            FieldError("backupStrategy", "expected a strategy", allowed=list(BACKUP_STRATEGIES))
        )
    try:
        retention = _bounded(retention_days, "retentionDays", RETENTION_DAYS, "days")
    except SpecValidationError as err:
        errors.extend(err.errors)
        retention = 0
    wanted = {to_camel(name) for name in model.model_fields if name != "type"}
    given = {key: value.strip() for key, value in fields.items() if key in wanted and value.strip()}
    path = given.get("path", "")
    if provider == "local" and path and not may_use_server_paths:
        parts = PurePosixPath(path).parts
        if PurePosixPath(path).is_absolute() or ".." in parts:
            errors.append(
                FieldError(
                    "path",
                    "expected a folder name inside this organization's storage (like "
                    "'invoices'); only platform administrators choose folders elsewhere",
                )
            )
    try:
        spec = model.model_validate({"type": provider, **given})
    except ValidationError as err:
        errors.extend(
            FieldError(".".join(str(part) for part in item["loc"]) or "name", item["msg"])
            for item in err.errors()
        )
        spec = None
    if errors or spec is None:
        raise SpecValidationError("the storage connection has problems", errors)
    name = getattr(spec, "name", provider)
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
            backup_strategy=backup_strategy,
            retention_days=retention,
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
    return row


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


def remove_storage(scope: OrgScope, *, storage_id: str, actor: Actor) -> StorageConfig:
    """Remove a storage connection and its encrypted credentials.

    Only the connection is removed: files already in the folder or bucket stay there.

    Raises:
        NotFoundError: no such connection in this organization.
    """
    row = scope.get(StorageConfig, storage_id)
    changes = {"name": row.name, "provider": row.provider}
    scope.delete(row)
    scope.session.flush()
    actors.record(
        scope.session,
        actor,
        "storage.removed",
        organization_id=scope.organization_id,
        target_type="storage_config",
        target_id=storage_id,
        changes=changes,
    )
    return row


__all__ = [
    "StorageTest",
    "add_storage",
    "check_storage",
    "confirm_second_factor",
    "disable_second_factor",
    "local_folder",
    "remove_storage",
    "second_factor_required_by",
    "set_password_from_link",
    "update_security",
]
