"""Every table of PaulyOps. Import models from here."""

from paulyops.core.db.models.agents import (
    AgentEvent,
    AgentInstallation,
    AgentPackage,
    Job,
    JobInput,
    JobLog,
    SchedulerLease,
)
from paulyops.core.db.models.audit import INSTANCE_CHAIN, AuditCheckpoint, AuditLog
from paulyops.core.db.models.auth import (
    ApiToken,
    AuthState,
    Invitation,
    PasswordLink,
    SetupToken,
    WebSession,
    WizardDraft,
)
from paulyops.core.db.models.base import Base, new_id, utcnow
from paulyops.core.db.models.catalogs import CatalogMetadata, CatalogSource
from paulyops.core.db.models.documents import Document, DocumentEvent, IngestCursor, RoutingRule
from paulyops.core.db.models.marketplace import (
    MarketplacePolicy,
    PackageRevocation,
    TrustedPublisherKey,
)
from paulyops.core.db.models.org import (
    AgentConfig,
    Delegation,
    Membership,
    Organization,
    OrgScoped,
    Role,
    SecurityConfig,
    StorageConfig,
    User,
)
from paulyops.core.db.models.processes import LiveProcess

__all__ = [
    "INSTANCE_CHAIN",
    "AgentConfig",
    "AgentEvent",
    "AgentInstallation",
    "AgentPackage",
    "ApiToken",
    "AuditCheckpoint",
    "AuditLog",
    "AuthState",
    "Base",
    "CatalogMetadata",
    "CatalogSource",
    "Delegation",
    "Document",
    "DocumentEvent",
    "IngestCursor",
    "Invitation",
    "Job",
    "JobInput",
    "JobLog",
    "LiveProcess",
    "MarketplacePolicy",
    "Membership",
    "OrgScoped",
    "Organization",
    "PackageRevocation",
    "PasswordLink",
    "Role",
    "RoutingRule",
    "SchedulerLease",
    "SecurityConfig",
    "SetupToken",
    "StorageConfig",
    "TrustedPublisherKey",
    "User",
    "WebSession",
    "WizardDraft",
    "new_id",
    "utcnow",
]
