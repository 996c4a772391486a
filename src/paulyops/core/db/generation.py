"""The auth generation: one counter that moves whenever a principal could change.

A request's principal (who is calling, in which organization, with which permissions) is
built from a handful of rows: the session or API token, the user, the membership, the
organization's roles, delegations and security settings. Caching it saves those queries
on every read, but a revoked session, a demoted member or a changed password must take
effect on the very next request in every process: the web servers, and CLI commands that
change the same rows from another process.

So every transaction whose flushes change one of those rows also adds one to
``auth_state.generation``, as its last statement before COMMIT. A cache keeps the
generation it read *before* building an entry and serves the entry only while the row
still holds that number: one primary-key read per request, correct across processes
without Redis, and the change is visible exactly when its transaction commits.

What does not count (see :data:`IGNORED_COLUMNS`): activity stamps (``last_seen_at``,
``last_used_at``, ``last_sign_in_at``), the replay guard of TOTP codes, the CSRF hash of a
session, and new credential rows (nobody can hold a cached principal for them yet).
Bulk ``UPDATE``/``DELETE`` statements bypass the ORM's flush: code that changes these
tables that way must call :func:`bump` itself.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, UOWTransaction

from paulyops.core.db.models import (
    ApiToken,
    AuthState,
    Delegation,
    Membership,
    Organization,
    Role,
    SecurityConfig,
    User,
    WebSession,
)

STATE_ID = 1
# Per model: the columns whose change never alters a principal. ``None``: inserts of the
# model do not count either (a new credential or user is not cached anywhere yet).
IGNORED_COLUMNS: dict[type, frozenset[str]] = {
    WebSession: frozenset(
        {"last_seen_at", "csrf_token_hash", "client_address", "user_agent", "updated_at"}
    ),
    ApiToken: frozenset({"last_used_at", "name", "updated_at"}),
    User: frozenset({"last_sign_in_at", "totp_last_step", "updated_at"}),
    Membership: frozenset({"updated_at"}),
    Role: frozenset({"description", "updated_at"}),
    Delegation: frozenset({"updated_at"}),
    SecurityConfig: frozenset({"updated_at"}),
    Organization: frozenset({"name", "updated_at", "spec_hash"}),
}
# Inserting these never changes an existing principal.
INSERT_IGNORED: frozenset[type] = frozenset({WebSession, ApiToken, User})

_COMMITTED_SQL = f"SELECT generation FROM {AuthState.__tablename__} WHERE id = ?"  # noqa: S608  # a constant table name
_CHANGED = "paulyops_auth_changed"
_BUMPED = "paulyops_auth_bumped"


def read(session: Session) -> int:
    """Return the current generation (0 before the first change)."""
    value = session.scalar(select(AuthState.generation).where(AuthState.id == STATE_ID))
    return int(value or 0)


def read_committed(engine: Engine) -> int | None:
    """Return the latest committed generation outside any transaction, or ``None``.

    SQLite only (``None`` elsewhere: read it with :func:`read` in the session). Our SQLite
    connections run in autocommit between explicit ``BEGIN``s, so this is one statement
    on a pooled connection: no ``BEGIN``/``COMMIT``, no ORM session, and it sees every
    change committed so far by any process. A cache *hit* only needs to know that the
    generation still equals its entry's; building an entry still reads :func:`read`
    inside the request's transaction, before the rows.
    """
    if engine.dialect.name != "sqlite":
        return None
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(_COMMITTED_SQL, (STATE_ID,))
            row = cursor.fetchone()
        finally:
            cursor.close()
    finally:
        raw.close()
    return int(row[0] or 0) if row else 0


def bump(connection: Connection) -> None:
    """Add one to the generation, creating its row on the first change."""
    result = connection.execute(
        update(AuthState)
        .where(AuthState.id == STATE_ID)
        .values(generation=AuthState.generation + 1)
    )
    if getattr(result, "rowcount", 0) == 1:
        return
    try:
        with connection.begin_nested():
            connection.execute(insert(AuthState).values(id=STATE_ID, generation=1))
    except IntegrityError:
        # Another transaction created the row meanwhile (PostgreSQL): count on it.
        connection.execute(
            update(AuthState)
            .where(AuthState.id == STATE_ID)
            .values(generation=AuthState.generation + 1)
        )


def _changes_principal(obj: Any, *, is_new: bool, is_deleted: bool) -> bool:
    ignored = IGNORED_COLUMNS.get(type(obj))
    if ignored is None:
        return False
    if is_deleted:
        return True
    if is_new:
        return type(obj) not in INSERT_IGNORED
    state = inspect(obj)
    for attr in state.mapper.column_attrs:
        if attr.key in ignored:
            continue
        if state.attrs[attr.key].history.has_changes():
            return True
    return False


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if session.info.get(_CHANGED):
        return
    changed = (
        any(_changes_principal(o, is_new=True, is_deleted=False) for o in session.new)
        or any(_changes_principal(o, is_new=False, is_deleted=True) for o in session.deleted)
        or any(
            _changes_principal(o, is_new=False, is_deleted=False)
            for o in session.dirty
            if session.is_modified(o)
        )
    )
    if changed:
        session.info[_CHANGED] = True


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # Bump as the transaction's last statement, not at the flush that saw the change: on
    # PostgreSQL the UPDATE holds the row's lock until COMMIT, and a transaction holding
    # it must never go on to wait for another lock (an audit chain's advisory lock, say),
    # or two of them could deadlock.
    session.flush()
    if session.info.get(_CHANGED) and not session.info.get(_BUMPED):
        session.info[_BUMPED] = True
        bump(session.connection())


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction: committed or rolled back
        session.info.pop(_CHANGED, None)
        session.info.pop(_BUMPED, None)


__all__ = ["IGNORED_COLUMNS", "STATE_ID", "bump", "read", "read_committed"]
