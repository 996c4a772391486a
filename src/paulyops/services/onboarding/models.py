"""The SetupSpec's models: every answer that sets up an organization, by section.

Types and checks of single answers come from :mod:`.validators`, storage providers from
:mod:`paulyops.services.storage.providers`, closed vocabularies and defaults from
:mod:`paulyops.core.vocabulary` (the settings check the instance's defaults against the
same ones). Labels and help for forms are in :mod:`.presentation`; parsing raw answers
(templates and presets first) is :func:`.spec.parse_spec`.

.. versionadded:: 0.2.0
   Split out of ``spec.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from paulyops.core.vocabulary import (
    DEFAULT_AGENTS,
    DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_BACKUP_STRATEGY,
    DEFAULT_COMPLIANCE_LEVEL,
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_ENCRYPTION_LEVEL,
    DEFAULT_RBAC_MODEL,
    DEFAULT_RETENTION_DAYS,
    BackupStrategy,
    ComplianceLevel,
    EncryptionLevel,
    Industry,
    OrganizationSize,
    ProviderType,
    RbacModel,
)
from paulyops.services.onboarding.errors import custom_error
from paulyops.services.onboarding.templates import (
    MISSING,
    CompliancePreset,
    IndustryTemplate,
    load_catalog,
    preset_for,
    template_for,
)
from paulyops.services.onboarding.validators import (
    OWNER_NAME_MAX,
    SLUG_MAX,
    AgentName,
    Email,
    OptionalEmail,
    OrgName,
    RetentionDays,
    Timezone,
    WireModel,
    agents_schema,
    choice_of,
    plain_text,
)
from paulyops.services.storage.providers import (
    SECRET_FIELDS,
    ProviderEntry,
    StorageProvider,
    default_providers,
)

# --- organization ------------------------------------------------------------------------


class OrganizationSpec(WireModel):
    """Who the organization is: name, industry, compliance level and size."""

    name: OrgName = Field(
        title="Organization name",
        description="The organization's name as people know it (1-100 characters).",
        examples=["Acme Corp"],
    )
    industry: Annotated[Industry, choice_of(Industry)] = Field(
        title="Industry",
        description="Picks an industry template with suggested agents, folders and settings.",
    )
    compliance_level: Annotated[ComplianceLevel, choice_of(ComplianceLevel)] = Field(
        DEFAULT_COMPLIANCE_LEVEL,
        title="Compliance level",
        description="The compliance preset whose rules the security settings must meet; "
        "unset, the industry template suggests one.",
    )
    size: Annotated[OrganizationSize, choice_of(OrganizationSize)] = Field(
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


class StorageSpec(WireModel):
    """Where documents live, how they are backed up and how long they are kept."""

    providers: list[ProviderEntry] = Field(
        default_factory=default_providers,
        min_length=1,
        max_length=20,
        title="Storage providers",
        description="Where documents are stored: provider types "
        "(['local', 'google-drive']) or objects with settings; credentials may be "
        "added later.",
    )
    backup_strategy: Annotated[BackupStrategy, choice_of(BackupStrategy)] = Field(
        DEFAULT_BACKUP_STRATEGY,
        title="Backup strategy",
        description="Where backups of documents go.",
    )
    retention_days: RetentionDays = Field(
        DEFAULT_RETENTION_DAYS,
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


class SecuritySpec(WireModel):
    """Access control, audit trail and encryption; checked against the compliance preset."""

    rbac_model: Annotated[RbacModel, choice_of(RbacModel)] = Field(
        DEFAULT_RBAC_MODEL,
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
        DEFAULT_AUDIT_RETENTION_DAYS,
        title="Audit retention (days)",
        description="How many days audit log entries are kept (1-36500).",
    )
    encryption_level: Annotated[EncryptionLevel, choice_of(EncryptionLevel)] = Field(
        DEFAULT_ENCRYPTION_LEVEL,
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


class AgentsSpec(WireModel):
    """Which agents start enabled and how files are routed to them."""

    default_agents: list[AgentName] = Field(
        default_factory=lambda: list(DEFAULT_AGENTS),
        max_length=50,
        title="Default agents",
        description="Agents from the bundled catalog to install and enable (short names).",
        json_schema_extra=agents_schema,
    )
    auto_routing: bool = Field(
        True,
        title="Automatic routing",
        description="Send each new file to the best matching agent automatically.",
    )
    confidence_threshold: float = Field(
        DEFAULT_CONFIDENCE_THRESHOLD,
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


class OwnerSpec(WireModel):
    """The first owner of the organization, who gets a one-time password-set link."""

    email: Email = Field(
        title="Owner email",
        description="The owner's sign-in email address.",
        examples=["owner@acme.example"],
    )
    name: Annotated[
        str, plain_text(max_length=OWNER_NAME_MAX), Field(min_length=1, max_length=200)
    ] = Field(title="Owner name", description="The owner's full name.")


# --- the spec ----------------------------------------------------------------------------


class SetupSpec(WireModel):
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


SECTION_MODELS: Final[Mapping[str, type[WireModel]]] = {
    "organization": OrganizationSpec,
    "storage": StorageSpec,
    "security": SecuritySpec,
    "agents": AgentsSpec,
    "owner": OwnerSpec,
}
InstanceDefaults = Mapping[str, Mapping[str, object]]


def _lookup(wire: Mapping[str, object], path: str) -> object:
    section_name, _, key = path.partition(".")
    section = wire.get(section_name)
    if isinstance(section, Mapping) and key in section:
        return section[key]
    return MISSING


__all__ = [
    "PRESET_RULE",
    "SECTION_MODELS",
    "STEPS",
    "AgentsSpec",
    "BackupStrategy",
    "ComplianceLevel",
    "EncryptionLevel",
    "Industry",
    "InstanceDefaults",
    "OrganizationSize",
    "OrganizationSpec",
    "OwnerSpec",
    "ProviderType",
    "RbacModel",
    "SecuritySpec",
    "SetupSpec",
    "Step",
    "StorageSpec",
    "slugify",
    "step_of",
]
