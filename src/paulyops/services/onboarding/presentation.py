"""How the setup answers are presented: choice labels, field titles and help, step titles.

Every front door shows the same words: the terminal wizard, the web wizard (through the
form plan of :mod:`.form`) and ``GET /api/onboarding/schema``. Titles and descriptions of
single answers are declared on the models (:mod:`.models`); this module adds what the
models cannot carry: per-choice labels, the wizard's step titles and leads, and the
question the terminal asks for a yes/no answer.

.. versionadded:: 0.2.0
   Split out of ``spec.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic import TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from paulyops.core.vocabulary import (
    BackupStrategy,
    ComplianceLevel,
    EncryptionLevel,
    Industry,
    OrganizationSize,
    ProviderType,
    RbacModel,
)
from paulyops.services.onboarding.models import SECTION_MODELS, Step
from paulyops.services.onboarding.templates import load_catalog, load_presets, load_templates

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
# What the wizards say of a catalog agent whose package does not exist yet.
UNAVAILABLE_NOTE: Final = "Not available yet: its package does not exist, so it is recorded only."


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
        return [
            Choice(
                a.name,
                a.title if a.available else f"{a.title} (not available yet)",
                a.description if a.available else f"{a.description} {UNAVAILABLE_NOTE}",
            )
            for a in load_catalog().agents
        ]
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


def _wire_default(info: FieldInfo, default: object) -> object:
    annotation: Any = info.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    return adapter.dump_python(default, mode="json", by_alias=True)


@dataclass(frozen=True, slots=True)
class StepText:
    """The title and lead sentence of one wizard step."""

    title: str
    lead: str


# The four answer steps, in order, as both wizards title them.
STEP_TEXTS: Final[Mapping[Step, StepText]] = {
    "organization": StepText("Organization", "Tell us about your business."),
    "storage": StepText("Storage", "Where your files live, and how long they are kept."),
    "security": StepText("Security & Compliance", "Who can do what, and what gets recorded."),
    "agents": StepText("Agents", "Automations that pick up and process your files."),
}
# What the terminal asks for a yes/no answer (a form shows the field's title instead).
QUESTIONS: Final[Mapping[str, str]] = {
    "security.auditLogging": "Audit logging (off only lowers detail; security events are "
    "always logged)",
    "security.requireAdmin2fa": "Require two-factor sign-in (TOTP) for owners and admins?",
    "agents.autoRouting": "Route each new file to the best matching agent automatically?",
    "agents.monitoringEnabled": "Monitor agent runs and alert admins when an agent keeps failing?",
}
# The hint a terminal prints above a list of choices, where the field's description is
# written for the API.
HINTS: Final[Mapping[str, str]] = {
    "storage.providers": "Where documents are stored. Credentials can be added later.",
    "agents.defaultAgents": "Agents to enable for this organization (more can be installed later).",
}


__all__ = [
    "AGENTS_FIELD",
    "CHOICE_FIELDS",
    "CHOICE_LABELS",
    "HINTS",
    "QUESTIONS",
    "STEP_TEXTS",
    "Choice",
    "FieldHelp",
    "StepText",
    "all_choices",
    "choices",
    "field_help",
    "spec_fields",
]
