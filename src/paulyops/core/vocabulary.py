"""The closed vocabularies and defaults of an organization's setup answers, defined once.

Two readers share them: :class:`~paulyops.core.settings.Settings` checks the instance's
defaults for new organizations (``COMPLIANCE_LEVEL``, ``ENCRYPTION_LEVEL``,
``STORAGE_PROVIDERS``, ...) against them when it starts, and the SetupSpec
(:mod:`paulyops.services.onboarding.models`) types its answers with them. They live in
core because core may not import services (see ADR 0005 in ``docs/decisions/``); labels,
help texts and the catalog of agents stay in the onboarding service.

Defaults: each answer has one default, the one below. A settings variable left unset adds
nothing: a new organization then takes its industry template's value, else its compliance
preset's (``data/presets/*.yaml``), else this one. That is why ``AUDIT_RETENTION_DAYS``
unset means 365 days under the basic preset and 2555 (seven years, the brief's figure)
under soc2 and enterprise — the presets set it, not a second default here.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


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


# The preset that applies when neither the admin, a template nor the instance picks one.
DEFAULT_COMPLIANCE_LEVEL: Final = ComplianceLevel.BASIC
DEFAULT_PROVIDERS: Final = (ProviderType.LOCAL,)
DEFAULT_BACKUP_STRATEGY: Final = BackupStrategy.LOCAL
DEFAULT_RBAC_MODEL: Final = RbacModel.SIMPLE
DEFAULT_ENCRYPTION_LEVEL: Final = EncryptionLevel.STANDARD
# One year: what the basic preset keeps too; soc2 and enterprise presets set 2555.
DEFAULT_RETENTION_DAYS: Final = 365
DEFAULT_AUDIT_RETENTION_DAYS: Final = 365
RETENTION_MIN_DAYS: Final = 1
RETENTION_MAX_DAYS: Final = 36500  # a hundred years: past that a number is a typo
DEFAULT_AGENTS: Final = ("file-processor",)
DEFAULT_CONFIDENCE_THRESHOLD: Final = 0.9
# Short agent names of the bundled catalog (``file-processor`` -> ``paulyops.file-processor``);
# whether the catalog has one is checked by the SetupSpec, which reads the catalog.
AGENT_NAME_PATTERN: Final = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"

__all__ = [
    "AGENT_NAME_PATTERN",
    "DEFAULT_AGENTS",
    "DEFAULT_AUDIT_RETENTION_DAYS",
    "DEFAULT_BACKUP_STRATEGY",
    "DEFAULT_COMPLIANCE_LEVEL",
    "DEFAULT_CONFIDENCE_THRESHOLD",
    "DEFAULT_ENCRYPTION_LEVEL",
    "DEFAULT_PROVIDERS",
    "DEFAULT_RBAC_MODEL",
    "DEFAULT_RETENTION_DAYS",
    "RETENTION_MAX_DAYS",
    "RETENTION_MIN_DAYS",
    "BackupStrategy",
    "ComplianceLevel",
    "EncryptionLevel",
    "Industry",
    "OrganizationSize",
    "ProviderType",
    "RbacModel",
]
