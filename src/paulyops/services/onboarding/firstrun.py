"""The first run: while no organization exists, a setup token unlocks the instance."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import func, select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Organization, SetupToken, utcnow
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.auth import tokens


def has_organization(db: Database) -> bool:
    """Whether any organization exists on the instance."""
    with db.session() as session:
        return bool(session.scalar(select(func.count()).select_from(Organization)))


def ensure_setup_token(
    db: Database, data_dir: Path, *, actor: Actor, force: bool = False
) -> str | None:
    """Make sure a valid setup token exists while the instance has no organization.

    Returns the token when a new one was issued (to print once), ``None`` when the instance
    is already set up or a valid token's file is still in the data directory.
    """
    if has_organization(db):
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


__all__ = ["announce_setup_token", "ensure_setup_token", "has_organization"]
