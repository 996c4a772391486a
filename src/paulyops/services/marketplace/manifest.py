"""The agent manifest (``manifest.toml``): one pydantic model, the only copy of its rules.

``paulyops package schema`` prints its JSON Schema. Keys are camelCase, like the API's
wire form (``mediaTypes``, ``documentClasses``, ``cpuSeconds``). The id prefix
``paulyops.`` is reserved for the agents bundled with PaulyOps: :func:`parse_manifest`
refuses it unless told the package is bundled.
"""

from __future__ import annotations

import re
import tomllib
from typing import Annotated, Any, Final, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from paulyops.core.errors import FieldError
from paulyops.services.ingestion.vocabulary import (
    DOCUMENT_CLASSES,
    is_document_class,
    is_media_type_pattern,
)
from paulyops.services.marketplace.capabilities import is_capability, secret_field, vocabulary
from paulyops.services.marketplace.errors import ManifestError
from paulyops.services.onboarding.spec import Industry

MANIFEST_NAME: Final = "manifest.toml"
RESERVED_PREFIX: Final = "paulyops."
FORMAT_VERSION: Final = 1

_PART = r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?"
AGENT_ID = re.compile(rf"{_PART}\.{_PART}")
PUBLISHER = re.compile(_PART)
# Semantic Versioning 2.0.0, https://semver.org (the official regular expression).
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRYPOINT = re.compile(rf"({_IDENT}(?:\.{_IDENT})*):({_IDENT})")
LIBRARY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
RESULT_KIND = re.compile(rf"{_PART}\.{_PART}(?::[a-z0-9][a-z0-9-]{{0,38}})?")
Platform = Literal["linux", "macos", "windows"]
JSON_TYPES: Final = frozenset({"string", "integer", "number", "boolean", "array", "object"})


def parse_version(value: str) -> Version:
    """Return a semver string as a comparable ``packaging`` version.

    Raises:
        ValueError: not semver, or a pre-release ``packaging`` cannot order.
    """
    if not SEMVER.fullmatch(value):
        raise ValueError(f"expected a semantic version like '1.2.0', got {value!r}")
    try:
        return Version(value)
    except InvalidVersion:
        raise ValueError(
            f"expected a semantic version whose pre-release is alpha, beta or rc "
            f"(e.g. '1.2.0-rc.1'), got {value!r}"
        ) from None


def _semver(value: str) -> str:
    parse_version(value)
    return value


def _specifier(value: str) -> str:
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(f"expected a version range like '>=1.0,<2', got {value!r}") from None
    return value


SemVer = Annotated[str, AfterValidator(_semver)]
VersionRange = Annotated[str, AfterValidator(_specifier)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Compatibility(_Model):
    """Where the agent runs: PaulyOps and Python version ranges, operating systems."""

    paulyops: VersionRange = Field(description="PaulyOps versions, e.g. '>=0.1,<1'")
    python: VersionRange = Field(">=3.11", description="Python versions, e.g. '>=3.11'")
    platforms: list[Platform] = Field(
        default_factory=lambda: list[Platform](["linux"]),
        min_length=1,
        description="operating systems",
    )


class Handles(_Model):
    """What the router may send the agent: media types and document classes."""

    media_types: list[str] = Field(default_factory=list, max_length=64)
    document_classes: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("media_types")
    @classmethod
    def _known_media_types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not is_media_type_pattern(item):
                raise ValueError(
                    f"unknown media type {item!r}: expected one of the vocabulary "
                    f"(e.g. 'application/pdf', 'image/*', '*/*')"
                )
        return value

    @field_validator("document_classes")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        for item in value:
            if not is_document_class(item):
                raise ValueError(
                    f"unknown document class {item!r}: expected one of "
                    f"{', '.join(sorted(DOCUMENT_CLASSES))}"
                )
        return value


class Resources(_Model):
    """What the agent asks for beyond the sandbox defaults (bounded by the instance)."""

    cpu_seconds: int | None = Field(None, ge=1, le=3600)
    memory_mb: int | None = Field(None, ge=16, le=16384)
    wall_seconds: int | None = Field(None, ge=1, le=86400)
    processes: int | None = Field(None, ge=1, le=1024)
    file_size_mb: int | None = Field(None, ge=1, le=4096)


class Dependencies(_Model):
    """Other agents (id -> version range) and platform libraries (name -> range)."""

    agents: dict[str, VersionRange] = Field(default_factory=dict, max_length=32)
    libraries: dict[str, VersionRange] = Field(default_factory=dict, max_length=64)

    @field_validator("agents")
    @classmethod
    def _agent_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not AGENT_ID.fullmatch(name):
                raise ValueError(f"dependency {name!r} is not an agent id like 'acme.reader'")
        return value

    @field_validator("libraries")
    @classmethod
    def _library_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not LIBRARY.fullmatch(name):
                raise ValueError(f"library {name!r} is not a distribution name like 'pypdf'")
        return value


def _check_settings_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Check the settings JSON Schema's shape: an object of typed, optionally secret fields."""
    if schema.get("type", "object") != "object":
        raise ValueError("settings: the schema's type must be 'object'")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ValueError("settings.properties: expected a table of fields")
    for name, prop in properties.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
            raise ValueError(f"settings.properties.{name}: not a field name")
        if not isinstance(prop, dict) or prop.get("type") not in JSON_TYPES:
            raise ValueError(
                f"settings.properties.{name}: expected a 'type' of {', '.join(sorted(JSON_TYPES))}"
            )
        if not isinstance(prop.get("secret", False), bool):
            raise ValueError(f"settings.properties.{name}.secret: expected true or false")
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in properties for r in required):
        raise ValueError("settings.required: must list fields of settings.properties")
    return schema


class Manifest(_Model):
    """``manifest.toml`` of an agent package."""

    format: Literal[1] = Field(FORMAT_VERSION, description="manifest format version")
    id: str = Field(description="'publisher.name', lowercase ASCII, e.g. 'acme.invoice-reader'")
    name: str = Field(min_length=1, max_length=80, description="display name")
    version: SemVer = Field(description="semantic version, e.g. '1.4.0'")
    description: str = Field(min_length=1, max_length=500)
    publisher: str = Field(description="the publisher namespace: the id's first part")
    license: str = Field(min_length=1, max_length=64, description="SPDX expression, e.g. 'MIT'")
    entrypoint: str = Field(description="'module:function' called as handle(ctx, item)")
    compatibility: Compatibility
    handles: Handles = Field(default_factory=Handles)
    industries: list[Industry] = Field(default_factory=list)
    consumes: list[str] = Field(
        default_factory=list, max_length=32, description="result kinds of other agents"
    )
    capabilities: list[str] = Field(default_factory=list, max_length=32)
    resources: Resources = Field(default_factory=Resources)
    settings: Annotated[dict[str, Any], AfterValidator(_check_settings_schema)] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the agent's settings; fields with secret = true are secret",
    )
    dependencies: Dependencies = Field(default_factory=Dependencies)

    @field_validator("id")
    @classmethod
    def _id_form(cls, value: str, info: ValidationInfo) -> str:
        if not AGENT_ID.fullmatch(value):
            raise ValueError(
                f"expected 'publisher.name' in lowercase ASCII letters, digits and '-', "
                f"got {value!r}"
            )
        is_bundled = bool((info.context or {}).get("bundled", False))
        if value.startswith(RESERVED_PREFIX) and not is_bundled:
            raise ValueError(
                f"the id prefix {RESERVED_PREFIX!r} is reserved for agents bundled with PaulyOps"
            )
        return value

    @field_validator("publisher")
    @classmethod
    def _publisher_form(cls, value: str) -> str:
        if not PUBLISHER.fullmatch(value):
            raise ValueError(f"expected a lowercase ASCII namespace like 'acme', got {value!r}")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_form(cls, value: str) -> str:
        if not ENTRYPOINT.fullmatch(value):
            raise ValueError(f"expected 'module:function', e.g. 'agent:handle', got {value!r}")
        return value

    @field_validator("consumes")
    @classmethod
    def _result_kinds(cls, value: list[str]) -> list[str]:
        for item in value:
            if not RESULT_KIND.fullmatch(item):
                raise ValueError(f"expected an agent id or 'agent.id:kind', got {item!r}")
        return value

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, value: list[str]) -> list[str]:
        for item in value:
            if not is_capability(item):
                raise ValueError(
                    f"unknown capability {item!r}: expected one of {', '.join(vocabulary())}"
                )
        if len(set(value)) != len(value):
            raise ValueError("a capability is listed twice")
        return value

    @model_validator(mode="after")
    def _cross_fields(self) -> Manifest:
        if not self.id.startswith(self.publisher + "."):
            raise ValueError(
                f"publisher: the id {self.id!r} must start with the publisher "
                f"{self.publisher + '.'!r}"
            )
        secret_fields = {
            name
            for name, prop in self.settings.get("properties", {}).items()
            if prop.get("secret") is True
        }
        for cap in self.capabilities:
            field = secret_field(cap)
            if field is not None and field not in secret_fields:
                raise ValueError(
                    f"capabilities: {cap!r} names no settings field marked secret = true"
                )
        if self.id in self.dependencies.agents:
            raise ValueError("dependencies.agents: an agent cannot depend on itself")
        return self

    @property
    def entry_module(self) -> str:
        """The module part of the entry point."""
        return self.entrypoint.partition(":")[0]

    @property
    def parsed_version(self) -> Version:
        """The version as a comparable ``packaging`` version."""
        return Version(self.version)

    def secret_settings(self) -> list[str]:
        """Return the names of the settings fields marked secret."""
        props = self.settings.get("properties", {})
        return sorted(n for n, p in props.items() if p.get("secret") is True)


def _field_errors(err: ValidationError) -> list[FieldError]:
    out = []
    for item in err.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "manifest"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        out.append(FieldError(field=loc, message=message))
    return out


def parse_manifest(source: bytes | str | dict[str, Any], *, bundled: bool = False) -> Manifest:
    """Parse and validate a manifest from TOML text (or an already-parsed table).

    Args:
        source: the bytes or text of ``manifest.toml``, or its parsed table.
        bundled: the package ships inside PaulyOps (allows the ``paulyops.`` prefix).

    Raises:
        ManifestError: not UTF-8 TOML, or a field breaks a rule (each named in ``errors``).
    """
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError(
                f"{MANIFEST_NAME}: not UTF-8 text",
                [FieldError(field=MANIFEST_NAME, message="not UTF-8 text")],
            ) from None
    if isinstance(source, str):
        try:
            source = tomllib.loads(source)
        except tomllib.TOMLDecodeError as err:
            raise ManifestError(
                f"{MANIFEST_NAME}: not valid TOML: {err}",
                [FieldError(field=MANIFEST_NAME, message=f"not valid TOML: {err}")],
            ) from None
    try:
        return Manifest.model_validate(source, context={"bundled": bundled})
    except ValidationError as err:
        errors = _field_errors(err)
        first = errors[0]
        raise ManifestError(f"{MANIFEST_NAME}: {first.field}: {first.message}", errors) from None


def manifest_json_schema() -> dict[str, Any]:
    """Return the manifest's JSON Schema (camelCase keys, as written in manifest.toml)."""
    schema = Manifest.model_json_schema(by_alias=True)
    schema["title"] = "PaulyOps agent manifest (manifest.toml)"
    return schema


__all__ = [
    "AGENT_ID",
    "MANIFEST_NAME",
    "RESERVED_PREFIX",
    "Compatibility",
    "Dependencies",
    "Handles",
    "Manifest",
    "Resources",
    "manifest_json_schema",
    "parse_manifest",
    "parse_version",
]
