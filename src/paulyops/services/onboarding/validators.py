"""Field types and checks shared by every wire model of onboarding and storage.

Each text answer is checked here once: unsafe characters (unpaired surrogates, bidi
controls), control characters, lengths, patterns, email addresses (internal mail domains
included), time zones, URLs, folder paths, secrets and catalog agent names. The models in
:mod:`.models` and :mod:`paulyops.services.storage.providers` compose these types.

.. versionadded:: 0.2.0
   Split out of ``spec.py``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Final
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
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from paulyops.core.vocabulary import RETENTION_MAX_DAYS, RETENTION_MIN_DAYS
from paulyops.services.onboarding.errors import choice_error, custom_error, show, suggest
from paulyops.services.onboarding.templates import load_catalog, normalize_choice

ORG_NAME_MAX = 100
SLUG_MAX = 63
OWNER_NAME_MAX = 200
PROVIDER_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,79}$"
TOKEN_MAX = 256
SECRET_MAX = 4096
PATH_MAX = 4096
# Bidirectional overrides and isolates reorder how text is displayed ("Trojan Source",
# CVE-2021-42574): U+202E turns "\u202eemcA" into what reads as "Acme". No name, folder or
# id needs them, and they would mislead whoever reads the console, the audit log or a link.
BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def choice_of(enum: type[StrEnum]) -> BeforeValidator:
    """Accept a member of ``enum`` case- and space-insensitively, suggesting the closest."""
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


def refuse_unsafe_text(data: object) -> object:
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


def blank_to_none(value: object) -> object:
    """Treat an empty or blank text answer as no answer."""
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


def plain_text(*, max_length: int) -> BeforeValidator:
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


def pattern_text(pattern: str, expected: str) -> BeforeValidator:
    """Strip text and require it to match ``pattern`` (blank counts as unset)."""

    def check(value: object) -> object:
        value = blank_to_none(value)
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not re.fullmatch(pattern, text) or ".." in text:
            raise custom_error("pattern", f"expected {expected}, got {show(value)}")
        return text

    return BeforeValidator(check)


def _check_token(value: object) -> object:
    value = blank_to_none(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) > TOKEN_MAX or any(char.isspace() for char in text):
        raise custom_error(
            "token", f"expected an id of at most {TOKEN_MAX} characters without spaces"
        )
    return text


def _check_secret(value: object) -> object:
    value = blank_to_none(value)
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
    value = blank_to_none(value)
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


def check_endpoint(value: object) -> object:
    """Accept an http(s) URL without credentials, query or fragment (or nothing)."""
    value = blank_to_none(value)
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


def check_local_path(value: object) -> object:
    """Accept a folder path without control characters or ``..`` (or nothing)."""
    value = blank_to_none(value)
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


def agents_schema(schema: JsonDict) -> None:
    """Name the catalog's agents as the JSON Schema enum of ``defaultAgents``."""
    schema["items"] = {"type": "string", "enum": list(load_catalog().names)}


OrgName = Annotated[
    str, plain_text(max_length=ORG_NAME_MAX), Field(min_length=1, max_length=ORG_NAME_MAX)
]
OptionalEmail = Annotated[Email | None, BeforeValidator(blank_to_none)]
Timezone = Annotated[str | None, BeforeValidator(_check_timezone)]
ProviderName = Annotated[
    str,
    pattern_text(PROVIDER_NAME_PATTERN, "a name of lowercase letters, digits and '-' (max 80)"),
]
Token = Annotated[str | None, BeforeValidator(_check_token)]
Secret = Annotated[
    SecretStr | None,
    BeforeValidator(_check_secret),
    PlainSerializer(_dump_secret, return_type=str | None, when_used="json"),
]
AgentName = Annotated[str, BeforeValidator(_check_agent)]
RetentionDays = Annotated[int, Field(ge=RETENTION_MIN_DAYS, le=RETENTION_MAX_DAYS)]


class WireModel(BaseModel):
    """Base of every setup answer model: camelCase on the wire, frozen, unknown keys refused."""

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
        return refuse_unsafe_text(data)


__all__ = [
    "BIDI_CONTROLS",
    "INTERNAL_EMAIL_SUFFIXES",
    "ORG_NAME_MAX",
    "OWNER_NAME_MAX",
    "PATH_MAX",
    "PROVIDER_NAME_PATTERN",
    "SECRET_MAX",
    "SLUG_MAX",
    "TOKEN_MAX",
    "AgentName",
    "Email",
    "OptionalEmail",
    "OrgName",
    "ProviderName",
    "RetentionDays",
    "Secret",
    "Timezone",
    "Token",
    "WireModel",
    "agents_schema",
    "blank_to_none",
    "check_endpoint",
    "check_local_path",
    "choice_of",
    "pattern_text",
    "plain_text",
    "refuse_unsafe_text",
    "unsafe_text_problem",
]
