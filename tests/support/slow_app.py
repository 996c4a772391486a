"""The real application plus test-only routes: a slow one and one that crashes.

``/test/slow`` serves the graceful-shutdown tests; ``/test/crash`` raises an unexpected
error with secrets in its local variables and arguments, for the logging tests (no such
route ships in the product).

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

from fastapi import FastAPI, Query, Request

from paulyops.core.logging import get_logger
from paulyops.services.actor import SYSTEM
from paulyops.services.onboarding.provision import ProvisionContext
from paulyops.web.deps import InstanceDep, Public

log = get_logger("paulyops.tests.slow_app")

SLOW_PATH = "/test/slow"
CRASH_PATH = "/test/crash"
# Frames between the route and the raise: each holds the secrets as arguments, as a deep
# service call would (Rich used to print and highlight every one of them).
CRASH_DEPTH = 40


class SecretCrashError(RuntimeError):
    """The unexpected error ``/test/crash`` raises."""


def _descend(
    depth: int, cookie: str, csrf_token: str, bearer: str, totp_seed: str, ctx: Any
) -> None:
    if depth:
        _descend(depth - 1, cookie, csrf_token, bearer, totp_seed, ctx)
        return
    secrets_here = {"cookie": cookie, "csrf": csrf_token, "bearer": bearer, "seed": totp_seed}
    raise SecretCrashError(f"crashed with {len(secrets_here)} secrets in reach of {ctx!r}")


def add_slow_route(app: FastAPI) -> FastAPI:
    """Add ``GET /test/slow?seconds=N`` and ``GET /test/crash``; return ``app``."""

    @app.get(SLOW_PATH, dependencies=[Public])
    def slow(instance: InstanceDep, seconds: float = Query(1.0, ge=0, le=30)) -> dict[str, Any]:
        """Sleep ``seconds``, then prove the database is still open by pinging it."""
        log.info("slow_request_started", seconds=seconds)
        time.sleep(seconds)
        instance.require_ready()
        elapsed_ms = instance.db.ping()
        log.info("slow_request_finished", seconds=seconds)
        return {"slept": seconds, "dbPingMs": round(elapsed_ms, 2)}

    @app.get(CRASH_PATH, dependencies=[Public])
    async def crash(request: Request, instance: InstanceDep) -> dict[str, Any]:
        """Raise with a session cookie, CSRF token, bearer token, TOTP seed and JWT secret
        in local variables and arguments (on the event loop, like the 500 handler)."""
        cookie = request.cookies.get("paulyops_session", "")
        csrf_token = request.headers.get("x-csrf-token", "")
        bearer = request.headers.get("authorization", "")
        totp_seed = request.headers.get("x-test-totp-seed", "")
        assert instance.settings.jwt_secret is not None
        ctx = ProvisionContext(
            actor=SYSTEM,
            jwt_secret=instance.settings.jwt_secret.get_secret_value(),
            public_url="http://127.0.0.1",
            data_dir=instance.settings.data_dir,
            owner_password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$" + totp_seed,
        )
        settings = instance.settings
        _descend(CRASH_DEPTH, cookie, csrf_token, bearer, totp_seed, ctx)
        return {"unreachable": repr(settings)}

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
