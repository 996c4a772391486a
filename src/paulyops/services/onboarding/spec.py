"""The SetupSpec: the one source of truth for the answers that set up an organization.

The CLI wizard, the web wizard, ``POST /api/onboarding/setup`` and ``setup --config``
all end in :func:`parse_spec`, and the prompts, form fields, JSON Schema and error
messages are all derived from the models here (fields, defaults, limits, enums, help
texts) — never from a second copy of a rule.

On the wire the spec is camelCase JSON (the brief's request body); in Python it is
snake_case. :func:`parse_spec` applies the industry template and compliance preset (see
:mod:`.templates`) to the raw answers, validates them and raises one
:class:`~.errors.SetupSpecError` naming every problem by its wire path.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

from paulyops.core.errors import FieldError
from paulyops.services.onboarding.errors import (
    SetupSpecError,
    choice_error,
    custom_error,
    dedupe,
    field_errors,
    show,
    spec_error,
    suggest,
)
from paulyops.services.onboarding.templates import (
    DEFAULT_COMPLIANCE_LEVEL,
    MISSING,
    AppliedSpec,
    CompliancePreset,
    IndustryTemplate,
    apply_layers,
    load_catalog,
    load_presets,
    load_templates,
    normalize_choice,
    preset_for,
    template_for,
)

# --- choices -----------------------------------------------------------------------------


class Industry(StrEnum):
    """The organization's industry; picks an industry template (none for other)."""

    AGRICULTURE = "agriculture"
    LEGAL = "legal"
    FINANCE = "finance"
    HEALTHCARE = "healthcare"
    MANUFACTURING = "manufacturing"
    RETAIL = "retail"
    OTHER = "other"


class ComplianceLevel(StrEnum):
    """The compliance preset whose rules the security answers must meet."""

    BASIC = "basic"
    SOC2 = "soc2"
    ENTERPRISE = "enterprise"


class OrganizationSize(StrEnum):
    """Head count, in the brief's bands."""

    XS = "1-10"
    S = "11-50"
    M = "51-200"
    L = "201-1000"
    XL = "1000+"


class ProviderType(StrEnum):
    """Where documents are stored."""

    LOCAL = "local"
    S3 = "s3"
    GOOGLE_DRIVE = "google-drive"
    DROPBOX = "dropbox"


class BackupStrategy(StrEnum):
    """Where backups of the organization's documents go."""

    LOCAL = "local"
    CLOUD = "cloud"
    HYBRID = "hybrid"


class RbacModel(StrEnum):
    """How roles and permissions are organized."""

    SIMPLE = "simple"
    GRANULAR = "granular"
    ENTERPRISE = "enterprise"


class EncryptionLevel(StrEnum):
    """How strongly data is encrypted (the strictest level on an instance wins)."""

    STANDARD = "standard"
    ENHANCED = "enhanced"
    FIPS = "fips"


# Per enum, because "enterprise" is both a compliance level and an RBAC model.
CHOICE_LABELS: Final[Mapping[type[StrEnum], Mapping[str, str]]] = {
    Industry: {
        "agriculture": "Agriculture",
        "legal": "Legal",
        "finance": "Finance",
        "healthcare": "Healthcare",
        "manufacturing": "Manufacturing",
        "retail": "Retail",
        "other": "Other",
    },
    ComplianceLevel: {
        "basic": "basic — GDPR/CCPA",
        "soc2": "SOC 2",
        "enterprise": "enterprise — HIPAA/SOX/FedRAMP",
    },
    OrganizationSize: {
        "1-10": "1 to 10 people",
        "11-50": "11 to 50 people",
        "51-200": "51 to 200 people",
        "201-1000": "201 to 1000 people",
        "1000+": "more than 1000 people",
    },
    ProviderType: {
        "local": "Local folders on this server",
        "s3": "Amazon S3 or S3-compatible (MinIO)",
        "google-drive": "Google Drive",
        "dropbox": "Dropbox",
    },
    BackupStrategy: {
        "local": "local — backups on this server",
        "cloud": "cloud — backups in a cloud provider",
        "hybrid": "hybrid — both",
    },
    RbacModel: {
        "simple": "simple — Owner, Admin, User, Viewer",
        "granular": "granular — plus custom roles and permissions",
        "enterprise": "enterprise — role hierarchy, custom roles, delegation",
    },
    EncryptionLevel: {
        "standard": "standard — AES-256-GCM at rest",
        "enhanced": "enhanced — standard plus stricter key and session handling",
        "fips": "fips — FIPS 140-2 validated cryptography (host in FIPS mode)",
    },
}

# The choice fields by wire path; "agents.defaultAgents" takes catalog names instead.
CHOICE_FIELDS: Final[Mapping[str, type[StrEnum]]] = {
    "organization.industry": Industry,
    "organization.complianceLevel": ComplianceLevel,
    "organization.size": OrganizationSize,
    "storage.providers": ProviderType,
    "storage.backupStrategy": BackupStrategy,
    "security.rbacModel": RbacModel,
    "security.encryptionLevel": EncryptionLevel,
}
AGENTS_FIELD: Final = "agents.defaultAgents"

ORG_NAME_MAX = 100
SLUG_MAX = 63
OWNER_NAME_MAX = 200
PROVIDER_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,79}$"
# AWS bucket rules: 3-63 characters, lowercase letters, digits, dots and hyphens.
BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
REGION_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
TOKEN_MAX = 256
SECRET_MAX = 4096
PATH_MAX = 4096
RETENTION_MAX_DAYS = 36500
# Bidirectional overrides and isolates reorder how text is displayed ("Trojan Source",
# CVE-2021-42574): U+202E turns "\u202eemcA" into what reads as "Acme". No name, folder or
# id needs them, and they would mislead whoever reads the console, the audit log or a link.
BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True, slots=True)
class Choice:
    """One allowed value of a choice field, with the label a form shows."""

    value: str
    label: str
    description: str | None = None

    def as_dict(self) -> dict[str, str]:
        """Return the wire form, leaving out an empty description."""
        out = {"value": self.value, "label": self.label}
        if self.description:
            out["description"] = self.description
        return out


def choices(field: str) -> list[Choice]:
    """Return the allowed values of a choice field, in form order, with labels.

    Args:
        field: the wire path, e.g. ``"organization.complianceLevel"`` or
            ``"agents.defaultAgents"`` (the catalog's agents).

    Raises:
        KeyError: ``field`` is not a choice field.
    """
    if field == AGENTS_FIELD:
        return [Choice(a.name, a.title, a.description) for a in load_catalog().agents]
    enum = CHOICE_FIELDS[field]
    labels = CHOICE_LABELS[enum]
    notes: Mapping[str, str] = {}
    if enum is Industry:
        notes = {name: t.description for name, t in load_templates().items()}
    elif enum is ComplianceLevel:
        notes = {name: p.description for name, p in load_presets().items()}
    return [Choice(m.value, labels[m.value], notes.get(m.value)) for m in enum]


def all_choices() -> dict[str, list[Choice]]:
    """Return :func:`choices` for every choice field, by wire path."""
    return {path: choices(path) for path in (*CHOICE_FIELDS, AGENTS_FIELD)}


# --- reusable field types ----------------------------------------------------------------


def _choice(enum: type[StrEnum]) -> BeforeValidator:
    allowed = [member.value for member in enum]

    def check(value: object) -> object:
        if isinstance(value, enum):
            return value
        folded = normalize_choice(value)
        if isinstance(folded, str) and folded in allowed:
            return folded
        raise choice_error(value, allowed)

    return BeforeValidator(check)


def unsafe_text_problem(text: str) -> str | None:
    """Return why ``text`` cannot be stored or shown safely, or ``None`` when it can.

    Refused: unpaired UTF-16 surrogates (a Python ``str`` holds one only when it came from
    bytes that were not UTF-8, or from a JSON escape like ``\\ud800``; it cannot be encoded
    for the database, a file or a response) and the bidirectional controls of
    :data:`BIDI_CONTROLS`. The message names the code point, never the text (it may be
    a secret).
    """
    for index, char in enumerate(text, 1):
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return (
                f"expected text without unpaired UTF-16 surrogates, got U+{code:04X} at "
                f"character {index} (text that was not valid UTF-8?)"
            )
        if char in BIDI_CONTROLS:
            return (
                "expected text without bidirectional override or isolate characters "
                f"(U+202A-U+202E, U+2066-U+2069), got U+{code:04X} at character {index}"
            )
    return None


def _refuse_unsafe_text(data: object) -> object:
    """Refuse unsafe characters in the text values of one section's input.

    Checks every text value, secret and list item of the mapping (nested sections check
    their own), and the keys themselves, naming the field.
    """
    if not isinstance(data, Mapping):
        return data
    for key, value in data.items():
        if isinstance(key, str) and (problem := unsafe_text_problem(key)) is not None:
            raise custom_error("unsafe_text", f"field names: {problem}")
        items = value if isinstance(value, list | tuple) else [value]
        for index, item in enumerate(items):
            text = item.get_secret_value() if isinstance(item, SecretStr) else item
            if not isinstance(text, str):
                continue
            problem = unsafe_text_problem(text)
            if problem is not None:
                subpath = (key, index) if items is value else (key,)
                raise custom_error("unsafe_text", problem, subpath=subpath)
    return data


def _blank_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


# Mail domains of a private network that small businesses run: .local (RFC 6762), home.arpa
# (RFC 8375), .internal (reserved by ICANN for private use) and the customary .lan.
# email-validator refuses the first two as "special-use" names (it has no option for it),
# so addresses on them are checked on a stand-in under the library's own test domain.
INTERNAL_EMAIL_SUFFIXES: Final = ("local", "lan", "internal", "home.arpa")
_STAND_IN_SUFFIX: Final = "test"
_EMAIL_MAX: Final = 254  # RFC 5321 path limit, as email-validator enforces


def _allow_internal_domains(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """Validate an email address like ``EmailStr``, also accepting internal mail domains."""
    if not isinstance(value, str):
        return handler(value)
    address = value.strip()
    local, at, domain = address.rpartition("@")
    folded = domain.lower()
    suffix = next((s for s in INTERNAL_EMAIL_SUFFIXES if folded.endswith("." + s)), None)
    if not at or suffix is None:
        return handler(value)
    import email_validator

    stand_in = f"{local}@{domain[: -len(suffix)]}{_STAND_IN_SUFFIX}"
    try:
        parts = email_validator.validate_email(
            stand_in, check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as err:
        raise PydanticCustomError(
            "value_error",
            "value is not a valid email address: {reason}",
            {"reason": str(err.args[0])},
        ) from None
    normalized = str(parts.normalized)
    checked = normalized[: -len(_STAND_IN_SUFFIX)] + suffix
    if len(checked) > _EMAIL_MAX:
        raise PydanticCustomError(
            "value_error",
            "value is not a valid email address: {reason}",
            {"reason": f"The email address is too long (at most {_EMAIL_MAX} characters)"},
        )
    return checked


Email = Annotated[EmailStr, WrapValidator(_allow_internal_domains)]


def _plain_text(*, max_length: int) -> BeforeValidator:
    """Strip text, refuse control characters and require a letter or digit."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            raise custom_error("blank", "expected text, got an empty value")
        if any(unicodedata.category(char) == "Cc" for char in text):
            raise custom_error("control_characters", "expected text without control characters")
        if len(text) > max_length:
            raise custom_error(
                "text_too_long", f"expected at most {max_length} characters, got {len(text)}"
            )
        if not any(char.isalnum() for char in text):
            raise custom_error(
                "no_letter_or_digit", f"expected a letter or digit, got {show(value)}"
            )
        return text

    return BeforeValidator(check)


def _pattern(pattern: str, expected: str) -> BeforeValidator:
    def check(value: object) -> object:
        value = _blank_to_none(value)
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not re.fullmatch(pattern, text) or ".." in text:
            raise custom_error("pattern", f"expected {expected}, got {show(value)}")
        return text

    return BeforeValidator(check)


def _check_token(value: object) -> object:
    value = _blank_to_none(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) > TOKEN_MAX or any(char.isspace() for char in text):
        raise custom_error(
            "token", f"expected an id of at most {TOKEN_MAX} characters without spaces"
        )
    return text


def _check_secret(value: object) -> object:
    value = _blank_to_none(value)
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(text, str) and len(text) > SECRET_MAX:
        raise custom_error("secret_too_long", f"expected at most {SECRET_MAX} characters")
    return value


def _dump_secret(value: SecretStr | None, info: SerializationInfo) -> str | None:
    if value is None:
        return None
    if isinstance(info.context, Mapping) and info.context.get("include_secrets"):
        return value.get_secret_value()
    return str(value)


def _check_timezone(value: object) -> object:
    value = _blank_to_none(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    zones = _zones()
    if text in zones or (not zones and _is_zone(text)):
        return text
    raise custom_error(
        "timezone",
        f"expected an IANA zone like 'Europe/Berlin', got {show(value)}",
        suggestion=suggest(text, zones),
    )


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _is_zone(text: str) -> bool:
    # Only used where the host has no zone list to check against (no tzdata).
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _check_endpoint(value: object) -> object:
    value = _blank_to_none(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    expected = "an http(s) URL like 'https://minio.example.com:9000'"
    try:
        parts = urlsplit(text)
        has_port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise custom_error("url", f"expected {expected}, got {show(value)}") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname or not has_port_ok:
        raise custom_error("url", f"expected {expected}, got {show(value)}")
    if parts.username or parts.password:
        raise custom_error(
            "url", "expected a URL without credentials; use accessKeyId and secretAccessKey"
        )
    if len(text) > 2048 or parts.query or parts.fragment:
        raise custom_error("url", f"expected {expected} without query or fragment")
    return text


def _check_local_path(value: object) -> object:
    value = _blank_to_none(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) > PATH_MAX or any(unicodedata.category(char) == "Cc" for char in text):
        raise custom_error("path", f"expected a folder path of at most {PATH_MAX} characters")
    if ".." in re.split(r"[\\/]", text):
        raise custom_error("path", f"expected a folder path without '..', got {show(value)}")
    return text


def _check_agent(value: object) -> object:
    names = load_catalog().names
    folded = normalize_choice(value)
    if isinstance(folded, str):
        folded = folded.removeprefix("paulyops.")
        if folded in names:
            return folded
    raise choice_error(value, names, noun="an agent from the catalog")


def _agents_schema(schema: JsonDict) -> None:
    schema["items"] = {"type": "string", "enum": list(load_catalog().names)}


OrgName = Annotated[
    str, _plain_text(max_length=ORG_NAME_MAX), Field(min_length=1, max_length=ORG_NAME_MAX)
]
OptionalEmail = Annotated[Email | None, BeforeValidator(_blank_to_none)]
Timezone = Annotated[str | None, BeforeValidator(_check_timezone)]
ProviderName = Annotated[
    str,
    _pattern(PROVIDER_NAME_PATTERN, "a name of lowercase letters, digits and '-' (max 80)"),
]
Token = Annotated[str | None, BeforeValidator(_check_token)]
Secret = Annotated[
    SecretStr | None,
    BeforeValidator(_check_secret),
    PlainSerializer(_dump_secret, return_type=str | None, when_used="json"),
]
AgentName = Annotated[str, BeforeValidator(_check_agent)]
RetentionDays = Annotated[int, Field(ge=1, le=RETENTION_MAX_DAYS)]


class _WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        # Inputs may hold secrets; keep them out of tracebacks and logs.
        hide_input_in_errors=True,
    )

    # Once for every section: each text field (names, emails, ids, paths, secrets, list
    # items) refuses unpaired surrogates and bidi controls before its own rules run, so no
    # field can forget it. A model validator, because pydantic allows no "before" field
    # validator on the providers' discriminator.
    @model_validator(mode="before")
    @classmethod
    def _check_text(cls, data: object) -> object:
        return _refuse_unsafe_text(data)


# --- organization ------------------------------------------------------------------------


class OrganizationSpec(_WireModel):
    """Who the organization is: name, industry, compliance level and size."""

    name: OrgName = Field(
        title="Organization name",
        description="The organization's name as people know it (1-100 characters).",
        examples=["Acme Corp"],
    )
    industry: Annotated[Industry, _choice(Industry)] = Field(
        title="Industry",
        description="Picks an industry template with suggested agents, folders and settings.",
    )
    compliance_level: Annotated[ComplianceLevel, _choice(ComplianceLevel)] = Field(
        ComplianceLevel(DEFAULT_COMPLIANCE_LEVEL),
        title="Compliance level",
        description="The compliance preset whose rules the security settings must meet; "
        "unset, the industry template suggests one.",
    )
    size: Annotated[OrganizationSize, _choice(OrganizationSize)] = Field(
        OrganizationSize.XS,
        title="Organization size",
        description="How many people work in the organization.",
    )
    admin_contact: OptionalEmail = Field(
        None,
        title="Admin contact",
        description="Email address for security and operations notices (optional).",
        examples=["it@acme.example"],
    )
    timezone: Timezone = Field(
        None,
        title="Time zone",
        description="IANA time zone for schedules and reports, e.g. 'Europe/Berlin' "
        "(optional; UTC when unset).",
        examples=["Europe/Berlin"],
    )

    @property
    def slug(self) -> str:
        """The organization's identity on this instance, derived from its name."""
        return slugify(self.name)


def slugify(name: str) -> str:
    """Return the normalized slug of an organization name: ``a-z0-9-``, at most 63 chars.

    A name with no Latin letters or digits gets ``org-`` plus a hash of the name, so
    every valid name has a stable, non-empty slug.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:SLUG_MAX].rstrip("-")
    if slug:
        return slug
    key = unicodedata.normalize("NFKC", name).strip().casefold()
    return "org-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


# --- storage -----------------------------------------------------------------------------


class _ProviderBase(_WireModel):
    # Wire names of the settings a provider needs before it can connect.
    NEEDED: ClassVar[tuple[str, ...]] = ()

    def missing_settings(self) -> list[str]:
        """Return the wire names of settings still needed to connect (for next steps)."""
        dumped = self.model_dump(by_alias=True)
        return [name for name in self.NEEDED if dumped.get(name) is None]


class LocalProvider(_ProviderBase):
    """Folders on this server."""

    type: Literal["local"] = Field("local", description="Provider type.")
    name: ProviderName = Field(
        "local", title="Name", description="A short name for this connection."
    )
    path: Annotated[str | None, BeforeValidator(_check_local_path)] = Field(
        None,
        title="Folder",
        description="Absolute folder, or relative to the data directory "
        "(default: <data>/storage/<organization>).",
    )


class S3Provider(_ProviderBase):
    """Amazon S3 or an S3-compatible service such as MinIO."""

    NEEDED: ClassVar[tuple[str, ...]] = ("bucket", "accessKeyId", "secretAccessKey")

    type: Literal["s3"] = Field("s3", description="Provider type.")
    name: ProviderName = Field("s3", title="Name", description="A short name for this connection.")
    bucket: Annotated[
        str | None,
        _pattern(BUCKET_PATTERN, "an S3 bucket name (3-63 lowercase letters, digits, '.', '-')"),
    ] = Field(None, title="Bucket", description="The bucket documents are stored in.")
    region: Annotated[str | None, _pattern(REGION_PATTERN, "a region like 'eu-central-1'")] = Field(
        None, title="Region", description="The bucket's region, e.g. 'eu-central-1'."
    )
    endpoint: Annotated[str | None, BeforeValidator(_check_endpoint)] = Field(
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


class GoogleDriveProvider(_ProviderBase):
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


class DropboxProvider(_ProviderBase):
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
PROVIDER_MODELS: Final[Mapping[str, type[_ProviderBase]]] = {
    "local": LocalProvider,
    "s3": S3Provider,
    "google-drive": GoogleDriveProvider,
    "dropbox": DropboxProvider,
}
# Python names of every secret field, left out of ``to_wire()`` and the spec hash.
SECRET_FIELDS: Final = frozenset(
    {"access_key_id", "secret_access_key", "client_secret", "app_secret"}
)


def _short_form(value: object) -> object:
    """Accept the brief's ``"google-drive"`` as ``{"type": "google-drive"}``."""
    if isinstance(value, str):
        folded = normalize_choice(value)
        if folded in PROVIDER_MODELS:
            return {"type": folded}
        raise choice_error(value, list(PROVIDER_MODELS), noun="a storage provider")
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        return {**value, "type": normalize_choice(value["type"])}
    return value


def _default_providers() -> list[StorageProvider]:
    return [LocalProvider()]


ProviderEntry = Annotated[
    Annotated[StorageProvider, Field(discriminator="type")],
    BeforeValidator(_short_form, json_schema_input_type=ProviderType | StorageProvider),
]


class StorageSpec(_WireModel):
    """Where documents live, how they are backed up and how long they are kept."""

    providers: list[ProviderEntry] = Field(
        default_factory=_default_providers,
        min_length=1,
        max_length=20,
        title="Storage providers",
        description="Where documents are stored: provider types "
        "(['local', 'google-drive']) or objects with settings; credentials may be "
        "added later.",
    )
    backup_strategy: Annotated[BackupStrategy, _choice(BackupStrategy)] = Field(
        BackupStrategy.LOCAL,
        title="Backup strategy",
        description="Where backups of documents go.",
    )
    retention_days: RetentionDays = Field(
        365,
        title="Document retention (days)",
        description="How many days documents are kept (1-36500).",
    )

    @field_validator("providers")
    @classmethod
    def _check_unique_names(cls, providers: list[StorageProvider]) -> list[StorageProvider]:
        first: dict[str, int] = {}
        for index, provider in enumerate(providers):
            if provider.name in first:
                raise custom_error(
                    "duplicate_provider",
                    f"name {provider.name!r} is already used by storage.providers."
                    f"{first[provider.name]}; give each provider its own name",
                    subpath=(index, "name"),
                )
            first[provider.name] = index
        return providers


# --- security and agents -----------------------------------------------------------------


class SecuritySpec(_WireModel):
    """Access control, audit trail and encryption; checked against the compliance preset."""

    rbac_model: Annotated[RbacModel, _choice(RbacModel)] = Field(
        RbacModel.SIMPLE,
        title="Roles model",
        description="How roles and permissions are organized.",
    )
    audit_logging: bool = Field(
        True,
        title="Audit logging",
        description="Record every action in the tamper-evident audit log; off (basic only) "
        "lowers detail, security events and admin actions are always logged.",
    )
    data_retention: RetentionDays = Field(
        365,
        title="Audit retention (days)",
        description="How many days audit log entries are kept (1-36500).",
    )
    encryption_level: Annotated[EncryptionLevel, _choice(EncryptionLevel)] = Field(
        EncryptionLevel.STANDARD,
        title="Encryption level",
        description="How strongly stored data is encrypted.",
    )
    require_admin_2fa: bool = Field(
        False,
        alias="requireAdmin2fa",
        title="Require 2FA for admins",
        description=(
            "Everyone holding admin permissions (beyond the User role's) must use a second "
            "factor (TOTP); until they do, they can only set it up and their API tokens are "
            "refused."
        ),
    )


class AgentsSpec(_WireModel):
    """Which agents start enabled and how files are routed to them."""

    default_agents: list[AgentName] = Field(
        default_factory=lambda: ["file-processor"],
        max_length=50,
        title="Default agents",
        description="Agents from the bundled catalog to install and enable (short names).",
        json_schema_extra=_agents_schema,
    )
    auto_routing: bool = Field(
        True,
        title="Automatic routing",
        description="Send each new file to the best matching agent automatically.",
    )
    confidence_threshold: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        title="Confidence threshold",
        description="Below this routing confidence (0-1) a file waits for a person.",
    )
    monitoring_enabled: bool = Field(
        True,
        title="Monitoring",
        description="Track agent runs and alert admins when an agent keeps failing.",
    )

    @field_validator("default_agents")
    @classmethod
    def _check_unique_agents(cls, names: list[str]) -> list[str]:
        for index, name in enumerate(names):
            if name in names[:index]:
                raise custom_error("duplicate_agent", f"{name!r} is listed twice", subpath=(index,))
        return names

    @property
    def default_agent_ids(self) -> list[str]:
        """The package ids of the default agents (``paulyops.<name>``)."""
        catalog = load_catalog()
        return [agent.id for name in self.default_agents if (agent := catalog.get(name))]


class OwnerSpec(_WireModel):
    """The first owner of the organization, who gets a one-time password-set link."""

    email: Email = Field(
        title="Owner email",
        description="The owner's sign-in email address.",
        examples=["owner@acme.example"],
    )
    name: Annotated[
        str, _plain_text(max_length=OWNER_NAME_MAX), Field(min_length=1, max_length=200)
    ] = Field(title="Owner name", description="The owner's full name.")


# --- the spec ----------------------------------------------------------------------------


class SetupSpec(_WireModel):
    """Every answer needed to set up one organization.

    Construct it through :func:`parse_spec`, which applies the industry template and
    compliance preset first; constructing it directly still enforces the preset's rules.
    """

    model_config = ConfigDict(
        title="SetupSpec",
        json_schema_extra={"description": "Every answer needed to set up one organization."},
    )

    organization: OrganizationSpec = Field(
        title="Organization", description="Who the organization is."
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, title="Storage", description="Where documents live."
    )
    security: SecuritySpec = Field(
        default_factory=SecuritySpec,
        title="Security and compliance",
        description="Access control, audit trail and encryption.",
    )
    agents: AgentsSpec = Field(
        default_factory=AgentsSpec,
        title="Agents",
        description="Which agents start enabled and how files are routed.",
    )
    owner: OwnerSpec | None = Field(
        None,
        title="Owner",
        description="The organization's first owner (required through the setup token).",
    )

    @model_validator(mode="after")
    def _check_preset(self) -> SetupSpec:
        preset = preset_for(self.organization.compliance_level)
        if preset is None:
            return self
        wire = self.model_dump(by_alias=True)
        broken = preset.violations(lambda path: _lookup(wire, path))
        if broken:
            errors = [preset.rule_error(rule, value) for rule, value in broken]
            raise custom_error(PRESET_RULE, errors[0].message, field_errors=errors)
        return self

    @property
    def slug(self) -> str:
        """The organization's normalized slug: its identity on this instance."""
        return self.organization.slug

    @property
    def preset(self) -> CompliancePreset:
        """The compliance preset whose rules this spec meets."""
        preset = preset_for(self.organization.compliance_level)
        if preset is None:  # pragma: no cover - every ComplianceLevel has a preset file
            raise KeyError(self.organization.compliance_level)
        return preset

    @property
    def template(self) -> IndustryTemplate | None:
        """The industry template for this organization (None for ``other``)."""
        return template_for(self.organization.industry)

    def to_wire(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """Return the complete spec in wire form (camelCase JSON values).

        Args:
            include_secrets: keep credentials (only for re-encrypting them); by default
                they are left out, so the result is safe for ``configs/setup.json``.
        """
        exclude = (
            None if include_secrets else {"storage": {"providers": {"__all__": set(SECRET_FIELDS)}}}
        )
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude=exclude,
            context={"include_secrets": include_secrets},
        )

    def canonical_hash(self) -> str:
        """Return the sha256 of the canonical wire JSON without secrets (for idempotency)."""
        text = json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


PRESET_RULE: Final = "preset_rule"
Step = Literal["organization", "storage", "security", "agents", "owner"]
STEPS: Final[tuple[Step, ...]] = get_args(Step)


def step_of(path: str) -> Step:
    """Return the wizard step a wire path (``storage.retentionDays``) belongs to.

    Raises:
        ValueError: the path's first part is not a step.
    """
    head = path.partition(".")[0]
    for step in STEPS:
        if step == head:
            return step
    raise ValueError(f"{path!r} is not a field of a setup step ({', '.join(STEPS)})")


SECTION_MODELS: Final[Mapping[str, type[_WireModel]]] = {
    "organization": OrganizationSpec,
    "storage": StorageSpec,
    "security": SecuritySpec,
    "agents": AgentsSpec,
    "owner": OwnerSpec,
}
InstanceDefaults = Mapping[str, Mapping[str, object]]


# --- entry points ------------------------------------------------------------------------


def parse_spec(
    raw: Mapping[str, object], *, instance_defaults: InstanceDefaults | None = None
) -> SetupSpec:
    """Apply the industry template and compliance preset to ``raw``, then validate it.

    Args:
        raw: the answers in wire form (camelCase; snake_case keys are accepted too).
        instance_defaults: the instance's defaults for new organizations
            (:func:`~.templates.settings_defaults`); a template still wins over them.

    Raises:
        SetupSpecError: one :class:`~paulyops.core.errors.FieldError` per problem.
    """
    if not isinstance(raw, Mapping):
        raise spec_error([FieldError("", f"expected an object, got {show(raw)}")])
    applied = apply_layers(wire_keys(raw), instance_defaults=instance_defaults)
    try:
        return SetupSpec.model_validate(applied.data)
    except ValidationError as err:
        errors = field_errors(err, SetupSpec, skip=(PRESET_RULE,))
        # Reported with where the compliance level came from, and even when other fields
        # are invalid (the model's own preset check only runs once everything else is).
        errors += _rule_errors(applied)
        raise spec_error(errors) from err


def validate_partial(
    raw: Mapping[str, object], step: Step, *, instance_defaults: InstanceDefaults | None = None
) -> list[FieldError]:
    """Validate one wizard step of a draft with the same rules as :func:`parse_spec`.

    The draft may hold other steps too: they pick the template and preset, so a preset
    rule on this step applies as soon as the answers it needs are there.

    Args:
        raw: the draft in wire form.
        step: the section to check.
        instance_defaults: as for :func:`parse_spec`.

    Returns:
        The problems of this step (empty when it is valid).
    """
    if not isinstance(raw, Mapping):
        return [FieldError("", f"expected an object, got {show(raw)}")]
    applied = apply_layers(wire_keys(raw), instance_defaults=instance_defaults)
    model = SECTION_MODELS[step]
    section = applied.data.get(step)
    errors: list[FieldError] = []
    try:
        model.model_validate({} if section is None else section)
    except ValidationError as err:
        errors = field_errors(err, model, prefix=(step,))
    errors += [e for e in _rule_errors(applied) if e.field.startswith(f"{step}.")]
    return dedupe(errors)


def wire_keys(raw: Mapping[str, object]) -> dict[str, object]:
    """Return ``raw`` with snake_case field names renamed to their wire (camelCase) names."""
    out = _rename(raw, SetupSpec)
    for section, model in SECTION_MODELS.items():
        value = out.get(section)
        if isinstance(value, Mapping):
            out[section] = _rename(value, model)
    storage = out.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("providers"), list):
        storage["providers"] = [_rename_provider(item) for item in storage["providers"]]
    return out


@functools.cache
def _schema() -> str:
    schema = SetupSpec.model_json_schema(by_alias=True, mode="validation")
    return json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema})


def spec_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the wire form (``paulyops setup --schema``)."""
    schema: dict[str, Any] = json.loads(_schema())
    return schema


def schema_bundle() -> dict[str, Any]:
    """Return what a form needs to render and pre-fill the setup questions.

    Keys: ``schema`` (JSON Schema), ``templates`` (by industry), ``presets`` (by level),
    ``catalog`` (the agents) and ``choices`` (labels of every choice field).
    """
    return {
        "schema": spec_json_schema(),
        "templates": {
            name: template.model_dump(mode="json", by_alias=True)
            for name, template in load_templates().items()
        },
        "presets": {
            name: preset.model_dump(mode="json", by_alias=True)
            for name, preset in load_presets().items()
        },
        "catalog": [
            agent.model_dump(mode="json", by_alias=True) for agent in load_catalog().agents
        ],
        "choices": {
            path: [choice.as_dict() for choice in items] for path, items in all_choices().items()
        },
    }


@dataclass(frozen=True, slots=True)
class FieldHelp:
    """What a prompt or form field shows for one answer."""

    path: str
    title: str
    description: str
    required: bool
    default: object
    choices: list[Choice] | None


def spec_fields(section: Step | None = None) -> list[FieldHelp]:
    """Return the help of every answer (or one section's), in form order.

    Defaults are the model's; :func:`~.templates.apply_template` gives the ones a
    template or preset would fill in.
    """
    sections = [section] if section is not None else list(SECTION_MODELS)
    out: list[FieldHelp] = []
    for name in sections:
        for field_name, info in SECTION_MODELS[name].model_fields.items():
            path = f"{name}.{info.alias or field_name}"
            default = info.get_default(call_default_factory=True)
            out.append(
                FieldHelp(
                    path=path,
                    title=info.title or field_name,
                    description=info.description or "",
                    required=default is PydanticUndefined,
                    default=None if default is PydanticUndefined else _wire_default(info, default),
                    choices=choices(path) if path in (*CHOICE_FIELDS, AGENTS_FIELD) else None,
                )
            )
    return out


def field_help(path: str) -> str:
    """Return the help text of the answer at wire ``path``.

    Raises:
        KeyError: no answer has that path.
    """
    for help_ in spec_fields():
        if help_.path == path:
            return help_.description
    raise KeyError(path)


# --- internals ---------------------------------------------------------------------------


def _wire_default(info: FieldInfo, default: object) -> object:
    annotation: Any = info.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    return adapter.dump_python(default, mode="json", by_alias=True)


def _rule_errors(applied: AppliedSpec) -> list[FieldError]:
    preset = applied.preset
    if preset is None:
        return []
    source = applied.sources.get("organization.complianceLevel", "")
    origin = source if source.endswith("template") or source == "instance defaults" else None
    broken = preset.violations(lambda path: _typed_value(applied.data, path))
    return [preset.rule_error(rule, value, origin=origin) for rule, value in broken]


def _typed_value(data: Mapping[str, object], path: str) -> object:
    """Return the validated value at wire ``path`` (or its default), or MISSING if invalid."""
    section_name, _, key = path.partition(".")
    section = data.get(section_name)
    if section is not None and not isinstance(section, Mapping):
        return MISSING
    value = section.get(key) if section is not None else None
    adapter, default = _field_adapter(path)
    if value is None:
        return default
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return MISSING


@functools.cache
def _field_adapter(path: str) -> tuple[TypeAdapter[Any], object]:
    section_name, _, key = path.partition(".")
    model = SECTION_MODELS[section_name]
    for name, info in model.model_fields.items():
        if key in {name, info.alias}:
            default = info.get_default(call_default_factory=True)
            annotation: Any = info.annotation
            if info.metadata:
                annotation = Annotated[(annotation, *info.metadata)]
            adapter: TypeAdapter[Any] = TypeAdapter(annotation)
            return adapter, MISSING if default is PydanticUndefined else default
    raise KeyError(path)


def _lookup(wire: Mapping[str, object], path: str) -> object:
    section_name, _, key = path.partition(".")
    section = wire.get(section_name)
    if isinstance(section, Mapping) and key in section:
        return section[key]
    return MISSING


def _rename(raw: Mapping[Any, object], model: type[BaseModel]) -> dict[Any, object]:
    names = {name: info.alias for name, info in model.model_fields.items() if info.alias}
    out: dict[Any, object] = {}
    for key, value in raw.items():
        alias = names.get(key) if isinstance(key, str) else None
        if alias is not None and alias != key and alias not in raw:
            out[alias] = value
        else:
            out[key] = value
    return out


def _rename_provider(item: object) -> object:
    if not isinstance(item, Mapping):
        return item
    model = PROVIDER_MODELS.get(str(normalize_choice(item.get("type"))))
    return _rename(item, model) if model is not None else dict(item)


__all__ = [
    "AGENTS_FIELD",
    "CHOICE_FIELDS",
    "CHOICE_LABELS",
    "PROVIDER_MODELS",
    "SECRET_FIELDS",
    "SECTION_MODELS",
    "AgentsSpec",
    "BackupStrategy",
    "Choice",
    "ComplianceLevel",
    "DropboxProvider",
    "EncryptionLevel",
    "FieldHelp",
    "GoogleDriveProvider",
    "Industry",
    "InstanceDefaults",
    "LocalProvider",
    "OrganizationSize",
    "OrganizationSpec",
    "OwnerSpec",
    "ProviderType",
    "RbacModel",
    "S3Provider",
    "SecuritySpec",
    "SetupSpec",
    "SetupSpecError",
    "Step",
    "StorageProvider",
    "StorageSpec",
    "all_choices",
    "choices",
    "field_help",
    "parse_spec",
    "schema_bundle",
    "slugify",
    "spec_fields",
    "spec_json_schema",
    "step_of",
    "validate_partial",
    "wire_keys",
]
