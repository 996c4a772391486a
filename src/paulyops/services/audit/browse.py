"""Reading the audit log for people: filtered pages of one chain, with readable actors.

The console and the CLI show what these functions return (plain views), never rows of the
database: a view holds what a page shows and nothing a template could lazily load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Final, Protocol

from pydantic import BeforeValidator, Field
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN, ApiToken, AuditLog, User
from paulyops.services.commands import Command
from paulyops.services.onboarding.errors import custom_error, show
from paulyops.services.organizations import find_organization_id

PAGE_SIZE: Final = 50
# How readable names of actor kinds read where no person or token is named.
ACTOR_LABELS: Final = {
    "setup_token": "setup token",
    "cli": "command line",
    "system": "system",
    "anonymous": "anonymous",
}


def _clip(limit: int) -> BeforeValidator:
    """Trim a free-text filter and cut it to ``limit`` characters (a filter never fails)."""

    def clip(value: Any) -> Any:
        return value.strip()[:limit] if isinstance(value, str) else value

    return BeforeValidator(clip)


def _iso_date(value: Any) -> Any:
    if value is None or isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise custom_error(
            "date_format", f"expected a date like 2026-05-01, got {show(text[:20])}"
        ) from None


def _page_number(value: Any) -> Any:
    """Any page that is not a whole number >= 1 is the first (links are edited by hand)."""
    try:
        return max(1, int(str(value).strip()))
    except ValueError:
        return 1


OptionalDate = Annotated[date | None, BeforeValidator(_iso_date)]


class AuditFilter(Command):
    """Which rows of a chain to show: by actor, action prefix and day range (UTC)."""

    actor: Annotated[str, _clip(40)] = Field(
        "", title="Actor id", description="A user or token id, e.g. usr_01…"
    )
    action: Annotated[str, _clip(80)] = Field(
        "", title="Action", description="Or its start, e.g. member."
    )
    date_from: OptionalDate = Field(None, alias="from", title="From")
    date_to: OptionalDate = Field(None, alias="to", title="To")
    page: Annotated[int, BeforeValidator(_page_number)] = Field(1, ge=1)

    def query(self) -> dict[str, str]:
        """Return the filter as query parameters (empty ones left out), for page links."""
        values = {
            "actor": self.actor,
            "action": self.action,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {key: value for key, value in values.items() if value}


class ActorRow(Protocol):
    """What :func:`describe_actors` reads of a row: its id and who acted."""

    @property
    def id(self) -> str: ...
    @property
    def actor_type(self) -> str: ...
    @property
    def actor_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ActorLabel:
    """Who did something, for people: a label, and the raw actor for auditors (``title``)."""

    label: str
    title: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row as a page shows it."""

    id: str
    seq: int
    created_at: datetime
    actor_type: str
    actor_id: str | None
    actor: ActorLabel
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    client_address: str | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of a chain's rows, newest first, and where it sits."""

    entries: list[AuditEntry]
    total: int
    page: int
    pages: int
    chain_rows: int


def describe_actors(
    session: Session, organization_id: str, rows: Iterable[ActorRow]
) -> dict[str, ActorLabel]:
    """Return a readable actor per audit row id: a person's name, "API token <name>", ..."""
    rows = list(rows)
    user_ids = {r.actor_id for r in rows if r.actor_id and r.actor_type in ("user", "anonymous")}
    token_ids = {r.actor_id for r in rows if r.actor_id and r.actor_type == "token"}
    users: dict[str, str] = {}
    tokens_by_id: dict[str, str] = {}
    if user_ids:
        users = {
            user_id: name
            for user_id, name in session.execute(
                select(User.id, User.name).where(User.id.in_(user_ids))
            )
        }
    if token_ids:
        tokens_by_id = {
            token_id: name
            for token_id, name in session.execute(
                select(ApiToken.id, ApiToken.name).where(
                    ApiToken.id.in_(token_ids), ApiToken.organization_id == organization_id
                )
            )
        }
    out: dict[str, ActorLabel] = {}
    for row in rows:
        kind, ident = row.actor_type, row.actor_id
        title = f"{kind} {ident}" if ident else kind
        if kind == "user":
            label = users.get(ident or "") or "a removed user"
        elif kind == "token":
            name = tokens_by_id.get(ident or "")
            label = f"API token {name}" if name else "an API token"
        elif kind == "anonymous" and ident in users:
            label = f"{users[ident]} (signing in)"
        else:
            label = ACTOR_LABELS.get(kind, kind.replace("_", " "))
        out[row.id] = ActorLabel(label, title)
    return out


def _entries(session: Session, organization_id: str, rows: Sequence[AuditLog]) -> list[AuditEntry]:
    who = describe_actors(session, organization_id, rows)
    return [
        AuditEntry(
            id=row.id,
            seq=row.seq,
            created_at=row.created_at,
            actor_type=row.actor_type,
            actor_id=row.actor_id,
            actor=who[row.id],
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            outcome=row.outcome,
            client_address=row.client_address,
        )
        for row in rows
    ]


def _filtered(chain: str, wanted: AuditFilter) -> Select[AuditLog]:
    stmt = select(AuditLog).where(AuditLog.chain == chain)
    if wanted.actor:
        stmt = stmt.where(AuditLog.actor_id == wanted.actor)
    if wanted.action:
        stmt = stmt.where(AuditLog.action.startswith(wanted.action, autoescape=True))
    if wanted.date_from is not None:
        start = datetime.combine(wanted.date_from, time.min, tzinfo=UTC)
        stmt = stmt.where(AuditLog.created_at >= start)
    if wanted.date_to is not None:
        end = datetime.combine(wanted.date_to + timedelta(days=1), time.min, tzinfo=UTC)
        stmt = stmt.where(AuditLog.created_at < end)
    return stmt


def list_entries(
    session: Session, organization_id: str, wanted: AuditFilter, *, page_size: int = PAGE_SIZE
) -> AuditPage:
    """Return the page ``wanted.page`` (clamped to the last) of the organization's chain."""
    stmt = _filtered(organization_id, wanted)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    pages = max(1, math.ceil(total / page_size))
    number = min(wanted.page, pages)
    rows = session.scalars(
        stmt.order_by(AuditLog.seq.desc()).offset((number - 1) * page_size).limit(page_size)
    ).all()
    last = session.scalar(select(func.max(AuditLog.seq)).where(AuditLog.chain == organization_id))
    return AuditPage(
        entries=_entries(session, organization_id, rows),
        total=total,
        page=number,
        pages=pages,
        chain_rows=last or 0,
    )


def recent_entries(session: Session, organization_id: str, *, limit: int) -> list[AuditEntry]:
    """Return the organization's newest ``limit`` rows, newest first."""
    rows = session.scalars(
        select(AuditLog)
        .where(AuditLog.chain == organization_id)
        .order_by(AuditLog.seq.desc())
        .limit(limit)
    ).all()
    return _entries(session, organization_id, rows)


def has_rows(session: Session, chain: str) -> bool:
    """Return whether ``chain`` holds at least one row."""
    found = session.scalar(select(AuditLog.id).where(AuditLog.chain == chain).limit(1))
    return found is not None


def chain_of(db: Database, ref: str | None) -> str | None:
    """Return the chain a person names: an organization id, its slug, or ``instance``.

    A value that names no organization is used as given: the chain of a deleted
    organization outlives it. ``None`` (every chain) stays ``None``.
    """
    if ref is None or ref == INSTANCE_CHAIN:
        return ref
    with db.session() as session:
        found = find_organization_id(session, ref)
    return found or ref


__all__ = [
    "ACTOR_LABELS",
    "PAGE_SIZE",
    "ActorLabel",
    "ActorRow",
    "AuditEntry",
    "AuditFilter",
    "AuditPage",
    "chain_of",
    "describe_actors",
    "has_rows",
    "list_entries",
    "recent_entries",
]
