"""Translate domain errors into the one JSON error shape, in one place.

A dependency that is unavailable (the database refusing, stalled or full; Redis
unreachable) is a **503** with ``Retry-After``, in the error shape (API) or the styled
"temporarily unavailable" page, never a 500. These are answered by handlers of their
own exception types, so the connection stays usable: Starlette re-raises only what
reaches the catch-all ``Exception`` handler, and uvicorn then drops the keep-alive
connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from paulyops.core.db.failures import UNAVAILABLE_ERRORS, describe_db_error
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
from paulyops.services.onboarding.errors import field_errors
from paulyops.web.middleware import CORRELATION_SCOPE_KEY

log = get_logger("paulyops.http")

# Seconds a client is asked to wait after a 503: long enough for a restarted dependency
# to come back, short enough that a user retrying by hand does not notice.
RETRY_AFTER_S = 5


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


def _body_model(request: Request) -> type[BaseModel] | None:
    """Return the pydantic model the route takes as its body, if it takes one."""
    route = request.scope.get("route")
    body = getattr(route, "body_field", None) if isinstance(route, APIRoute) else None
    annotation = getattr(getattr(body, "field_info", None), "annotation", None)
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def request_errors(request: Request, err: RequestValidationError) -> list[dict[str, Any]]:
    """Translate FastAPI's validation errors into the one error shape.

    Errors in a body that is a pydantic model (a use case's command) go through the one
    translation of pydantic errors (:func:`paulyops.services.onboarding.errors.field_errors`),
    so the API names fields and bounds exactly as the console and the CLI do.
    """
    model = _body_model(request)
    out: list[dict[str, Any]] = []
    body: list[Any] = []
    for item in err.errors():
        loc = tuple(item.get("loc", ()))
        if model is not None and loc[:1] == ("body",) and item.get("type") != "json_invalid":
            body.append({**item, "loc": loc[1:]})
        else:
            out.append(_validation_item(item))
    if body and model is not None:
        out.extend(error.as_dict() for error in field_errors(body, model))
    return out


def _camel_path(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part not in {"body", "query", "path", "header"}]
    return ".".join(parts)


def _validation_item(item: Mapping[str, Any]) -> dict[str, str]:
    if item.get("type") == "json_invalid":
        # FastAPI puts the character offset where the field goes ("body", 17): say "body"
        # and what the parser expected instead.
        detail = str((item.get("ctx") or {}).get("error") or "syntax error")
        return {"field": "body", "message": f"not valid JSON: {detail}"}
    return {"field": _camel_path(tuple(item.get("loc", ()))), "message": str(item.get("msg"))}


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
    503: "Temporarily unavailable",
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


def unavailable(request: Request, message: str) -> Response:
    """Answer 503 with ``Retry-After``: the error shape (API) or the styled page (HTML)."""
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    if wants_html(request):
        response = html_error(request, 503, message)
        response.headers.update(headers)
        return response
    return JSONResponse(error_body(message), status_code=503, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into :class:`ErrorOut` responses or pages."""

    async def _database_unavailable(request: Request, err: Exception) -> Response:
        message = describe_db_error(err)
        log.warning("dependency_unavailable", dependency="database", reason=message)
        return unavailable(request, message)

    for error_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, _database_unavailable)

    @app.exception_handler(RedisError)
    async def _redis_unavailable(request: Request, err: RedisError) -> Response:
        log.warning("dependency_unavailable", dependency="redis", error=type(err).__name__)
        return unavailable(request, "shared state (Redis) is unreachable; try again shortly")

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
        if code == 503:
            return unavailable(request, err.message)
        if wants_html(request):
            return html_error(request, code, err.message if code < 500 else TITLES[500])
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
        errors = request_errors(request, err)
        return JSONResponse(error_body("the request is invalid", errors), status_code=422)
