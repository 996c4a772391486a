"""An organization's security settings: session timeouts and the second-factor rule.

:func:`update_security` is the one use case that changes them; :func:`security_view`
returns what a page shows. The bounds of every setting live on :class:`UpdateSecurity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import Field, model_validator

from paulyops.core.db.models import SecurityConfig
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.commands import Command
from paulyops.services.onboarding.errors import custom_error

# Bounds for the organization's session timeouts: short enough to be a timeout, long
# enough that a working day (or a month of "remember me") fits.
IDLE_MINUTES: Final = (5, 24 * 60)
ABSOLUTE_HOURS: Final = (1, 30 * 24)


class UpdateSecurity(Command):
    """New session timeouts and whether admins must use a second factor."""

    idle_minutes: int = Field(
        ge=IDLE_MINUTES[0],
        le=IDLE_MINUTES[1],
        title="Sign out after inactivity (minutes)",
        description="A session unused this long ends.",
    )
    absolute_hours: int = Field(
        ge=ABSOLUTE_HOURS[0],
        le=ABSOLUTE_HOURS[1],
        title="Longest session (hours)",
        description="Every session ends this long after sign-in.",
    )
    require_admin_2fa: bool = Field(
        False,
        title="Require a second factor for admins",
        description="Counts everyone holding any permission beyond the User role's, by "
        "role or by delegation. Until they set one up they can only do that, and their "
        "API tokens are refused.",
    )

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> UpdateSecurity:
        if self.idle_minutes > self.absolute_hours * 60:
            raise custom_error(
                "idle_after_absolute",
                "expected at most the absolute timeout (in minutes)",
                subpath=("idleMinutes",),
            )
        return self


@dataclass(frozen=True, slots=True)
class SecurityView:
    """An organization's security settings as a page shows them."""

    id: str
    session_idle_minutes: int
    session_absolute_hours: int
    require_admin_2fa: bool
    encryption_level: str


def _view(config: SecurityConfig) -> SecurityView:
    return SecurityView(
        id=config.id,
        session_idle_minutes=config.session_idle_minutes,
        session_absolute_hours=config.session_absolute_hours,
        require_admin_2fa=config.require_admin_2fa,
        encryption_level=config.encryption_level,
    )


def security_view(scope: OrgScope) -> SecurityView | None:
    """Return the organization's security settings, or ``None`` when it has none."""
    config = scope.first(SecurityConfig)
    return _view(config) if config is not None else None


def update_security(scope: OrgScope, command: UpdateSecurity, *, actor: Actor) -> SecurityView:
    """Change the session timeouts and the second-factor rule for admins.

    Writes one ``security.updated`` audit row naming what changed (from, to).

    Raises:
        NotFoundError: the organization has no security settings.
    """
    config = scope.first(SecurityConfig)
    if config is None:
        raise NotFoundError("organization has no security settings")
    before = {
        "session_idle_minutes": config.session_idle_minutes,
        "session_absolute_hours": config.session_absolute_hours,
        "require_admin_2fa": config.require_admin_2fa,
    }
    config.session_idle_minutes = command.idle_minutes
    config.session_absolute_hours = command.absolute_hours
    config.require_admin_2fa = command.require_admin_2fa
    after = {
        "session_idle_minutes": command.idle_minutes,
        "session_absolute_hours": command.absolute_hours,
        "require_admin_2fa": command.require_admin_2fa,
    }
    actors.record(
        scope.session,
        actor,
        "security.updated",
        organization_id=scope.organization_id,
        target_type="security_config",
        target_id=config.id,
        changes={k: {"from": before[k], "to": v} for k, v in after.items() if before[k] != v},
    )
    return _view(config)


__all__ = [
    "ABSOLUTE_HOURS",
    "IDLE_MINUTES",
    "SecurityView",
    "UpdateSecurity",
    "security_view",
    "update_security",
]
