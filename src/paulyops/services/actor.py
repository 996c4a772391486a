"""Who performs a service call, for authorization and the audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from paulyops.core.db.models import INSTANCE_CHAIN, AuditLog
from paulyops.services import audit


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller of a service: a user, an API token, the CLI, or the system itself.

    Args:
        type: ``user``, ``token``, ``cli`` or ``system``.
        id: the user or token id (``None`` for the CLI and the system).
        address: the client address, when the call came over the network.
    """

    type: str
    id: str | None = None
    address: str | None = None


SYSTEM = Actor("system")
CLI = Actor("cli")


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    organization_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "success",
    changes: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Append the audit row of one state-changing call, in the caller's transaction.

    Calls with no organization (sign-in, user creation, setup token, key rotation) go to
    the instance-level chain.
    """
    return audit.record(
        session,
        chain=organization_id or INSTANCE_CHAIN,
        action=action,
        actor_type=actor.type,
        actor_id=actor.id,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        client_address=actor.address,
        changes=changes,
    )


__all__ = ["CLI", "SYSTEM", "Actor", "record"]
