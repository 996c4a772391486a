"""Translate domain errors into the one JSON error shape, in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

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
from paulyops.core.logging import correlation_scope, get_logger
from paulyops.core.security.ratelimit import LimitExceededError
from paulyops.core.security.ratelimit import headers as ratelimit_headers
from paulyops.web.middleware import CORRELATION_SCOPE_KEY

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


TITLES = {
    400: "That request did not work",
    401: "Please sign in",
    403: "You can't do that here",
    404: "Page not found",
    409: "That clashes with something that exists",
    413: "That was too large",
    422: "Please check what you entered",
    429: "Slow down a little",
    500: "Something went wrong on our side",
    503: "PaulyOps is not ready",
}


def wants_html(request: Request) -> bool:
    """Whether the request is for a page (not the JSON API or a static file)."""
    path = request.url.path
    return not path.startswith(("/api/", "/static/"))


def html_error(request: Request, code: int, message: str) -> Response:
    """Render the error page in the product's style (or redirect to sign in on 401)."""
    from paulyops.web.pages.render import redirect, render

    if code == 401:
        # Come back after signing in, but only to pages one can GET.
        target = f"?next={quote(request.url.path)}" if request.method == "GET" else ""
        return redirect(f"/sign-in{target}")
    return render(
        request,
        "error.html",
        status_code=code,
        title=TITLES.get(code, "Something went wrong"),
        message=message,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into :class:`ErrorOut` responses or pages."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> Response:
        if wants_html(request):
            message = (
                "There is no page at this address." if err.status_code == 404 else str(err.detail)
            )
            return html_error(request, err.status_code, message)
        return JSONResponse(
            error_body(str(err.detail)), status_code=err.status_code, headers=err.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> Response:
        with correlation_scope(request.scope.get(CORRELATION_SCOPE_KEY)):
            log.exception("request_crashed", error=type(err).__name__)
        if wants_html(request):
            return html_error(
                request, 500, "Please try again. If it keeps happening, tell your administrator."
            )
        return JSONResponse(error_body("internal error; see the server log"), status_code=500)

    @app.exception_handler(PaulyOpsError)
    async def _domain(request: Request, err: PaulyOpsError) -> Response:
        code = _status_of(err)
        if wants_html(request):
            return html_error(
                request, code, err.message if code < 500 or code == 503 else TITLES[500]
            )
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
