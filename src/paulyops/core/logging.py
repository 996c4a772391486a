"""Structured logging: JSON lines in production, readable console text in development.

Every line carries the request's correlation id (bound in a context variable by the web
middleware and carried into background work with :func:`carry_context`), and passes
through :func:`redact` so that no secret reaches a log sink, whatever a caller passes.

Typed helpers name the kinds of event an operator filters on: :func:`security_event`
(which also fires the alert hooks), :func:`audit_event` and :func:`business_metric`;
:func:`timed` measures critical operations.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import copy
import dataclasses
import io
import logging
import logging.handlers
import os
import queue
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, ParamSpec, TypeVar

from paulyops.core._structlog import EventDict, WrappedLogger, structlog
from paulyops.core.files import make_private_dir

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
    # The input a pydantic ValidationError echoes (a password, a token) in its message.
    re.compile(r"(?<=input_value=).+?(?=, input_type=)"),
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
    if value is None or isinstance(value, bool | int | float):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Field names decide, as for mappings: a dataclass that forgot repr=False on its
        # secret still renders without it.
        shown = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value) if f.repr}
        return {"type": type(value).__name__, **redact_value(shown, depth=depth + 1)}
    # Every renderer would call repr() on anything else: do it here, where the text is
    # still redacted (the holders of secrets keep them out of their repr, see
    # docs/security/overview.md).
    return redact_text(repr(value))


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


class CapturedException:
    """An exception taken apart where it was logged, turned into text later.

    Capturing walks the traceback without reading source lines and never keeps local
    variables (``capture_locals=False``): it costs microseconds per frame, so it may run
    on the event loop. :meth:`format` reads the source lines and builds the plain text;
    with a background writer it runs on the writer thread, off the request path.
    """

    __slots__ = ("_summary",)

    def __init__(self, exc_info: tuple[type[BaseException], BaseException, TracebackType | None]):
        self._summary = traceback.TracebackException(
            *exc_info, capture_locals=False, lookup_lines=False, compact=True
        )

    def format(self) -> str:
        """Return the plain traceback text (no locals, no colours), redacted."""
        return redact_text("".join(self._summary.format()).rstrip("\n"))


def _exc_info_tuple(
    value: Any,
) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value
    if value is True:
        current = sys.exc_info()
        return current if current[1] is not None else None
    return None


def _mark_logged(exc: BaseException) -> None:
    # Lets the handler drop the server's second copy of the same traceback (uvicorn logs
    # "Exception in ASGI application" after our 500 handler has already logged it).
    with contextlib.suppress(AttributeError, TypeError):
        exc.__paulyops_logged__ = True  # type: ignore[attr-defined]  # a marker attribute


def _capture_exception(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Replace ``exc_info`` with a :class:`CapturedException` (in the logging thread)."""
    value = event_dict.pop("exc_info", None)
    if isinstance(value, CapturedException):
        event_dict["exc_info"] = value
    elif value:
        info = _exc_info_tuple(value)
        if info is not None:
            _mark_logged(info[1])
            event_dict["exc_info"] = CapturedException(info)
    return event_dict


def _render_exception(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Turn a captured exception into the ``exception`` text field (plain, no locals)."""
    captured = event_dict.pop("exc_info", None)
    if not isinstance(captured, CapturedException):
        info = _exc_info_tuple(captured) if captured else None
        captured = CapturedException(info) if info is not None else None
    if captured is not None:
        event_dict["exception"] = captured.format()
    return event_dict


def _foreign_context(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Add the context of a standard-library record: captured at log time, or current."""
    record = event_dict.get("_record")
    captured = getattr(record, "_paulyops_context", None)
    if captured is None:
        captured = {**structlog.contextvars.get_contextvars()}
        cid = _correlation_id.get()
        if cid is not None:
            captured["correlation_id"] = cid
    for key, value in captured.items():
        event_dict.setdefault(key, value)
    return event_dict


def _timestamp(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """ISO timestamp in UTC of the moment the line was logged (not when it was written)."""
    record = event_dict.get("_record")
    created = record.created if isinstance(record, logging.LogRecord) else time.time()
    stamp = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    event_dict.setdefault("timestamp", stamp)
    return event_dict


_dropped_lines = 0
_dropped_lock = threading.Lock()


def _note_dropped_lines(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Say on the next written line how many lines a full queue dropped since the last."""
    global _dropped_lines
    if _dropped_lines:
        with _dropped_lock:
            event_dict["log_lines_dropped"], _dropped_lines = _dropped_lines, 0
    return event_dict


def _drop_repeated_traceback(record: logging.LogRecord) -> bool:
    """Filter: drop a server's second traceback of an exception already logged by us."""
    exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
    return not (record.name.startswith("uvicorn") and getattr(exc, "__paulyops_logged__", False))


class _QueueHandler(logging.handlers.QueueHandler):
    """Hand records to the writer thread, after capturing what only this thread knows.

    What must be taken now: the exception (its traceback stops being the current one),
    the context variables (correlation id), and the message with its arguments (they may
    change). Everything costly (source lines, redaction, rendering, the write itself)
    happens on the writer thread, so a slow terminal or pipe never stalls a request.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        if not hasattr(record, "_logger"):  # a standard-library record, not structlog's
            record.msg = record.getMessage()
            record.args = None
            context = {**structlog.contextvars.get_contextvars()}
            cid = _correlation_id.get()
            if cid is not None:
                context["correlation_id"] = cid
            record._paulyops_context = context  # read by _foreign_context
        if record.exc_info:
            info = _exc_info_tuple(record.exc_info)
            record.exc_info = CapturedException(info) if info else None  # type: ignore[assignment]  # rendered by _render_exception
        record.exc_text = None
        record.stack_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        global _dropped_lines
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            # A sink that stopped reading must not grow memory for ever or block callers.
            with _dropped_lock:
                _dropped_lines += 1


_QUEUE_SIZE = 10_000
_listener: logging.handlers.QueueListener | None = None
_queue: queue.Queue[logging.LogRecord] | None = None


def _stop_listener() -> None:
    global _listener, _queue
    if _listener is not None:
        _listener.stop()  # writes what is still queued
        for sink in _listener.handlers:
            if isinstance(sink, logging.FileHandler):
                sink.close()
    _listener = None
    _queue = None


def flush_logs(timeout: float = 5.0) -> None:
    """Wait until the background writer has written every line logged so far."""
    pending = _queue
    if pending is None:
        return
    deadline = time.monotonic() + timeout
    with pending.all_tasks_done:
        while pending.unfinished_tasks and (remaining := deadline - time.monotonic()) > 0:
            pending.all_tasks_done.wait(remaining)


def configure_logging(
    *,
    level: str = "INFO",
    json_lines: bool = False,
    stream: IO[str] | None = None,
    background: bool = False,
    log_file: LogFile | None = None,
    debug: str | None = None,
) -> None:
    """Configure structlog and the standard library's logging once for the process.

    Both formats go through the same chain: the exception is captured without locals,
    rendered as a plain traceback, then every field (the traceback included) is redacted,
    and only then does the renderer run. No renderer ever sees an exception object, so
    none can print local variables or spend seconds highlighting them.

    Args:
        level: the lowest level written.
        json_lines: JSON lines (production) or coloured console text (development).
        stream: where lines go (default standard error).
        background: render and write on a writer thread (servers), so that neither
            formatting nor a slow sink ever blocks a request; :func:`flush_logs` waits
            for it. Commands keep writing in line with their own output.
        log_file: also write JSON lines to this rotating file (servers: one per process
            in the data directory, read back by ``paulyops logs``).
        debug: ``PAULYOPS_DEBUG``: ``1``, ``*`` or ``all`` log everything at DEBUG; else a
            comma-separated list of logger names (``paulyops.web,sqlalchemy.engine``) to
            log at DEBUG while the rest keeps ``level``.
    """
    global _listener, _queue
    out = stream if stream is not None else sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_correlation_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
        _capture_exception,
    ]
    foreign: list[Any] = [
        _foreign_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
        _capture_exception,
    ]
    renderer: Any
    if json_lines:
        renderer = structlog.processors.JSONRenderer()
    else:
        # The exception arrives as text already; plain_traceback is the fallback that
        # never shows locals (Rich's default shows them and takes seconds per traceback).
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _render_exception,
            _note_dropped_lines,
            redact,
            renderer,
        ],
    )
    writer = logging.StreamHandler(out)
    writer.setFormatter(formatter)
    sinks: list[logging.Handler] = [writer]
    if log_file is not None:
        sinks.append(_file_handler(log_file, formatter if json_lines else _json_formatter(foreign)))
    handler: logging.Handler = writer
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_paulyops", False):
            root.removeHandler(old)
            if isinstance(old, _Tee):
                old.close()  # closes its file; the console stream is the caller's
    _stop_listener()
    if background:
        _queue = queue.Queue(_QUEUE_SIZE)
        handler = _QueueHandler(_queue)
        _listener = logging.handlers.QueueListener(_queue, *sinks)
        _listener.start()
    elif len(sinks) > 1:
        handler = _Tee(sinks)
    handler.addFilter(_drop_repeated_traceback)
    handler._paulyops = True  # type: ignore[attr-defined]  # marks our handler for reconfiguration
    root.addHandler(handler)
    everything, debug_loggers = parse_debug(debug)
    root.setLevel(logging.DEBUG if everything else level)
    for name in list(_debug_loggers - set(debug_loggers)):
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name in debug_loggers:
        logging.getLogger(name).setLevel(logging.DEBUG)
    _debug_loggers.clear()
    _debug_loggers.update(debug_loggers)
    # alembic logs at INFO on import ("setup plugin ...") and per migration step: library
    # chatter on every first start; its warnings still come through.
    for noisy in ("uvicorn.access", "alembic"):
        if not everything and noisy not in debug_loggers:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


atexit.register(_stop_listener)

# Loggers set to DEBUG by the last configure_logging (reset by the next).
_debug_loggers: set[str] = set()
_DEBUG_ALL = frozenset({"1", "*", "all", "true", "yes", "on"})
_LOGGER_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")


def parse_debug(value: str | None) -> tuple[bool, list[str]]:
    """Read ``PAULYOPS_DEBUG``: (everything at DEBUG?, the loggers to put at DEBUG).

    ``1``, ``*``, ``all`` (and the brief's ``DEBUG=*``) mean everything; ``0``, ``false``
    or empty mean nothing; otherwise a comma-separated list of logger names, where a
    trailing ``*`` or ``.*`` is dropped (``paulyops.*`` is the ``paulyops`` logger and
    everything under it).

    Raises:
        ValueError: a name that is not a logger name (the settings name the variable).
    """
    text = (value or "").strip()
    if not text or text.lower() in {"0", "false", "no", "off"}:
        return False, []
    if text.lower() in _DEBUG_ALL:
        return True, []
    names = []
    for raw in text.split(","):
        name = raw.strip().removesuffix("*").removesuffix(".").removesuffix(":")
        if not name:
            continue
        if not _LOGGER_NAME.match(name):
            raise ValueError(
                f"expected 1, * or comma-separated logger names like paulyops.web, got {raw!r}"
            )
        names.append(name)
    return False, names


@dataclasses.dataclass(frozen=True, slots=True)
class LogFile:
    """A rotating JSON-lines log file: where, how big before rotating, how many kept."""

    path: Path
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


class _Tee(logging.Handler):
    """Hand each record to several handlers (the console and the file) in line."""

    def __init__(self, sinks: list[logging.Handler]) -> None:
        super().__init__()
        self.sinks = sinks

    def emit(self, record: logging.LogRecord) -> None:
        for sink in self.sinks:
            sink.handle(record)

    def close(self) -> None:
        for sink in self.sinks:
            if isinstance(sink, logging.FileHandler):
                sink.close()
        super().close()


def _json_formatter(foreign: list[Any]) -> logging.Formatter:
    """The JSON-lines formatter, for the file when the console shows text."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _render_exception,
            _note_dropped_lines,
            redact,
            structlog.processors.JSONRenderer(),
        ],
    )


def _file_handler(target: LogFile, formatter: logging.Formatter) -> logging.Handler:
    """A size-rotating handler on ``target``: directory 700, files 600, UTF-8."""
    make_private_dir(target.path.parent)  # the data dir too, when the log comes first
    fd = os.open(target.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handler = _PrivateRotatingHandler(
        target.path, maxBytes=target.max_bytes, backupCount=target.backups, encoding="utf-8"
    )
    handler.setFormatter(formatter)
    return handler


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """Rotating file handler whose new files are readable by the owner only."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        stream = os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)
        assert isinstance(stream, io.TextIOWrapper)  # text mode always gives one
        return stream


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
    """Log a business metric (e.g. ``organization.provisioned``) and count it for Prometheus.

    The Prometheus series ``paulyops_business_events_total`` is labelled by ``name``
    only: ``fields`` go to the log line, never into a label (no person, no organization).
    """
    from paulyops.core import metrics  # prometheus-client loads only where metrics happen

    metrics.count_business_event(name, value)
    get_logger("paulyops.metrics").info("business_metric", metric=name, value=value, **fields)


def feature_used(feature: str) -> None:
    """Count one use of a product feature (the brief's feature usage tracking).

    Counted per feature name (``paulyops_feature_usage_total{feature=...}``), never per
    person: nothing about who used it is kept. Not logged: it may run on every request.
    """
    from paulyops.core import metrics

    metrics.count_feature_use(feature)


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
    "CapturedException",
    "LogFile",
    "add_alert_hook",
    "audit_event",
    "business_metric",
    "carry_context",
    "configure_logging",
    "correlation_scope",
    "feature_used",
    "flush_logs",
    "get_correlation_id",
    "get_logger",
    "new_correlation_id",
    "parse_debug",
    "redact",
    "redact_text",
    "redact_value",
    "security_event",
    "timed",
    "webhook_alert_hook",
]
