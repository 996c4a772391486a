"""HTTP hardening: security headers and request body limits, as ASGI middlewares.

Two pure ASGI middlewares (no Starlette ``BaseHTTPMiddleware``, so streaming and
background tasks keep working):

* :class:`SecurityHeadersMiddleware` puts the Content Security Policy (exactly as
  DESIGN.md settles it) and the other security headers on every HTTP response, and HSTS
  on HTTPS requests.
* :class:`BodyLimitMiddleware` answers 413 to a body over the limit (by its
  ``Content-Length`` or by counting what streams in), and 422 to a JSON body nested
  deeper than allowed or holding an integer too long to convert, all in the API's one
  error shape.

The checks on the bytes themselves live in the core, where services use them too:
:mod:`paulyops.core.security.jsonlimits` (size, nesting, integers) and
:mod:`paulyops.core.security.uploads` (file types).

.. versionadded:: 0.1
   as ``paulyops.core.security.limits_http``; moved here in 0.2.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paulyops.core.logging import get_logger
from paulyops.core.security.jsonlimits import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    json_nesting_depth,
    oversized_integer,
    too_deep_message,
)

log = get_logger("paulyops.http")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Two years, the preload list's minimum; sent only over HTTPS (browsers ignore it on HTTP,
# and on a plain-HTTP development instance it would be wrong anyway).
HSTS = "max-age=63072000; includeSubDomains"
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "DENY"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


# --- security headers ------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response (replacing any set by a route).

    Args:
        app: the ASGI app to wrap.
        hsts: send ``Strict-Transport-Security`` on HTTPS requests. The scheme is the
            one the server sees: behind a TLS-terminating proxy,
            :mod:`paulyops.web.forwarded` sets the client's (``PAULYOPS_TRUSTED_PROXIES``).
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = True) -> None:
        self.app = app
        self.hsts = hsts
        self._encoded = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in SECURITY_HEADERS
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self._encoded)
        if self.hsts and scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", HSTS.encode("latin-1")))
        names = {name for name, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = [*kept, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: Starlette, *, hsts: bool = True) -> None:
    """Wrap ``app``'s whole middleware stack in :class:`SecurityHeadersMiddleware`.

    ``app.add_middleware`` places a middleware *inside* Starlette's error middleware, so
    the 500 page of an unhandled exception would go out without the headers. Call this
    once, before the app serves its first request.
    """
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeadersMiddleware(build(), hsts=hsts)

    # Starlette builds the stack lazily through this method; wrapping it is the one way to
    # sit outside ServerErrorMiddleware without replacing the app object callers hold.
    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]


# --- body size and JSON depth ------------------------------------------------------------


class _BodyTooLargeError(Exception):
    """Raised from ``receive`` once a streamed body passes the limit."""


@functools.lru_cache(maxsize=32)
def _too_large_body(limit: int) -> bytes:
    # One body per limit, built once: not serialized again on every request.
    return _error_body(f"request body too large: the limit is {limit} bytes")


def _error_body(message: str, errors: list[dict[str, Any]] | None = None) -> bytes:
    shape = {"success": False, "message": message, "errors": errors or []}
    return json.dumps(shape, separators=(",", ":")).encode()


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body was never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class BodyLimitMiddleware:
    """Refuse request bodies over a size limit (413) and JSON nested too deep (422).

    Args:
        app: the ASGI app to wrap.
        max_bytes: the default limit in bytes.
        path_limits: other limits by path prefix (the longest matching prefix wins),
            e.g. ``{"/api/uploads": 25 * 1024 * 1024}``.
        json_max_depth: deepest nesting of arrays and objects allowed in a JSON body;
            ``None`` turns the check off.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = MAX_BODY_BYTES,
        path_limits: Mapping[str, int] | None = None,
        json_max_depth: int | None = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = sorted((path_limits or {}).items(), key=lambda kv: -len(kv[0]))
        self.json_max_depth = json_max_depth

    def limit_for(self, path: str) -> int:
        """Return the body limit that applies to ``path``."""
        for prefix, limit in self.path_limits:
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        too_large = _too_large_body(limit)
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            await _send_json(send, 413, too_large)
            return
        if self.json_max_depth is not None and _is_json(_header(scope, b"content-type")):
            await self._call_json(scope, receive, send, limit, too_large)
            return
        await self._call_streaming(scope, receive, send, limit, too_large)

    async def _call_json(
        self, scope: Scope, receive: Receive, send: Send, limit: int, too_large: bytes
    ) -> None:
        # JSON bodies are small and read whole by the route anyway: buffer, check, replay.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        depth = json_nesting_depth(body)
        if self.json_max_depth is not None and depth > self.json_max_depth:
            message_text = too_deep_message(self.json_max_depth)
            error = {"field": "body", "message": message_text}
            await _send_json(send, 422, _error_body(message_text, [error]))
            return
        too_long = oversized_integer(body)  # would fail the route's parser with a 400
        if too_long is not None:
            message_text = f"{too_long.field}: {too_long.message}"
            await _send_json(send, 422, _error_body(message_text, [too_long.as_dict()]))
            return
        replayed: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([replayed], receive), send)

    async def _call_streaming(
        self, scope: Scope, receive: Receive, send: Send, limit: int, too_large: bytes
    ) -> None:
        received = 0
        exceeded = False
        started = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the app's own answer to the failed read is dropped
            if exceeded and not started and message["type"] == "http.response.start":
                # The app caught the read error (FastAPI turns it into a 400): say why.
                replaced = True
                await _send_json(send, 413, too_large)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLargeError:
            if not started and not replaced:
                await _send_json(send, 413, too_large)
            else:
                log.warning("body_limit_after_response_start", path=scope.get("path"))


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying_receive() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying_receive


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "HSTS",
    "SECURITY_HEADERS",
    "BodyLimitMiddleware",
    "SecurityHeadersMiddleware",
    "install_security_headers",
]
