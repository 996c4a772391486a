"""The first run: while no organization exists, a setup token unlocks the instance.

A setup token dies when the instance is set up, whichever front door did it: every
successful provision consumes all outstanding setup tokens (:func:`consume_setup_tokens`),
and :func:`check_setup_token` refuses any setup token once an organization exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Organization, SetupToken, utcnow
from paulyops.core.errors import PermissionDeniedError
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import tokens

ALREADY_SET_UP = (
    "PaulyOps is already set up, so setup tokens no longer work: sign in as a platform "
    "administrator to create another organization"
)


def has_organization(db: Database) -> bool:
    """Whether any organization exists on the instance."""
    with db.session() as session:
        return bool(session.scalar(select(func.count()).select_from(Organization)))


def check_setup_token(session: Session, secret: str) -> SetupToken:
    """Return the valid setup token matching ``secret`` on an instance not yet set up.

    Raises:
        PermissionDeniedError: an organization exists (no setup token works any more), or
            the token is unknown, used or expired.
    """
    if session.scalar(select(func.count()).select_from(Organization)):
        raise PermissionDeniedError(ALREADY_SET_UP)
    return tokens.find_setup_token(session, secret)


def consume_setup_tokens(session: Session, organization_id: str, data_dir: Path) -> list[str]:
    """Mark every outstanding setup token used by ``organization_id``; delete the file.

    Called by every successful provision, whichever front door it came through: a token
    printed by a running server must not set up a second organization after the
    instance was set up from the terminal. Returns the ids of the tokens it consumed.
    """
    now = utcnow()
    outstanding = list(
        session.scalars(
            select(SetupToken.id).where(
                SetupToken.consumed_at.is_(None), SetupToken.expires_at > now
            )
        )
    )
    if outstanding:
        session.execute(
            update(SetupToken)
            .where(SetupToken.id.in_(outstanding), SetupToken.consumed_at.is_(None))
            .values(consumed_at=now, consumed_by_org_id=organization_id)
            .execution_options(synchronize_session=False)
        )
    (data_dir / tokens.SETUP_TOKEN_FILE).unlink(missing_ok=True)
    return outstanding


def ensure_setup_token(
    db: Database, data_dir: Path, *, actor: Actor, force: bool = False
) -> str | None:
    """Make sure a valid setup token exists while the instance has no organization.

    Returns the token when a new one was issued (to print once), ``None`` when the instance
    is already set up or a valid token's file is still in the data directory.
    """
    if has_organization(db):
        _retire_setup_tokens(db, data_dir, actor=actor)
        return None
    path = data_dir / tokens.SETUP_TOKEN_FILE
    with db.write_session() as session:
        valid = session.scalar(
            select(func.count())
            .select_from(SetupToken)
            .where(SetupToken.consumed_at.is_(None), SetupToken.expires_at > utcnow())
        )
        if valid and path.is_file() and not force:
            return None
        secret = tokens.issue_setup_token(session, data_dir)
        actors.record(
            session, actor, "setup_token.issued", organization_id=None, target_type="setup_token"
        )
    return secret


def _retire_setup_tokens(db: Database, data_dir: Path, *, actor: Actor) -> None:
    """Consume tokens left over on an instance set up before provisions consumed them all."""
    with db.session() as session:
        org_id = session.scalar(select(Organization.id).order_by(Organization.created_at))
        left = session.scalar(
            select(func.count())
            .select_from(SetupToken)
            .where(SetupToken.consumed_at.is_(None), SetupToken.expires_at > utcnow())
        )
    if org_id is None or not left:
        (data_dir / tokens.SETUP_TOKEN_FILE).unlink(missing_ok=True)
        return
    with db.write_session() as session:
        for token_id in consume_setup_tokens(session, org_id, data_dir):
            actors.record(
                session,
                actor,
                "setup_token.consumed",
                organization_id=None,
                target_type="setup_token",
                target_id=token_id,
                changes={"reason": "already_set_up"},
            )


def announce_setup_token(secret: str, data_dir: Path, public_url: str) -> None:
    """Print the setup token to the console (never to the log: it unlocks the instance)."""
    path = data_dir / tokens.SETUP_TOKEN_FILE
    print(  # the operator must see it; logs would keep a copy
        "\n"
        "  PaulyOps is not set up yet.\n"
        f"  Open {public_url} and enter this setup token (valid 24 hours):\n\n"
        f"      {secret}\n\n"
        f"  It is also in {path}. Run `paulyops setup token` for a new one.\n",
        file=sys.stderr,
        flush=True,
    )


__all__ = [
    "ALREADY_SET_UP",
    "announce_setup_token",
    "check_setup_token",
    "consume_setup_tokens",
    "ensure_setup_token",
    "has_organization",
]
