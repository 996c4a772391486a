"""ASGI middleware: correlation ids and request logging."""

from __future__ import annotations

import re
import time
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paulyops.core.logging import correlation_scope, get_logger

log = get_logger("paulyops.http")

# An incoming X-Request-ID is reused only when it looks like an id, never as free text
# that could inject into logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
CORRELATION_SCOPE_KEY = "paulyops.correlation_id"


class RequestRecorder(Protocol):
    """Something that records each answered request (the metrics)."""

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Record one request with its status code and duration in seconds."""


class CorrelationIdMiddleware:
    """Bind a correlation id to each request, echo it, and log the request's outcome.

    Args:
        app: the wrapped application.
        recorder: counts each request for Prometheus (:class:`~paulyops.web.metrics.
            RequestMetrics`) with the status and duration measured here anyway.
    """

    def __init__(self, app: ASGIApp, recorder: RequestRecorder | None = None) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                incoming = text if _REQUEST_ID.match(text) else None
                break
        start = time.perf_counter()
        status = 500
        with correlation_scope(incoming) as cid:
            # The 500 handler runs outside this scope (in Starlette's outermost middleware):
            # it finds the id here, so a crash's traceback carries it too.
            scope[CORRELATION_SCOPE_KEY] = cid

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = list(message.get("headers", []))
                    headers.append((b"x-request-id", cid.encode()))
                    message["headers"] = headers
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if self.recorder is not None:
                    self.recorder.observe(scope, status, time.perf_counter() - start)
                path = scope.get("path", "")
                if path not in {"/api/livez"}:
                    log.info(
                        "request",
                        method=scope.get("method"),
                        path=path,
                        status=status,
                        duration_ms=round((time.perf_counter() - start) * 1000, 2),
                    )
