"""HTTP hardening: security headers, request body limits, JSON depth and upload checks.

Two pure ASGI middlewares (no Starlette ``BaseHTTPMiddleware``, so streaming and
background tasks keep working):

* :class:`SecurityHeadersMiddleware` puts the Content Security Policy (exactly as
  DESIGN.md settles it) and the other security headers on every HTTP response, and HSTS
  on HTTPS requests.
* :class:`BodyLimitMiddleware` answers 413 to a body over the limit (by its
  ``Content-Length`` or by counting what streams in), and 422 to a JSON body nested
  deeper than allowed or holding an integer too long to convert, all in the API's one
  error shape.

:func:`check_upload` decides an uploaded file's type from its content (magic bytes and
text heuristics), never from its name alone.

.. versionadded:: 0.1
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.core.logging import get_logger
from paulyops.core.security.jsonlimits import oversized_integer
from paulyops.core.security.sanitize import safe_filename

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
# Default request body limit; routes that take uploads get their own via ``path_limits``.
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32

MEDIA_PDF = "application/pdf"
MEDIA_PNG = "image/png"
MEDIA_JPEG = "image/jpeg"
MEDIA_GIF = "image/gif"
MEDIA_ZIP = "application/zip"
MEDIA_CSV = "text/csv"
MEDIA_TEXT = "text/plain"
MEDIA_JSON = "application/json"
MEDIA_UNKNOWN = "application/octet-stream"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", MEDIA_PDF),
    (b"\x89PNG\r\n\x1a\n", MEDIA_PNG),
    (b"\xff\xd8\xff", MEDIA_JPEG),
    (b"GIF87a", MEDIA_GIF),
    (b"GIF89a", MEDIA_GIF),
    (b"PK\x03\x04", MEDIA_ZIP),
    (b"PK\x05\x06", MEDIA_ZIP),  # an empty archive
)
EXTENSION_TYPES: Mapping[str, str] = {
    ".pdf": MEDIA_PDF,
    ".png": MEDIA_PNG,
    ".jpg": MEDIA_JPEG,
    ".jpeg": MEDIA_JPEG,
    ".gif": MEDIA_GIF,
    ".zip": MEDIA_ZIP,
    ".csv": MEDIA_CSV,
    ".txt": MEDIA_TEXT,
    ".json": MEDIA_JSON,
}
_TEXT_TYPES = frozenset({MEDIA_CSV, MEDIA_TEXT, MEDIA_JSON})
# Bytes of a text file the heuristics look at: enough for a header and a few rows.
_SNIFF_BYTES = 64 * 1024
_CSV_DELIMITERS = ",;\t|"
# Deepest JSON nesting the sniffer parses (well inside the parser's recursion limit).
_SNIFF_JSON_DEPTH = 256
# Strings (with escapes) or a bracket: brackets inside strings do not count as nesting.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


# --- security headers ------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response (replacing any set by a route).

    Args:
        app: the ASGI app to wrap.
        hsts: send ``Strict-Transport-Security`` on HTTPS requests. The scheme is the
            one the server sees: behind a TLS-terminating proxy, run uvicorn with
            ``--proxy-headers`` and ``--forwarded-allow-ips`` so it reflects the client's.
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
            message_text = _too_deep_message(self.json_max_depth)
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


def _too_deep_message(max_depth: int) -> str:
    return f"body: JSON is nested deeper than the allowed {max_depth} levels"


def json_nesting_depth(raw: bytes) -> int:
    """Return the deepest nesting of arrays and objects in a JSON text, without parsing it.

    Parsing first would let a hostile body exhaust the parser's recursion; this only
    counts brackets outside strings.
    """
    if raw.count(b"[") + raw.count(b"{") == 0:
        return 0
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def json_depth_ok(value: Any, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether a parsed JSON value nests arrays and objects at most ``max_depth`` deep."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def check_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise when a raw JSON body nests deeper than ``max_depth``.

    Raises:
        SpecValidationError: on the field ``body``.
    """
    if json_nesting_depth(raw) > max_depth:
        message = _too_deep_message(max_depth)
        raise SpecValidationError(message, [FieldError("body", message)])


# --- uploads ---------------------------------------------------------------------------


def sniff_media_type(data: bytes) -> str:
    """Return the media type ``data`` holds, judged from its content only.

    Recognizes PDF, PNG, JPEG, GIF and ZIP by their magic bytes; UTF-8 text as JSON (an
    object or array that parses), CSV (the same delimiter count on every sampled line) or
    plain text; anything else is ``application/octet-stream``.
    """
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    text = _as_text(data)
    if text is None:
        return MEDIA_UNKNOWN
    if text.lstrip()[:1] in ("{", "[") and _parses_as_json(data):
        return MEDIA_JSON
    if _looks_like_csv(text):
        return MEDIA_CSV
    return MEDIA_TEXT


def _as_text(data: bytes) -> str | None:
    sample = data[:_SNIFF_BYTES]
    if sample.startswith(codecs.BOM_UTF8):
        sample = sample[len(codecs.BOM_UTF8) :]
    try:
        # A multi-byte character cut at the sample's end is not a reason to call it binary.
        text = codecs.getincrementaldecoder("utf-8")().decode(
            sample, final=len(data) <= len(sample)
        )
    except UnicodeDecodeError:
        return None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
    if "\x00" in text or controls > len(text) // 100:
        return None
    return text


def _parses_as_json(data: bytes) -> bool:
    # Bound the nesting first: the parser recurses, and a hostile file could exhaust it.
    if json_nesting_depth(data) > _SNIFF_JSON_DEPTH:
        return False
    try:
        json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return False
    return True


def _looks_like_csv(text: str) -> bool:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(lines) > 1 and len(text) >= _SNIFF_BYTES:
        lines = lines[:-1]  # the sample may cut the last line short
    if len(lines) < 2:
        return False
    for delimiter in _CSV_DELIMITERS:
        try:
            widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:
            continue
        if len(widths) == 1 and widths.pop() > 1:
            return True
    return False


def check_upload(
    data: bytes,
    filename: str,
    *,
    allowed: set[str] | frozenset[str],
    max_bytes: int,
    field: str = "file",
) -> str:
    """Check an uploaded file's size and type; return its media type.

    The type comes from the content (:func:`sniff_media_type`) and must agree with the
    file's extension: a ``.pdf`` must be a PDF, a ``.csv``/``.txt`` must be text, a
    ``.json`` must parse. Office documents (zip containers) are not told apart from zips.

    Args:
        data: the file's bytes.
        filename: the name the client sent (only its extension is used).
        allowed: the media types this upload accepts, e.g. ``{"application/pdf"}``.
        max_bytes: the largest accepted size.
        field: the form field, for the error.

    Raises:
        SpecValidationError: naming the file, when it is empty, too large, of an unknown
            or not allowed type, or when its content does not match its extension.
    """
    shown = safe_filename(filename)

    def fail(problem: str, *, allowed_types: list[str] | None = None) -> SpecValidationError:
        message = f"{field}: {shown!r} {problem}"
        return SpecValidationError(message, [FieldError(field, message, allowed=allowed_types)])

    if not data:
        raise fail("is empty")
    if len(data) > max_bytes:
        raise fail(f"is too large: {len(data)} bytes, the limit is {max_bytes} bytes")
    extension = PurePath(filename.replace("\\", "/")).suffix.lower()
    declared = EXTENSION_TYPES.get(extension)
    accepted = sorted(allowed)
    if declared is None:
        raise fail(
            f"has an unsupported extension {extension or '(none)'!r}; "
            f"expected one of {', '.join(sorted(EXTENSION_TYPES))}",
            allowed_types=accepted,
        )
    sniffed = sniff_media_type(data)
    compatible = sniffed == declared or (
        declared in {MEDIA_CSV, MEDIA_TEXT} and sniffed in _TEXT_TYPES
    )
    if not compatible:
        raise fail(f"is named {extension} but its content is {sniffed}")
    if declared not in allowed:
        raise fail(
            f"is {declared}, which this upload does not accept; expected one of "
            f"{', '.join(accepted)}",
            allowed_types=accepted,
        )
    return declared


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "EXTENSION_TYPES",
    "HSTS",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "SECURITY_HEADERS",
    "BodyLimitMiddleware",
    "SecurityHeadersMiddleware",
    "check_json_body",
    "check_upload",
    "install_security_headers",
    "json_depth_ok",
    "json_nesting_depth",
    "sniff_media_type",
]
