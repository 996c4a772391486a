"""The real application plus one slow test route, for graceful-shutdown tests.

Two ways to run it, both in a subprocess started by :mod:`tests.support.server`:

* ``python -m uvicorn tests.support.slow_app:create_app --factory`` builds the app the
  way ``paulyops serve --workers N`` does (:func:`paulyops.web.app.create_app_from_env`);
* ``python -m tests.support.slow_app serve --port N`` runs the real ``paulyops serve``
  command with the route added, so its uvicorn options and exit code are what is tested.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from fastapi import FastAPI, Query

from paulyops.core.logging import get_logger
from paulyops.web.deps import InstanceDep, Public

log = get_logger("paulyops.tests.slow_app")

SLOW_PATH = "/test/slow"


def add_slow_route(app: FastAPI) -> FastAPI:
    """Add ``GET /test/slow?seconds=N``: sleep, then query the database; return ``app``."""

    @app.get(SLOW_PATH, dependencies=[Public])
    def slow(instance: InstanceDep, seconds: float = Query(1.0, ge=0, le=30)) -> dict[str, Any]:
        """Sleep ``seconds``, then prove the database is still open by pinging it."""
        log.info("slow_request_started", seconds=seconds)
        time.sleep(seconds)
        instance.require_ready()
        elapsed_ms = instance.db.ping()
        log.info("slow_request_finished", seconds=seconds)
        return {"slept": seconds, "dbPingMs": round(elapsed_ms, 2)}

    return app


def create_app() -> FastAPI:
    """Uvicorn factory: the app from the environment plus the slow route."""
    from paulyops.web.app import create_app_from_env

    return add_slow_route(create_app_from_env())


def main(argv: list[str]) -> None:
    """Run the ``paulyops`` CLI with the slow route added to the app ``serve`` builds."""
    import paulyops.web.app as web_app
    from paulyops.cli.main import app as cli

    original = web_app.create_app

    def create_app_with_slow_route(settings: Any, **kwargs: Any) -> FastAPI:
        return add_slow_route(original(settings, **kwargs))

    # ``serve`` imports create_app when it runs, so it picks up this wrapper.
    web_app.create_app = create_app_with_slow_route  # type: ignore[assignment]  # test-only route
    cli(argv, prog_name="paulyops")


if __name__ == "__main__":
    main(sys.argv[1:])
