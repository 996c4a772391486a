"""Views of an organization's installed agents, and of the changes the lifecycle would make.

Everything here is a plain, camelCase pydantic view the CLI, the JSON API and the console
render as they are. A secret setting is never in a view: only whether it is ``set``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from paulyops.services.marketplace.listing import CapabilityView

CACHE_DIR = ("agents", "cache")
SecretState = Literal["set", "not set"]


def agent_cache(data_dir: Path) -> Path:
    """Return the per-machine unpack cache: ``<data dir>/agents/cache``."""
    return data_dir.joinpath(*CACHE_DIR)


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class PendingUpdateView(_View):
    """An update that waits for an admin to grant what its new version asks for."""

    version: str
    package_id: str
    capabilities: list[CapabilityView]
    new_capabilities: list[CapabilityView]


class InstallationView(_View):
    """One agent installed in the organization (never a secret value)."""

    id: str
    agent_id: str
    name: str
    version: str
    package_id: str | None
    source: str | None
    status: str
    enabled: bool
    granted_capabilities: list[CapabilityView]
    granted_by: str | None
    granted_at: datetime | None
    settings: dict[str, Any]
    secrets: dict[str, SecretState]
    previous_version: str | None
    probation_runs_left: int
    awaiting_grant: PendingUpdateView | None
    quarantined_reason: str | None
    quarantined_at: datetime | None
    failure_count: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class GrantPlan(_View):
    """The capabilities a change touches."""

    requested: list[CapabilityView] = Field(default_factory=list)
    granted_now: list[str] = Field(default_factory=list)
    new: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)
    grant_given: bool = False


class SettingsPlan(_View):
    """The settings fields a change touches (names only, never values)."""

    set: list[str] = Field(default_factory=list)
    secrets_set: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


class ChangePlan(_View):
    """What one change would touch: files, grants, settings and dependent agents."""

    action: str
    agent_id: str
    installation_id: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    package_id: str | None = None
    files_added: list[str] = Field(default_factory=list)
    files_removed: list[str] = Field(default_factory=list)
    grants: GrantPlan = Field(default_factory=GrantPlan)
    settings: SettingsPlan = Field(default_factory=SettingsPlan)
    dependents: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ChangeOutcome(_View):
    """The answer of every change: its plan, whether it was applied, and the result."""

    applied: bool
    message: str
    plan: ChangePlan
    noop: bool = False
    installation: InstallationView | None = None


class IntegrityView(_View):
    """What ``verify-installed`` found for one installation."""

    installation_id: str
    agent_id: str
    version: str
    status: str
    archive_ok: bool
    problems: list[str]
    quarantined: bool
    advice: str | None = None


class RepairView(_View):
    """What ``repair`` did for one installation."""

    installation_id: str
    agent_id: str
    version: str
    repaired: bool
    fixed: list[str]
    message: str


__all__ = [
    "CACHE_DIR",
    "ChangeOutcome",
    "ChangePlan",
    "GrantPlan",
    "InstallationView",
    "IntegrityView",
    "PendingUpdateView",
    "RepairView",
    "SecretState",
    "SettingsPlan",
    "agent_cache",
]
