"""Storage provider models: where an organization's documents live, and what each needs.

A provider entry of ``storage.providers`` in the SetupSpec is one of these models (or the
brief's short form, a type name like ``"google-drive"``). The storage backends and the
console's storage connections read the same models, so a provider's settings, their
checks and which of them are secrets are declared once, here.

.. versionadded:: 0.2.0
   Moved out of ``services/onboarding/spec.py`` (DESIGN.md, second wave).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Final, Literal

from pydantic import BeforeValidator, Field

from paulyops.core.vocabulary import ProviderType
from paulyops.services.onboarding.errors import choice_error
from paulyops.services.onboarding.templates import normalize_choice
from paulyops.services.onboarding.validators import (
    ProviderName,
    Secret,
    Token,
    WireModel,
    check_endpoint,
    check_local_path,
    pattern_text,
)

# AWS bucket rules: 3-63 characters, lowercase letters, digits, dots and hyphens.
BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
REGION_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"


class ProviderBase(WireModel):
    """What every provider model shares: a type tag, a name and the settings it needs."""

    # Wire names of the settings a provider needs before it can connect.
    NEEDED: ClassVar[tuple[str, ...]] = ()

    def missing_settings(self) -> list[str]:
        """Return the wire names of settings still needed to connect (for next steps)."""
        dumped = self.model_dump(by_alias=True)
        return [name for name in self.NEEDED if dumped.get(name) is None]


class LocalProvider(ProviderBase):
    """Folders on this server."""

    type: Literal["local"] = Field("local", description="Provider type.")
    name: ProviderName = Field(
        "local", title="Name", description="A short name for this connection."
    )
    path: Annotated[str | None, BeforeValidator(check_local_path)] = Field(
        None,
        title="Folder",
        description="Absolute folder, or relative to the data directory "
        "(default: <data>/storage/<organization>).",
    )


class S3Provider(ProviderBase):
    """Amazon S3 or an S3-compatible service such as MinIO."""

    NEEDED: ClassVar[tuple[str, ...]] = ("bucket", "accessKeyId", "secretAccessKey")

    type: Literal["s3"] = Field("s3", description="Provider type.")
    name: ProviderName = Field("s3", title="Name", description="A short name for this connection.")
    bucket: Annotated[
        str | None,
        pattern_text(
            BUCKET_PATTERN, "an S3 bucket name (3-63 lowercase letters, digits, '.', '-')"
        ),
    ] = Field(None, title="Bucket", description="The bucket documents are stored in.")
    region: Annotated[str | None, pattern_text(REGION_PATTERN, "a region like 'eu-central-1'")] = (
        Field(None, title="Region", description="The bucket's region, e.g. 'eu-central-1'.")
    )
    endpoint: Annotated[str | None, BeforeValidator(check_endpoint)] = Field(
        None,
        title="Endpoint",
        description="Endpoint URL for S3-compatible services; empty for AWS.",
    )
    access_key_id: Secret = Field(
        None, title="Access key id", description="Access key id (stored encrypted)."
    )
    secret_access_key: Secret = Field(
        None, title="Secret access key", description="Secret access key (stored encrypted)."
    )


class GoogleDriveProvider(ProviderBase):
    """Google Drive, connected through an OAuth client of the organization."""

    NEEDED: ClassVar[tuple[str, ...]] = ("clientId", "clientSecret")

    type: Literal["google-drive"] = Field("google-drive", description="Provider type.")
    name: ProviderName = Field(
        "google-drive", title="Name", description="A short name for this connection."
    )
    client_id: Token = Field(None, title="OAuth client id", description="Google OAuth client id.")
    client_secret: Secret = Field(
        None, title="OAuth client secret", description="Google OAuth client secret (encrypted)."
    )


class DropboxProvider(ProviderBase):
    """Dropbox, connected through an app of the organization."""

    NEEDED: ClassVar[tuple[str, ...]] = ("appKey", "appSecret")

    type: Literal["dropbox"] = Field("dropbox", description="Provider type.")
    name: ProviderName = Field(
        "dropbox", title="Name", description="A short name for this connection."
    )
    app_key: Token = Field(None, title="App key", description="Dropbox app key.")
    app_secret: Secret = Field(
        None, title="App secret", description="Dropbox app secret (stored encrypted)."
    )


StorageProvider = LocalProvider | S3Provider | GoogleDriveProvider | DropboxProvider
PROVIDER_MODELS: Final[Mapping[str, type[ProviderBase]]] = {
    "local": LocalProvider,
    "s3": S3Provider,
    "google-drive": GoogleDriveProvider,
    "dropbox": DropboxProvider,
}
# Python names of every secret field, left out of ``to_wire()`` and the spec hash.
SECRET_FIELDS: Final = frozenset(
    {"access_key_id", "secret_access_key", "client_secret", "app_secret"}
)


def short_form(value: object) -> object:
    """Accept the brief's ``"google-drive"`` as ``{"type": "google-drive"}``."""
    if isinstance(value, str):
        folded = normalize_choice(value)
        if folded in PROVIDER_MODELS:
            return {"type": folded}
        raise choice_error(value, list(PROVIDER_MODELS), noun="a storage provider")
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        return {**value, "type": normalize_choice(value["type"])}
    return value


def default_providers() -> list[StorageProvider]:
    return [LocalProvider()]


ProviderEntry = Annotated[
    Annotated[StorageProvider, Field(discriminator="type")],
    BeforeValidator(short_form, json_schema_input_type=ProviderType | StorageProvider),
]


__all__ = [
    "BUCKET_PATTERN",
    "PROVIDER_MODELS",
    "REGION_PATTERN",
    "SECRET_FIELDS",
    "DropboxProvider",
    "GoogleDriveProvider",
    "LocalProvider",
    "ProviderBase",
    "ProviderEntry",
    "ProviderType",
    "S3Provider",
    "StorageProvider",
    "default_providers",
    "short_form",
]
