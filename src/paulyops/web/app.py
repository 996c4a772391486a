"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from paulyops import __version__
from paulyops.core.instance import Instance
from paulyops.core.logfiles import server_log_file
from paulyops.core.logging import configure_logging, get_logger
from paulyops.core.settings import Settings, ensure_secrets, load_settings
from paulyops.services.actor import SYSTEM
from paulyops.services.audit_anchor import start_anchor
from paulyops.services.onboarding.firstrun import (
    announce_setup_token,
    ensure_setup_token,
    has_organization,
)
from paulyops.web.api import admin as admin_api
from paulyops.web.api import agents as agents_api
from paulyops.web.api import auth as auth_api
from paulyops.web.api import health
from paulyops.web.api import invitations as invitations_api
from paulyops.web.api import marketplace as marketplace_api
from paulyops.web.api import metrics as metrics_api
from paulyops.web.api import onboarding as onboarding_api
from paulyops.web.api import ratelimits as ratelimits_api
from paulyops.web.errors import ErrorOut, install_error_handlers
from paulyops.web.forwarded import install_forwarded_headers
from paulyops.web.limits import BodyLimitMiddleware, install_security_headers
from paulyops.web.metrics import RequestMetrics
from paulyops.web.middleware import CorrelationIdMiddleware
from paulyops.web.pages import console as console_pages
from paulyops.web.pages import setup as setup_pages
from paulyops.web.pages.render import STATIC_DIR

log = get_logger("paulyops.web")

# Every JSON error uses one shape; declaring it keeps the OpenAPI document honest.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": description}
    for code, description in (
        (400, "malformed request"),
        (401, "not signed in, or a bad token"),
        (403, "not allowed, or the CSRF token is missing"),
        (404, "not found (or not visible to you)"),
        (409, "clashes with existing state"),
        (413, "request body too large"),
        (422, "invalid input; errors name each field"),
        (429, "rate limited; see Retry-After"),
        (503, "a required service is unavailable"),
    )
}


def create_app(settings: Settings, *, instance: Instance | None = None) -> FastAPI:
    """Build the web application for ``settings``.

    Args:
        settings: the instance settings (secrets already ensured).
        instance: an already started instance (tests); otherwise the lifespan creates,
            starts and closes one.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = instance is None
        inst = instance or Instance(settings)
        app.state.instance = inst
        if own:
            inst.on_ready.append(_first_run)
            inst.on_ready.append(_anchor_audit)
            inst.start(background=True)
        log.info("server_started", version=__version__, env=settings.env.value)
        try:
            yield
        finally:
            # uvicorn calls this after in-flight requests finished (graceful shutdown).
            if own:
                inst.close()
            log.info("server_stopped")

    docs = not settings.is_production
    app = FastAPI(
        responses=ERROR_RESPONSES,
        title="PaulyOps",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json" if docs else None,
    )
    if instance is not None:
        app.state.instance = instance
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(health.router)
    app.include_router(auth_api.router)
    app.include_router(admin_api.router)
    app.include_router(invitations_api.router)
    app.include_router(onboarding_api.router)
    app.include_router(ratelimits_api.router)
    app.include_router(marketplace_api.router)
    app.include_router(agents_api.router)
    app.include_router(metrics_api.router)
    app.include_router(setup_pages.router)
    app.include_router(console_pages.router)
    # Outermost first: correlation id (and request metrics), then body limits; security
    # headers wrap everything (also the 500 page) through install_security_headers, and
    # the forwarded headers (client address and scheme, from trusted proxies only) wrap
    # those.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits=marketplace_api.BODY_LIMITS,
    )
    # It also counts each request for /metrics, with the status and time it measures.
    app.add_middleware(CorrelationIdMiddleware, recorder=RequestMetrics())
    install_security_headers(app)
    install_forwarded_headers(app, trusted=settings.trusted_proxies)
    return app


def _first_run(instance: Instance) -> None:
    """While no organization exists, make sure a setup token is there, and print it."""
    data_dir = instance.settings.data_dir
    secret = ensure_setup_token(instance.db, data_dir, actor=SYSTEM)
    if secret is not None:
        announce_setup_token(secret, data_dir, instance.settings.effective_public_url)
    elif not has_organization(instance.db):
        log.info("setup_pending", token_file=str(data_dir / "setup-token"))


def _anchor_audit(instance: Instance) -> None:
    """Sign new audit chain heads on an interval and at shutdown (see audit_anchor)."""
    anchor = start_anchor(instance.db, instance.settings)
    if anchor is not None:
        instance.on_close.append(lambda _instance: anchor.stop())


def create_app_from_env() -> FastAPI:
    """Uvicorn factory: read settings from the environment (used with ``--workers``)."""
    settings = load_settings()
    settings, _generated = ensure_secrets(settings)
    configure_logging(
        level=settings.log_level,
        json_lines=settings.json_logs,
        background=True,
        log_file=server_log_file(settings),
        debug=settings.debug,
    )
    return create_app(settings)


__all__ = ["create_app", "create_app_from_env"]
