"""Rendering pages: Jinja2 templates, flash messages and per-session CSRF tokens for forms.

Every template is autoescaped. Forms carry a CSRF token: for a signed-in or setup session
the session's synchronizer token (kept in the key-value store so every page of the session
renders the same one), and before any session exists a signed pre-session token bound to
a random cookie.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer

from paulyops import __version__
from paulyops.core.kv import KVUnavailableError
from paulyops.core.security import csrf
from paulyops.core.security.csrf import hash_token
from paulyops.services.auth import sessions
from paulyops.services.auth.principals import SessionRow
from paulyops.web.deps import get_instance

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
FLASH_COOKIE = "paulyops_flash"
PRE_SESSION_COOKIE = "paulyops_pre"
_PAGE_TOKEN_KEY = "csrf-page:"  # noqa: S105  # a key prefix, not a secret
# A page token lives as long as the longest session could.
_PAGE_TOKEN_TTL = 24 * 3600
_ISSUE_LOCK = threading.Lock()

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.autoescape = True


def _flash_signer(request: Request) -> URLSafeSerializer:
    keys = get_instance(request).settings.session_secret_keys
    return URLSafeSerializer(keys or "unset", salt="flash")


def flash(response: Response, request: Request, kind: str, message: str) -> None:
    """Queue a message for the next page (``success``, ``error`` or ``info``)."""
    # Several flashes in one response accumulate on the request (the cookie is rewritten).
    pending: list[dict[str, str]] | None = getattr(request.state, "pending_flashes", None)
    if pending is None:
        pending = _read_flashes(request)
        request.state.pending_flashes = pending
    pending.append({"kind": kind, "message": message})
    items = pending
    response.set_cookie(
        FLASH_COOKIE,
        _flash_signer(request).dumps(items[-10:]),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def _read_flashes(request: Request) -> list[dict[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    try:
        data = _flash_signer(request).loads(raw)
    except BadSignature:
        return []
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def session_form_token(request: Request, row: SessionRow) -> str:
    """Return the CSRF token forms of this session carry (stable across pages).

    On SQLite, a page view (a safe request, whose transaction only reads) that must store
    a token's hash on the session row does so in a short write transaction of its own, so
    the read never turns into a write that SQLite refuses ("database is locked") when
    another request wrote meanwhile. One lock per process keeps concurrent page views of
    one session from each issuing a token and overwriting one another.
    """
    instance = get_instance(request)
    key = _PAGE_TOKEN_KEY + row.id
    existing = _stored_page_token(request, key)
    if existing and sessions.holds_csrf_hash(row, hash_token(existing)):
        return existing
    # SQLite refuses a read transaction's late write when another writer committed since
    # it read; PostgreSQL and unsafe requests (begun IMMEDIATE) write in the request's own
    # transaction, so a request still needs only one connection there.
    own_transaction = instance.db.dialect == "sqlite" and not csrf.is_unsafe_method(request.method)
    with _ISSUE_LOCK:
        existing = _stored_page_token(request, key)
        if existing and instance.csrf.validate(row.id, existing):
            token = existing  # still the session's token; only the row lags behind
        else:
            token = instance.csrf.issue(row.id)
        token_hash = hash_token(token)
        if own_transaction:
            with instance.db.write_session() as writer:
                sessions.store_csrf_hash(row, token_hash, writer=writer)
        else:
            sessions.store_csrf_hash(row, token_hash)
    # Without the store, forms still work: validation falls back to the session row's hash.
    with contextlib.suppress(KVUnavailableError):
        instance.kv.set(key, token, ttl=_PAGE_TOKEN_TTL)
    return token


def _stored_page_token(request: Request, key: str) -> str | None:
    try:
        return get_instance(request).kv.get(key)
    except KVUnavailableError:
        return None


def pre_session_token(request: Request, response: Response | None = None) -> tuple[str, str]:
    """Return (nonce, token) for a form shown before any session exists."""
    nonce = request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(24)
    token = get_instance(request).csrf.issue_pre_session(nonce)
    return nonce, token


def check_pre_session(request: Request, submitted: str | None) -> None:
    """Refuse a pre-session form whose token does not match its cookie (403)."""
    get_instance(request).csrf.ensure_valid_pre_session(
        request.cookies.get(PRE_SESSION_COOKIE), submitted
    )


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    csrf_token: str | None = None,
    pre_session: bool = False,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the shared context (flashes, CSRF token, version)."""
    nonce = None
    if pre_session:
        nonce, csrf_token = pre_session_token(request)
    flashes = _read_flashes(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "csrf_token": csrf_token,
            "flashes": flashes,
            "version": __version__,
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path="/")
    if nonce is not None:
        response.set_cookie(
            PRE_SESSION_COOKIE,
            nonce,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response


def redirect(url: str, *, status_code: int = 303) -> RedirectResponse:
    """Redirect after a form post (303 See Other)."""
    return RedirectResponse(url, status_code=status_code)


def to_json(value: Any) -> str:
    """Serialize for a ``data-`` attribute (autoescaped by the template)."""
    return json.dumps(value, separators=(",", ":"))


templates.env.filters["tojson_attr"] = to_json

__all__ = [
    "STATIC_DIR",
    "check_pre_session",
    "flash",
    "pre_session_token",
    "redirect",
    "render",
    "session_form_token",
    "templates",
]
