"""PostgreSQL connections that never wait for ever for the server.

libpq has no read timeout: a server that accepted the connection and then stops
answering (frozen, partitioned, a stalled proxy) leaves a query, a COMMIT or the pool's
pre-ping waiting until the kernel gives up, which can take hours. Every operation of a
psycopg connection goes through :meth:`psycopg.Connection.wait`; :class:`BoundedConnection`
gives each one a deadline and closes the connection when it passes, so SQLAlchemy sees a
disconnect, discards the connection and the caller gets an ``OperationalError`` at once
(HTTP 503, see ``web/errors.py``).

The server-side ``statement_timeout`` (set at connect) ends slow statements cleanly
while the server is alive; the socket timeout here is the backstop for a server that is
not, so it should be a little longer than the statement timeout.
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import PQGen

RV = TypeVar("RV")

# psycopg's own poll interval while waiting (psycopg.connection._WAIT_INTERVAL).
_WAIT_INTERVAL = 0.1


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server ends after ``read_timeout`` s."""

    read_timeout: float | None = None

    def wait(
        self, gen: PQGen[RV], interval: float = _WAIT_INTERVAL, timeout: float | None = None
    ) -> RV:
        """Run ``gen`` against the server; give up (and close) after ``read_timeout`` s."""
        bounded = timeout is None and bool(self.read_timeout)
        try:
            return super().wait(
                gen, interval=interval, timeout=self.read_timeout if bounded else timeout
            )
        except pg_errors._WaitTimeout as err:  # psycopg's (private) name for a wait timeout
            if not bounded:
                raise
            # The reply may still arrive later: the connection is out of step for good.
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {self.read_timeout:g} s "
                "(PAULYOPS_DB_SOCKET_TIMEOUT); the connection was dropped"
            ) from err


def connect_options(statement_timeout: float) -> dict[str, Any]:
    """Return libpq connect arguments that set the server-side statement timeout."""
    if statement_timeout <= 0:
        return {}
    return {"options": f"-c statement_timeout={round(statement_timeout * 1000)}"}


def bounded_connect(read_timeout: float | None, cargs: Any, cparams: dict[str, Any]) -> Any:
    """Open a :class:`BoundedConnection` with SQLAlchemy's connect arguments."""
    conn = BoundedConnection.connect(*cargs, **cparams)
    conn.read_timeout = read_timeout or None
    return conn


__all__ = ["BoundedConnection", "bounded_connect", "connect_options"]
