"""Translate domain errors into the one JSON error shape, in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from paulyops.core.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PaulyOpsError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    SpecValidationError,
)
from paulyops.core.logging import get_logger
from paulyops.core.security.ratelimit import LimitExceededError
from paulyops.core.security.ratelimit import headers as ratelimit_headers

log = get_logger("paulyops.http")


class ErrorItem(BaseModel):
    """One field's problem."""

    field: str
    message: str
    allowed: list[str] | None = None
    suggestion: str | None = None


class ErrorOut(BaseModel):
    """The error shape of every 4xx (and 503) of the JSON API."""

    success: bool = False
    message: str
    errors: list[ErrorItem] = []


STATUS_BY_ERROR: list[tuple[type[PaulyOpsError], int]] = [
    (SpecValidationError, 422),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (RateLimitedError, 429),
    (ServiceUnavailableError, 503),
    (ConfigError, 500),
]


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the JSON error shape."""
    return {"success": False, "message": message, "errors": errors or []}


def _status_of(err: PaulyOpsError) -> int:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(err, cls):
            return code
    return 500


def _camel_path(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part not in {"body", "query", "path", "header"}]
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into :class:`ErrorOut` responses."""

    @app.exception_handler(PaulyOpsError)
    async def _domain(request: Request, err: PaulyOpsError) -> JSONResponse:
        code = _status_of(err)
        errors = [e.as_dict() for e in err.errors] if isinstance(err, SpecValidationError) else []
        headers: dict[str, str] = {}
        if isinstance(err, LimitExceededError):
            headers.update(ratelimit_headers(err.decision))
            reset = datetime.fromtimestamp(err.decision.reset_at, UTC).isoformat()
            errors = [
                {
                    "field": "rateLimit",
                    "message": f"limit {err.limit_name!r} resets at {reset}",
                    "allowed": [f"{err.decision.limit} per {err.decision.window} s"],
                }
            ]
        elif isinstance(err, RateLimitedError):
            headers["Retry-After"] = str(err.retry_after)
        if code >= 500 and code != 503:
            log.error("request_failed", error=type(err).__name__, message=err.message)
            message = "internal error; see the server log"
        else:
            message = err.message
        return JSONResponse(error_body(message, errors), status_code=code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _camel_path(tuple(item.get("loc", ()))), "message": str(item.get("msg"))}
            for item in err.errors()
        ]
        return JSONResponse(error_body("the request is invalid", errors), status_code=422)
