"""The closed vocabulary of agent capabilities (what a run may do beyond reading its inputs).

Capabilities are named apart from RBAC permissions: a permission says what a *person* may
do; a capability says what an *agent run* is given. Inputs are always given; nothing else
is, unless the manifest asks for it here and an admin grants it. The descriptions are the
plain words the console shows next to each request.
"""

from __future__ import annotations

import re
from typing import Final

SECRETS_PREFIX: Final = "secrets:"

CAPABILITIES: Final[dict[str, str]] = {
    "network": "Connect to the internet (never to this server or its databases).",
    "results:read": (
        "Read earlier results of this organization's agents that the package says it "
        "consumes, limited in number and age."
    ),
    "outputs:write": "Save new files back into the organization's storage.",
    "alerts:raise": "Raise alerts that people in the organization are told about.",
    "series:write": "Record measurements over time (series points) for charts and reports.",
}

SETTINGS_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def is_capability(name: str) -> bool:
    """Return whether ``name`` is in the vocabulary (``secrets:<field>`` with any field)."""
    if name.startswith(SECRETS_PREFIX):
        return SETTINGS_FIELD.fullmatch(name[len(SECRETS_PREFIX) :]) is not None
    return name in CAPABILITIES


def secret_field(name: str) -> str | None:
    """Return the settings field a ``secrets:<field>`` capability releases, else None."""
    if name.startswith(SECRETS_PREFIX):
        return name[len(SECRETS_PREFIX) :]
    return None


def describe(name: str) -> str:
    """Return the plain-words description of a capability.

    Raises:
        KeyError: ``name`` is not in the vocabulary.
    """
    field = secret_field(name)
    if field is not None and is_capability(name):
        return f"Receive the secret setting '{field}' (for example an API key) when it runs."
    return CAPABILITIES[name]


def vocabulary() -> list[str]:
    """Return the capability names for messages, with the ``secrets:`` form spelled out."""
    return [*CAPABILITIES, "secrets:<settings field>"]


__all__ = [
    "CAPABILITIES",
    "SECRETS_PREFIX",
    "describe",
    "is_capability",
    "secret_field",
    "vocabulary",
]
