"""Enter and leave a database session from async code without needless thread hops.

Interfaces (the web app's session dependency) open the request's transaction through
:func:`opened`; they never touch SQLAlchemy themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from anyio import CancelScope, CapacityLimiter, to_thread
from sqlalchemy import event
from sqlalchemy.orm import Session

_CONNECTED = "paulyops_connected"


@event.listens_for(Session, "after_begin")
def _note_connected(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[_CONNECTED] = True


def touched(session: Session) -> bool:
    """Whether leaving ``session`` may do I/O: it took a connection or has pending rows."""
    return bool(session.info.get(_CONNECTED) or session.new or session.dirty or session.deleted)


@asynccontextmanager
async def opened(
    manager: AbstractContextManager[Session], *, enter_on_loop: bool
) -> AsyncIterator[Session]:
    """Enter ``manager`` (on the loop or in a worker thread) and leave it in a worker thread.

    Like FastAPI's ``contextmanager_in_threadpool``, but a read session is entered on the
    event loop: it connects lazily at its first statement (in whichever worker thread runs
    it), so entering does no I/O and one thread-pool hop is saved. Leaving commits or
    rolls back, which may wait on the database: in a worker thread, shielded from
    cancellation so the connection goes back to the pool; a read session that never took
    a connection (a cached principal on SQLite) has nothing to send and leaves on the loop.

    Args:
        manager: a context manager yielding a session (``Database.session()`` or
            ``Database.write_session()``).
        enter_on_loop: enter on the event loop (only for managers whose entry does no I/O).
    """
    exit_limiter = CapacityLimiter(1)  # leaving never waits for a free worker
    # Entering off the loop shares the default thread pool (as run_in_threadpool does).
    session = manager.__enter__() if enter_on_loop else await to_thread.run_sync(manager.__enter__)
    try:
        yield session
    except BaseException as err:
        if enter_on_loop and not touched(session):
            if not manager.__exit__(type(err), err, err.__traceback__):
                raise
            return
        with CancelScope(shield=True):
            suppressed = bool(
                await to_thread.run_sync(
                    manager.__exit__, type(err), err, err.__traceback__, limiter=exit_limiter
                )
            )
        if not suppressed:
            raise
    else:
        if enter_on_loop and not touched(session):
            manager.__exit__(None, None, None)  # nothing to commit: no I/O
            return
        with CancelScope(shield=True):
            await to_thread.run_sync(manager.__exit__, None, None, None, limiter=exit_limiter)


__all__ = ["opened", "touched"]
