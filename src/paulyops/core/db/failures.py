"""Tell a database that is unavailable right now from a bug, and say why in plain words.

A refused or dropped connection, a stalled server, an exhausted pool, a locked SQLite
file or a full disk are *unavailability*: the request may work in a moment, so the web
layer answers 503 with ``Retry-After`` instead of a 500, and start-up messages name the
cause ("the disk is full") instead of an exception class.
"""

from __future__ import annotations

import errno

from sqlalchemy import exc

# SQLSTATE class 53 is "insufficient resources"; 53100 is disk_full, 08 connection errors.
_DISK_FULL_STATES = frozenset({"53100"})
_DISK_FULL_WORDS = ("database or disk is full", "no space left on device", "disk full")
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    exc.OperationalError,  # refused, reset, timed out, locked, disk full (DB-API class)
    exc.InterfaceError,  # the connection was closed under us
    exc.TimeoutError,  # no free connection in the pool within PAULYOPS_DB_POOL_TIMEOUT
    exc.DisconnectionError,
)


def is_unavailable(err: BaseException) -> bool:
    """Whether ``err`` means the database is unavailable (not a bug in the request)."""
    return isinstance(err, UNAVAILABLE_ERRORS)


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what it wraps) says the disk is full."""
    seen: set[int] = set()
    pending: list[BaseException] = [err]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if getattr(current, "sqlstate", None) in _DISK_FULL_STATES:
            return True
        if any(word in str(current).lower() for word in _DISK_FULL_WORDS):
            return True
        # The driver's error (SQLAlchemy's .orig) and whatever it was raised from.
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return False


def describe_db_error(err: BaseException) -> str:
    """Return a short message for users and operators; never the SQL or its parameters."""
    if is_disk_full(err):
        return "the disk holding the database is full: free some space, then try again"
    if isinstance(err, exc.TimeoutError):
        return "every database connection is busy right now; try again shortly"
    text = str(getattr(err, "orig", err)).lower()
    if "database is locked" in text:
        return "the database is busy with another write; try again shortly"
    if isinstance(err, exc.InterfaceError | exc.OperationalError | exc.DisconnectionError):
        return "the database is unavailable right now; try again shortly"
    return f"the database failed: {type(err).__name__}"


__all__ = ["UNAVAILABLE_ERRORS", "describe_db_error", "is_disk_full", "is_unavailable"]
