"""Structured logging: JSON lines in production, readable console text in development.

Every line carries the request's correlation id (bound in a context variable by the web
middleware and carried into background work with :func:`carry_context`), and passes
through :func:`redact` so that no secret reaches a log sink, whatever a caller passes.

Typed helpers name the kinds of event an operator filters on: :func:`security_event`
(which also fires the alert hooks), :func:`audit_event` and :func:`business_metric`;
:func:`timed` measures critical operations.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, Literal, ParamSpec, TypeVar

import structlog
from structlog.typing import EventDict, WrappedLogger

REDACTED = "[REDACTED]"

# Keys whose values are secrets whatever they hold. Matched case-insensitively against
# the whole key and against its parts split on "_", "-" and ".".
SECRET_KEY_PARTS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "privatekey",
        "session",
        "otp",
        "totp",
    }
)
SECRET_KEYS = frozenset(
    {
        "api_key",
        "access_key",
        "secret_key",
        "private_key",
        "encryption_key",
        "set-cookie",
        "x-api-key",
        "client_secret",
        "aws_secret_access_key",
        "recovery_codes",
        "dsn",
        "secret_access_key",
        "password_hash",
        "access_token",
        "refresh_token",
        "csrf_token",
    }
)
# Keys that contain a secret-looking word but carry no secret (ids and counts).
SAFE_KEYS = frozenset(
    {"session_id_hash", "token_id", "token_name", "tokens", "session_count", "csrf_failed"}
)

# Values that look like secrets wherever they appear, even inside a message string.
SECRET_VALUE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}"),  # Stripe keys
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),  # JWT
    re.compile(r"\bpo(?:t|s)_[A-Za-z0-9_-]{16,}"),  # PaulyOps API and setup tokens
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    # user:password@ in any URL (database, Redis, SMTP, AMQP)
    re.compile(r"(?<=://)[^/\s:@]*:[^/\s@]+(?=@)"),
)

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

AlertHook = Callable[[Mapping[str, Any]], None]
_alert_hooks: list[AlertHook] = []
_alert_lock = threading.Lock()


_CAMEL_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")


def _is_secret_key(key: str) -> bool:
    # camelCase wire names (secretAccessKey, clientSecret) split like snake_case ones.
    lowered = _CAMEL_BOUNDARY.sub(r"\1_\2", key).lower()
    if lowered in SAFE_KEYS:
        return False
    if lowered in SECRET_KEYS:
        return True
    parts = re.split(r"[_.\-]", lowered)
    compact = lowered.replace("_", "").replace("-", "")
    return any(part in SECRET_KEY_PARTS for part in parts) or compact in SECRET_KEY_PARTS


def redact_text(text: str) -> str:
    """Replace secret-looking substrings of ``text`` with ``[REDACTED]``."""
    for pattern in SECRET_VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact_value(value: Any, *, depth: int = 0) -> Any:
    """Redact secrets inside any value: strings, mappings and sequences, recursively."""
    if depth > 8:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and _is_secret_key(key)
            else redact_value(item, depth=depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, depth=depth + 1) for item in value]
    if type(value).__name__ in {"SecretStr", "SecretBytes"}:
        return REDACTED
    return value


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: drop secret keys and secret-looking values from a line."""
    for key in list(event_dict):
        if key in {"event", "timestamp", "level", "logger", "correlation_id"}:
            if key == "event" and isinstance(event_dict[key], str):
                event_dict[key] = redact_text(event_dict[key])
            continue
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact_value(event_dict[key])
    return event_dict


def _add_correlation_id(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    cid = _correlation_id.get()
    if cid is not None:
        event_dict.setdefault("correlation_id", cid)
    return event_dict


def _format_exception_redacted(
    logger: WrappedLogger, name: str, event_dict: EventDict
) -> EventDict:
    event_dict = structlog.processors.format_exc_info(logger, name, event_dict)
    if isinstance(event_dict.get("exception"), str):
        event_dict["exception"] = redact_text(event_dict["exception"])
    return event_dict


def configure_logging(
    *, level: str = "INFO", json_lines: bool = False, stream: IO[str] | None = None
) -> None:
    """Configure structlog and the standard library's logging once for the process.

    Args:
        level: the lowest level written.
        json_lines: JSON lines (production) or coloured console text (development).
        stream: where lines go (default standard error).
    """
    out = stream if stream is not None else sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_correlation_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json_lines:
        renderer = structlog.processors.JSONRenderer()
        final: list[Any] = [_format_exception_redacted, redact, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        final = [redact, renderer]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_paulyops", False):
            root.removeHandler(old)
    handler._paulyops = True  # type: ignore[attr-defined]  # marks our handler for reconfiguration
    root.addHandler(handler)
    root.setLevel(level)
    # alembic logs at INFO on import ("setup plugin ...") and per migration step: library
    # chatter on every first start; its warnings still come through.
    for noisy in ("uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


def get_logger(name: str = "paulyops") -> Any:
    """Return a structlog logger bound to ``name``."""
    return structlog.stdlib.get_logger(name)


def new_correlation_id() -> str:
    """Return a new random correlation id."""
    return uuid.uuid4().hex


def get_correlation_id() -> str | None:
    """Return the correlation id of the current request or job, if any."""
    return _correlation_id.get()


@contextlib.contextmanager
def correlation_scope(correlation_id: str | None = None) -> Iterator[str]:
    """Bind a correlation id for the duration of the block (a request or a job)."""
    cid = correlation_id or new_correlation_id()
    token = _correlation_id.set(cid)
    try:
        yield cid
    finally:
        _correlation_id.reset(token)


P = ParamSpec("P")
R = TypeVar("R")


def carry_context(func: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``func`` so it runs with the caller's context (correlation id) in another thread."""
    ctx = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.run(func, *args, **kwargs)

    return run


@contextlib.contextmanager
def timed(operation: str, *, warn_after_ms: float | None = None, **fields: Any) -> Iterator[None]:
    """Log how long a critical operation took (``duration_ms``), and whether it failed.

    Args:
        operation: a stable name, e.g. ``provision`` or ``db.connect``.
        warn_after_ms: log at warning level when slower than this.
        fields: extra context for the log line.
    """
    log = get_logger("paulyops.timing")
    start = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException:
        outcome = "error"
        raise
    finally:
        duration = round((time.perf_counter() - start) * 1000, 2)
        slow = warn_after_ms is not None and duration > warn_after_ms
        method = log.warning if slow or outcome == "error" else log.info
        method("timing", operation=operation, duration_ms=duration, outcome=outcome, **fields)


def add_alert_hook(hook: AlertHook) -> Callable[[], None]:
    """Register a function called with every security event; returns its remover."""
    with _alert_lock:
        _alert_hooks.append(hook)

    def remove() -> None:
        with _alert_lock, contextlib.suppress(ValueError):
            _alert_hooks.remove(hook)

    return remove


Severity = Literal["info", "warning", "critical"]


def security_event(kind: str, *, severity: Severity = "warning", **fields: Any) -> None:
    """Log a security event and hand it to every alert hook.

    Args:
        kind: a stable name, e.g. ``csrf.rejected`` or ``ratelimit.warning``.
        severity: ``info``, ``warning`` or ``critical``.
        fields: context (never secrets: they would be redacted anyway).
    """
    log = get_logger("paulyops.security")
    payload = redact_value({"kind": kind, "severity": severity, **fields})
    cid = _correlation_id.get()
    if cid:
        payload["correlation_id"] = cid
    method = log.warning if severity != "info" else log.info
    method("security_event", **payload)
    with _alert_lock:
        hooks = list(_alert_hooks)
    for hook in hooks:
        try:
            hook(payload)
        except Exception:  # an alert sink must never break the request that raised the event
            log.exception("alert_hook_failed", hook=getattr(hook, "__name__", repr(hook)))


def audit_event(action: str, *, outcome: str = "success", **fields: Any) -> None:
    """Log an audit-relevant action (the durable record is the audit table)."""
    get_logger("paulyops.audit").info("audit_event", action=action, outcome=outcome, **fields)


def business_metric(name: str, value: float = 1, **fields: Any) -> None:
    """Log a business metric (e.g. ``organization.provisioned``) for analytics."""
    get_logger("paulyops.metrics").info("business_metric", metric=name, value=value, **fields)


def webhook_alert_hook(url: str, *, timeout: float = 3.0) -> AlertHook:
    """Return an alert hook that POSTs each security event as JSON to ``url``.

    The POST runs in a daemon thread so a slow receiver never delays a request.
    """
    import httpx

    def post(payload: Mapping[str, Any]) -> None:
        def send() -> None:
            try:
                httpx.post(url, json=dict(payload), timeout=timeout)
            except httpx.HTTPError as err:
                get_logger("paulyops.security").warning(
                    "alert_webhook_failed", error=type(err).__name__
                )

        threading.Thread(target=send, name="alert-webhook", daemon=True).start()

    post.__name__ = "webhook_alert_hook"
    return post


__all__ = [
    "REDACTED",
    "add_alert_hook",
    "audit_event",
    "business_metric",
    "carry_context",
    "configure_logging",
    "correlation_scope",
    "get_correlation_id",
    "get_logger",
    "new_correlation_id",
    "redact",
    "redact_text",
    "redact_value",
    "security_event",
    "timed",
    "webhook_alert_hook",
]
