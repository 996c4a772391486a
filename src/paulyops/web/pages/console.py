"""The console after setup: sign-in, home, members and roles, security, storage, audit log.

Server-rendered pages that work without JavaScript. Each route declares its access rule
once (``require(permission)``, ``SignedIn`` for the user's own account, ``Public`` for the
sign-in pages); actions the user may not take are not rendered, and forging one anyway is
refused by the guard (403). Every form carries the session's CSRF token, or a pre-session
token before anyone is signed in.

Writes go through the audited services (:mod:`paulyops.services.auth.manage` and
:mod:`paulyops.services.console`) inside the request's one transaction — a write
transaction for every POST — so a page never opens a second writer (SQLite would wait on
itself). Results are reported with flash messages after a redirect; a secret that is shown
once (an invitation link, an API token, recovery codes) is rendered in the POST's own
response instead, so it never travels in a cookie.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, TextIO, cast
from urllib.parse import quote, urlsplit

import pyotp
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    ApiToken,
    AuditLog,
    Delegation,
    Membership,
    Organization,
    Role,
    SecurityConfig,
    StorageConfig,
    User,
    WebSession,
    utcnow,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SpecValidationError,
)
from paulyops.core.instance import Instance
from paulyops.core.security.crypto import DecryptionError, read_secret, read_secret_json
from paulyops.services import audit
from paulyops.services import console as console_service
from paulyops.services.actor import Actor
from paulyops.services.auth import accounts, manage, rbac, sessions, tokens
from paulyops.services.auth.permissions import (
    MAX_DELEGATION_DAYS,
    PERMISSIONS,
    RbacModel,
    allows_custom_roles,
    is_hierarchical,
)
from paulyops.services.onboarding.provision import user_for_password_token
from paulyops.web.auth import (
    ADMIN_RANK,
    DbSession,
    Principal,
    PrincipalDep,
    SignedIn,
    require,
    session_cookie_name,
)
from paulyops.web.deps import ClientAddress, InstanceDep, Public
from paulyops.web.pages.render import (
    check_pre_session,
    flash,
    redirect,
    render,
    session_form_token,
)
from paulyops.web.ratelimit import limit_request

router = APIRouter(include_in_schema=False)

AUDIT_PAGE_SIZE = 50
ACTIVITY_DAYS = 30
RECENT_ROWS = 10
MAX_PASSWORD = 1024
# Exports larger than this spill from memory to a temporary file while they stream.
EXPORT_SPOOL_BYTES = 8 * 1024 * 1024
STATUS_FILL = {
    "healthy": "#1e7d45",
    "degraded": "#a15c00",
    "unhealthy": "#c62828",
    "not_configured": "#9aa3b5",
}
STATUS_BADGE = {"healthy": "ok", "degraded": "warn", "unhealthy": "bad", "not_configured": ""}
PROVIDER_LABELS = {
    "local": "Folder on this server",
    "s3": "Amazon S3 or S3-compatible",
    "google-drive": "Google Drive",
    "dropbox": "Dropbox",
}
# Form inputs of the storage form, by provider (secrets are password inputs).
STORAGE_INPUTS = (
    "name",
    "path",
    "bucket",
    "region",
    "endpoint",
    "access_key_id",
    "secret_access_key",
    "client_id",
    "client_secret",
    "app_key",
    "app_secret",
)
STORAGE_SECRETS = frozenset({"access_key_id", "secret_access_key", "client_secret", "app_secret"})


# --- helpers --------------------------------------------------------------------------------


def _user(principal: Principal) -> User:
    assert principal.user is not None  # every guard admits only signed-in callers
    return principal.user


def _model(session: Session, scope: OrgScope) -> RbacModel:
    org = session.get(Organization, scope.organization_id)
    return RbacModel(org.rbac_model if org else "simple")


def _snake(field: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", field.split(".")[-1]).lower()


def _field_errors(err: SpecValidationError) -> dict[str, str]:
    """Map a service's field errors to form input names (``roleId`` -> ``role_id``)."""
    out: dict[str, str] = {}
    for item in err.errors:
        out.setdefault(_snake(item.field) or "form", item.message)
    if not out:
        out["form"] = err.message
    return out


def _safe_next(value: str | None, default: str = "/console") -> str:
    """Return ``value`` if it is a local path (never another site), else ``default``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or any(ord(c) < 32 for c in value):
        return default
    return value


def _set_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        session_cookie_name(request),
        token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def _jwt_secret(instance: Instance) -> str:
    secret = instance.settings.jwt_secret
    if secret is None:
        raise ConfigError("JWT_SECRET is not set; one-time links cannot be signed")
    return secret.get_secret_value()


def _back(request: Request, url: str, kind: str, message: str) -> Response:
    response = redirect(url)
    flash(response, request, kind, message)
    return response


def _page(
    request: Request,
    session: Session,
    principal: Principal,
    template: str,
    *,
    active: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render a console page with the nav, the permission flags and the form token.

    The nav offers an organization switcher when the user belongs to more than one.
    """
    token = session_form_token(request, principal.web_session) if principal.web_session else ""
    organizations = []
    if principal.user is not None and principal.web_session is not None:
        organizations = [org for org, _role in rbac.memberships_of(session, principal.user.id)]
    return render(
        request,
        template,
        status_code=status_code,
        csrf_token=token,
        principal=principal,
        me=principal.user,
        can={name: principal.can(name) for name in PERMISSIONS},
        active=active,
        must_enroll=bool(principal.extra.get("must_enroll_second_factor")),
        organizations=organizations if len(organizations) > 1 else [],
        **context,
    )


def _parse_date(value: str, field: str, errors: dict[str, str]) -> date | None:
    text = value.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = f"expected a date like 2026-05-01, got {text[:20]!r}"
        return None


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


# --- charts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a server-rendered SVG chart (presentation attributes only)."""

    x: float
    y: float
    width: float
    height: float
    fill: str
    label: str
    day: str = ""
    count: int = 0


def activity_chart(
    days: list[date], counts: Counter[date], *, width: int = 600, height: int = 120
) -> dict[str, Any]:
    """Return the bars of the audit-activity chart: one per day, scaled to the busiest.

    The SVG stretches to the card's width at a fixed CSS height (``preserveAspectRatio``
    ``none``), so ``width`` and ``height`` are only the coordinate system; the date labels
    are HTML under the chart, so they keep the page's text size at every width.
    """
    top = max((counts[day] for day in days), default=0)
    slot = width / max(1, len(days))
    bars = []
    for index, day in enumerate(days):
        count = counts[day]
        bar_height = 0.0 if top == 0 else max(2.0, (height - 4) * count / top)
        if count == 0:
            bar_height = 1.0
        bars.append(
            Bar(
                x=round(index * slot + 1, 2),
                y=round(height - bar_height, 2),
                width=round(max(1.0, slot - 2), 2),
                height=round(bar_height, 2),
                fill="#2f5bea" if count else "#d9dfea",
                label=f"{day.isoformat()}: {count} event{'s' if count != 1 else ''}",
                day=day.isoformat(),
                count=count,
            )
        )
    busiest = max(days, key=lambda day: counts[day]) if top else None
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "total": sum(counts[day] for day in days),
        "top": top,
        "busiest": busiest,
        "first": days[0] if days else None,
        "last": days[-1] if days else None,
    }


def health_bars(
    report: dict[str, Any], *, width: int = 160, height: int = 14
) -> list[dict[str, Any]]:
    """Return one small bar per dependency: length by response time (log scale), color by status."""
    out = []
    for name, check in report.get("checks", {}).items():
        status = str(check.get("status", "unhealthy"))
        ms = int(check.get("responseTime", 0))
        # 1 ms fills a sliver, 1 s and more the whole track.
        share = min(1.0, math.log10(max(1, ms) + 1) / 3)
        out.append(
            {
                "name": name,
                "status": status,
                "ms": ms,
                "badge": STATUS_BADGE.get(status, ""),
                "width": width,
                "height": height,
                "bar": round(max(4.0, width * share), 1),
                "fill": STATUS_FILL.get(status, "#5b6478"),
                "details": human_details(check.get("details")),
            }
        )
    return out


# --- human-readable values ------------------------------------------------------------------

# Labels of health-check details whose generic wording ("rss", "pid") would be unclear.
DETAIL_LABELS = {
    "rssBytes": "memory used",
    "freeBytes": "free space",
    "uptimeSeconds": "uptime",
    "systemMemoryPercent": "system memory in use",
    "pid": "process id",
    "activeKeyId": "active key",
    "keyIds": "keys",
    "opensslFipsMode": "OpenSSL FIPS mode",
}
ACTOR_LABELS = {
    "setup_token": "setup token",
    "cli": "command line",
    "system": "system",
    "anonymous": "anonymous",
}


def human_bytes(value: float) -> str:
    """``84041719808`` -> ``78.3 GB`` (binary multiples, as disks and memory are reported)."""
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover  # the loop returns at TB


def human_duration(seconds: float) -> str:
    """A coarse duration read at a glance: ``5 s``, ``3 min``, ``2 h 5 min``, ``1 d 1 h``."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 3600:
        return f"{minutes} min"
    if total < 86400:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    rest = hours % 24
    return f"{days} d {rest} h" if rest else f"{days} d"


def _detail_label(key: str) -> str:
    if key in DETAIL_LABELS:
        return DETAIL_LABELS[key]
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).replace("_", " ")
    return words.lower()


def human_value(key: str, value: Any) -> str:
    """One health detail as a person reads it: sizes, durations, yes/no, lists, ``—``."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if key.endswith("Bytes"):
            return human_bytes(value)
        if key.endswith("Seconds"):
            return human_duration(value)
        if key.endswith("Percent"):
            return f"{value:g} %"
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple | set):
        return ", ".join(human_value("", item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{_detail_label(k)} {human_value(k, v)}" for k, v in value.items())
    return str(value).replace("_", " ") if key in ("migrations", "connectionPool") else str(value)


def human_details(details: Any) -> list[tuple[str, str]]:
    """A check's ``details`` as ``(label, value)`` pairs for the health table."""
    if not isinstance(details, dict):
        return []
    return [
        (_detail_label(str(key)), human_value(str(key), value)) for key, value in details.items()
    ]


def parse_timestamp(value: Any) -> datetime | None:
    """The healthz ``timestamp`` (ISO 8601, ``Z``) as an aware datetime, or ``None``."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Who:
    """Who did something in the audit log, for people: a label and the raw actor for auditors."""

    label: str
    title: str


def actors(session: Session, organization_id: str, rows: list[AuditLog]) -> dict[str, Who]:
    """Return a readable actor per audit row id: a person's name, "API token <name>", ..."""
    user_ids = {r.actor_id for r in rows if r.actor_id and r.actor_type in ("user", "anonymous")}
    token_ids = {r.actor_id for r in rows if r.actor_id and r.actor_type == "token"}
    users: dict[str, str] = {}
    tokens_by_id: dict[str, str] = {}
    if user_ids:
        users = {
            user_id: name
            for user_id, name in session.execute(
                select(User.id, User.name).where(User.id.in_(user_ids))
            )
        }
    if token_ids:
        tokens_by_id = {
            token_id: name
            for token_id, name in session.execute(
                select(ApiToken.id, ApiToken.name).where(
                    ApiToken.id.in_(token_ids), ApiToken.organization_id == organization_id
                )
            )
        }
    out: dict[str, Who] = {}
    for row in rows:
        kind, ident = row.actor_type, row.actor_id
        title = f"{kind} {ident}" if ident else kind
        if kind == "user":
            label = users.get(ident or "") or "a removed user"
        elif kind == "token":
            name = tokens_by_id.get(ident or "")
            label = f"API token {name}" if name else "an API token"
        elif kind == "anonymous" and ident in users:
            label = f"{users[ident]} (signing in)"
        else:
            label = ACTOR_LABELS.get(kind, kind.replace("_", " "))
        out[row.id] = Who(label, title)
    return out


# --- sign-in, second factor, sign-out, one-time password links -------------------------------


@router.get("/sign-in", dependencies=[Public])
def sign_in_page(
    request: Request,
    principal: PrincipalDep,
    next_url: Annotated[str, Query(alias="next")] = "",
) -> Response:
    """The sign-in form (a pre-session CSRF token guards it)."""
    if principal.kind == "session":
        return redirect(_safe_next(next_url))
    return render(request, "sign_in.html", pre_session=True, next=_safe_next(next_url), email="")


def _needs_enrollment(session: Session, user: User, organization_id: str | None) -> bool:
    """Whether the organization requires a second factor this admin has not set up yet."""
    if user.totp_enabled or organization_id is None:
        return False
    grant = rbac.grant_for(session, organization_id, user.id)
    if grant is None or grant.role_rank < ADMIN_RANK:
        return False
    config = OrgScope(session, organization_id).first(SecurityConfig)
    return bool(config and config.require_admin_2fa)


def _signed_in(request: Request, session: Session, result: manage.SignIn, target: str) -> Response:
    """Finish a sign-in: prime the session's form token, set the cookie and move on."""
    session_form_token(request, result.session)
    if _needs_enrollment(session, result.user, result.session.organization_id):
        response = redirect("/console/security")
        flash(
            response,
            request,
            "info",
            "Your organization requires a second factor for admins: set it up to continue.",
        )
    else:
        response = redirect(target)
    _set_cookie(request, response, result.cookie)
    return response


@router.post("/sign-in", dependencies=[Public])
def sign_in_submit(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: PrincipalDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Check the credentials; continue to the second factor when it is on."""
    check_pre_session(request, csrf_token)
    target = _safe_next(next_url)
    try:
        if len(password) > MAX_PASSWORD or len(email) > 320:
            raise AuthenticationError(accounts.SIGN_IN_FAILED)
        result = manage.sign_in(
            session,
            hashing=instance.hashing,
            limiter=instance.limiter,
            csrf=instance.csrf,
            email=email,
            password=password,
            actor=Actor("anonymous", None, address),
            previous=principal.web_session,
            user_agent=request.headers.get("user-agent"),
        )
    except AuthenticationError as err:
        return render(
            request,
            "sign_in.html",
            status_code=401,
            pre_session=True,
            next=target,
            email=email[:320],
            error=err.message,
        )
    if result.needs_second_factor:
        response = redirect("/sign-in/code?next=" + quote(target))
        _set_cookie(request, response, result.cookie)
        return response
    return _signed_in(request, session, result, target)


def _pending(request: Request, session: Session) -> WebSession | None:
    row = sessions.resolve_session(session, request.cookies.get(session_cookie_name(request), ""))
    return row if row is not None and row.kind == "pending_2fa" else None


@router.get("/sign-in/code", dependencies=[Public])
def second_factor_page(
    request: Request,
    session: DbSession,
    next_url: Annotated[str, Query(alias="next")] = "",
) -> Response:
    """Ask for the TOTP or a recovery code after the password was right."""
    if _pending(request, session) is None:
        return _back(request, "/sign-in", "error", "Sign in again: that sign-in expired.")
    return render(request, "sign_in_code.html", pre_session=True, next=_safe_next(next_url))


@router.post("/sign-in/code", dependencies=[Public])
def second_factor_submit(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    code: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Finish signing in with the code."""
    check_pre_session(request, csrf_token)
    target = _safe_next(next_url)
    pending = _pending(request, session)
    if pending is None:
        return _back(request, "/sign-in", "error", "Sign in again: that sign-in expired.")
    try:
        result = manage.complete_second_factor(
            session,
            keyring=instance.keyring,
            limiter=instance.limiter,
            csrf=instance.csrf,
            pending=pending,
            code=code[:40],
            actor=Actor("anonymous", pending.user_id, address),
        )
    except AuthenticationError as err:
        return render(
            request,
            "sign_in_code.html",
            status_code=401,
            pre_session=True,
            next=target,
            error=err.message,
        )
    return _signed_in(request, session, result, target)


@router.post("/sign-out")
def sign_out(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
) -> Response:
    """End this browser's session."""
    if principal.web_session is not None:
        manage.sign_out(
            session, csrf=instance.csrf, row=principal.web_session, actor=principal.actor(address)
        )
    response = _back(request, "/sign-in", "success", "You are signed out.")
    response.delete_cookie(session_cookie_name(request), path="/")
    return response


@router.get("/set-password", dependencies=[Public])
def set_password_page(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    token: str = "",
) -> Response:
    """The one-time link's page: choose a password."""
    user = user_for_password_token(session, instance.settings.jwt_secret_keys, token)
    return render(
        request, "set_password.html", pre_session=True, token=token, email=user.email, errors={}
    )


@router.post("/set-password", dependencies=[Public])
def set_password_submit(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    token: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Set the password; the link stops working with it."""
    check_pre_session(request, csrf_token)
    limit_request(request, None, user_id=None, name="signin")
    user = user_for_password_token(session, instance.settings.jwt_secret_keys, token)
    errors: dict[str, str] = {}
    if len(password) > MAX_PASSWORD:
        errors["password"] = f"expected at most {MAX_PASSWORD} characters"
    elif password != confirm:
        errors["confirm"] = "the two passwords are not the same"
    else:
        try:
            console_service.set_password_from_link(
                session,
                hashing=instance.hashing,
                user=user,
                password=password,
                actor=Actor("user", user.id, address),
            )
        except SpecValidationError as err:
            errors = _field_errors(err)
    if errors:
        return render(
            request,
            "set_password.html",
            status_code=422,
            pre_session=True,
            token=token,
            email=user.email,
            errors=errors,
        )
    return _back(request, "/sign-in", "success", "Your password is set. Sign in with it now.")


# --- home -----------------------------------------------------------------------------------


@router.get("/console")
def home(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: Annotated[Principal, require("org:read")],
) -> Response:
    """Organization facts, the health of each dependency and recent activity."""
    scope = principal.scope(session)
    org = session.get(Organization, scope.organization_id)
    if org is None:
        raise NotFoundError("organization not found")
    report = instance.health_report(include_details=principal.can("health:read"))
    facts = {
        "members": scope.count(Membership),
        "roles": scope.count(Role),
        "storage": scope.count(StorageConfig),
        "tokens": scope.count(ApiToken, ApiToken.revoked_at.is_(None)),
    }
    chart = None
    recent: list[AuditLog] = []
    if principal.can("audit:read"):
        today = utcnow().date()
        days = [today - timedelta(days=n) for n in range(ACTIVITY_DAYS - 1, -1, -1)]
        since = datetime.combine(days[0], time.min, tzinfo=UTC)
        stamps = session.scalars(
            select(AuditLog.created_at).where(
                AuditLog.chain == org.id, AuditLog.created_at >= since
            )
        ).all()
        chart = activity_chart(days, Counter(stamp.date() for stamp in stamps))
        recent = list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.chain == org.id)
                .order_by(AuditLog.seq.desc())
                .limit(RECENT_ROWS)
            ).all()
        )
    return _page(
        request,
        session,
        principal,
        "console/home.html",
        active="home",
        org=org,
        facts=facts,
        health=report,
        health_bars=health_bars(report),
        checked=parse_timestamp(report.get("timestamp")),
        chart=chart,
        recent=recent,
        who=actors(session, org.id, recent),
    )


def _member_names(scope: OrgScope) -> dict[str, str]:
    """Return the names of the organization's members by user id (for actor columns)."""
    rows = scope.session.execute(
        select(User.id, User.name)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == scope.organization_id)
    ).all()
    return {user_id: name for user_id, name in rows}


@router.post("/console/switch-org")
def switch_organization(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    organization_id: Annotated[str, Form()] = "",
) -> Response:
    """Work in another organization you belong to (the session is rotated)."""
    user = _user(principal)
    if principal.web_session is None:
        raise PermissionDeniedError("switching organizations needs a browser session")
    if organization_id == principal.organization_id:
        return _back(request, "/console", "info", "You are already working in that organization.")
    new, _token = manage.switch_organization(
        session,
        csrf=instance.csrf,
        current=principal.web_session,
        organization_id=organization_id,
        actor=principal.actor(address),
    )
    org = session.get(Organization, organization_id)
    name = org.name if org else organization_id
    session_form_token(request, new.row)
    if _needs_enrollment(session, user, organization_id):
        response = _back(
            request,
            "/console/security",
            "info",
            f"{name} requires a second factor for admins: set it up to continue.",
        )
    else:
        response = _back(request, "/console", "success", f"You are now working in {name}.")
    _set_cookie(request, response, new.token)
    return response


# --- members --------------------------------------------------------------------------------


def _members_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    invited: dict[str, Any] | None = None,
) -> Response:
    scope = principal.scope(session)
    roles = sorted(scope.list(Role), key=lambda role: (-role.rank, role.name))
    by_id = {role.id: role for role in roles}
    rank = principal.grant.role_rank if principal.grant else 0
    members = []
    for membership in scope.list(Membership, order_by=Membership.created_at):
        user = session.get(User, membership.user_id)
        role = by_id.get(membership.role_id)
        if user is None or role is None:
            continue
        members.append(
            {
                "id": membership.id,
                "user": user,
                "role": role,
                "is_me": user.id == principal.user_id,
                "manageable": role.rank <= rank and user.id != principal.user_id,
                "pending": user.password_hash is None,
            }
        )
    return _page(
        request,
        session,
        principal,
        "console/members.html",
        active="members",
        status_code=status_code,
        members=members,
        roles=roles,
        assignable=[role for role in roles if role.rank <= rank],
        errors=errors or {},
        form=form or {},
        invited=invited,
    )


@router.get("/console/members")
def members(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("members:read")],
) -> Response:
    """List the members; invite, change roles and remove where allowed."""
    return _members_page(request, session, principal)


@router.post("/console/members/invite")
def invite(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:invite")],
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    role_id: Annotated[str, Form()] = "",
) -> Response:
    """Invite someone by a single-use link (shown once, on this response)."""
    form = {"email": email[:320], "name": name[:200], "role_id": role_id[:40]}
    try:
        invitation = console_service.invite_member(
            principal.scope(session),
            grant=principal.acting_grant(),
            email=email,
            name=name,
            role_id=role_id,
            jwt_secret=_jwt_secret(instance),
            public_url=instance.settings.effective_public_url,
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        return _members_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _members_page(
            request, session, principal, status_code=409, errors={"form": err.message}, form=form
        )
    return _members_page(
        request,
        session,
        principal,
        invited={"email": invitation.user.email, "link": invitation.link},
    )


@router.post("/console/members/{membership_id}/role")
def change_role(
    membership_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:update")],
    role_id: Annotated[str, Form()] = "",
) -> Response:
    """Give a member another role (their sessions end)."""
    scope = principal.scope(session)
    scope.get(Membership, membership_id)
    if not role_id:
        return _back(request, "/console/members", "error", "Choose a role first.")
    try:
        manage.change_member_role(
            scope,
            grant=principal.acting_grant(),
            membership_id=membership_id,
            role_id=role_id,
            actor=principal.actor(address),
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/members", "error", err.message)
    return _back(request, "/console/members", "success", "Role changed.")


@router.post("/console/members/{membership_id}/remove")
def remove_member(
    membership_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("members:remove")],
) -> Response:
    """Remove a member (their sessions end)."""
    try:
        manage.remove_member(
            principal.scope(session),
            grant=principal.acting_grant(),
            membership_id=membership_id,
            actor=principal.actor(address),
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/members", "error", err.message)
    return _back(request, "/console/members", "success", "Member removed.")


# --- roles and delegations ------------------------------------------------------------------


def _roles_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    scope = principal.scope(session)
    model = _model(session, scope)
    roles = sorted(scope.list(Role), key=lambda role: (-role.rank, role.name))
    by_id = {role.id: role for role in roles}
    held = Counter(m.role_id for m in scope.list(Membership))
    rows = [
        {
            "role": role,
            "parent": by_id.get(role.parent_id) if role.parent_id else None,
            "effective": sorted(rbac.role_permissions(scope, role, model)),
            "members": held[role.id],
        }
        for role in roles
    ]
    names = _member_names(scope)
    now = utcnow()
    delegations = [
        {
            "row": row,
            "from": names.get(row.from_user_id, row.from_user_id),
            "to": names.get(row.to_user_id, row.to_user_id),
        }
        for row in scope.list(
            Delegation,
            Delegation.revoked_at.is_(None),
            Delegation.expires_at > now,
            order_by=Delegation.expires_at,
        )
    ]
    holds = principal.permissions
    return _page(
        request,
        session,
        principal,
        "console/roles.html",
        active="roles",
        status_code=status_code,
        model=model.value,
        custom_roles=allows_custom_roles(model),
        hierarchical=is_hierarchical(model),
        rows=rows,
        roles=roles,
        permissions=PERMISSIONS,
        grantable=[name for name in PERMISSIONS if name != "org:create"],
        permission_options=[
            (name, PERMISSIONS[name]) for name in PERMISSIONS if name != "org:create"
        ],
        delegable=[name for name in PERMISSIONS if name in holds],
        delegations=delegations,
        recipients=sorted(
            ((uid, name) for uid, name in names.items() if uid != principal.user_id),
            key=lambda item: item[1],
        ),
        max_days=MAX_DELEGATION_DAYS,
        errors=errors or {},
        form=form or {},
    )


@router.get("/console/roles")
def roles(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("roles:read")],
) -> Response:
    """Roles with their effective permissions; custom roles and delegations where allowed."""
    return _roles_page(request, session, principal)


@router.post("/console/roles")
def create_role(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
    parent_id: Annotated[str, Form()] = "",
) -> Response:
    """Create a custom role (granular and enterprise models)."""
    chosen = list(permissions or [])
    form = {"name": name[:80], "description": description[:400], "permissions": chosen}
    form["parent_id"] = parent_id[:40]
    if len(description) > 400:
        return _roles_page(
            request,
            session,
            principal,
            status_code=422,
            errors={"description": "expected at most 400 characters"},
            form=form,
        )
    try:
        role = manage.create_role(
            principal.scope(session),
            grant=principal.acting_grant(),
            name=name,
            permissions=chosen,
            description=description,
            parent_id=parent_id or None,
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        return _roles_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _roles_page(
            request, session, principal, status_code=409, errors={"form": err.message}, form=form
        )
    return _back(request, "/console/roles", "success", f"Role {role.name!r} created.")


@router.post("/console/roles/{role_id}/permissions")
def update_role(
    role_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
    permissions: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Replace a custom role's permissions (built-in roles cannot be edited)."""
    chosen = list(permissions or [])
    try:
        role = manage.update_role(
            principal.scope(session),
            grant=principal.acting_grant(),
            role_id=role_id,
            permissions=chosen,
            actor=principal.actor(address),
        )
    except (SpecValidationError, PermissionDeniedError) as err:
        invalid = isinstance(err, SpecValidationError)
        message = (
            "; ".join(_field_errors(err).values())
            if isinstance(err, SpecValidationError)
            else err.message
        )
        return _roles_page(
            request,
            session,
            principal,
            status_code=422 if invalid else 403,
            errors={f"perm_{role_id}": message},
            form={"edit_role_id": role_id, "edit_permissions": chosen},
        )
    except ConflictError as err:
        return _back(request, "/console/roles", "error", err.message)
    return _back(request, "/console/roles", "success", f"Permissions of {role.name!r} saved.")


@router.post("/console/roles/{role_id}/delete")
def delete_role(
    role_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("roles:manage")],
) -> Response:
    """Delete a custom role nobody holds."""
    try:
        manage.delete_role(
            principal.scope(session), role_id=role_id, actor=principal.actor(address)
        )
    except (ConflictError, PermissionDeniedError) as err:
        return _back(request, "/console/roles", "error", err.message)
    return _back(request, "/console/roles", "success", "Role deleted.")


@router.post("/console/delegations")
def create_delegation(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
    to_user_id: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
    expires: Annotated[str, Form()] = "",
) -> Response:
    """Delegate some of your own permissions to another member until a date (enterprise)."""
    chosen = list(permissions or [])
    form: dict[str, Any] = {"to_user_id": to_user_id[:40], "d_permissions": chosen}
    form["expires"] = expires[:10]
    errors: dict[str, str] = {}
    day = _parse_date(expires, "expires", errors)
    if day is None and "expires" not in errors:
        errors["expires"] = "choose the last day of the delegation"
    if not to_user_id:
        errors["to_user_id"] = "choose the member who receives the permissions"
    if not chosen:
        errors["d_permissions"] = "choose at least one permission"
    if not errors and day is not None:
        now = utcnow()
        expires_at = min(_end_of_day(day), now + timedelta(days=MAX_DELEGATION_DAYS))
        try:
            manage.delegate(
                principal.scope(session),
                grant=principal.acting_grant(),
                to_user_id=to_user_id,
                permissions=chosen,
                expires_at=expires_at,
                actor=principal.actor(address),
            )
        except SpecValidationError as err:
            errors = {
                {"expires_at": "expires", "permissions": "d_permissions"}.get(key, key): message
                for key, message in _field_errors(err).items()
            }
        except (ConflictError, PermissionDeniedError, NotFoundError) as err:
            errors = {"delegation": err.message}
    if errors:
        return _roles_page(request, session, principal, status_code=422, errors=errors, form=form)
    return _back(request, "/console/roles", "success", "Delegation created.")


@router.post("/console/delegations/{delegation_id}/revoke")
def revoke_delegation(
    delegation_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("delegations:manage")],
) -> Response:
    """End a delegation now."""
    manage.revoke_delegation(
        principal.scope(session), delegation_id=delegation_id, actor=principal.actor(address)
    )
    return _back(request, "/console/roles", "success", "Delegation ended.")


# --- security -------------------------------------------------------------------------------


def _security_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    enrollment: dict[str, str] | None = None,
    recovery_codes: list[str] | None = None,
    new_token: dict[str, str] | None = None,
) -> Response:
    user = _user(principal)
    config = None
    api_tokens: list[ApiToken] = []
    if principal.organization_id is not None:
        scope = OrgScope(session, principal.organization_id)
        if principal.can("security:read") or principal.can("security:update"):
            config = scope.first(SecurityConfig)
        if principal.can("tokens:manage"):
            api_tokens = tokens.list_api_tokens(scope)
    current = principal.web_session.id if principal.web_session else None
    return _page(
        request,
        session,
        principal,
        "console/security.html",
        active="security",
        status_code=status_code,
        config=config,
        totp_enabled=user.totp_enabled,
        totp_required_by=[
            org.name for org in console_service.second_factor_required_by(session, user.id)
        ]
        if user.totp_enabled
        else [],
        recovery_left=len(user.recovery_codes),
        my_sessions=sessions.list_sessions(session, user.id),
        current_session=current,
        api_tokens=api_tokens,
        names=_member_names(OrgScope(session, principal.organization_id))
        if principal.organization_id
        else {},
        token_permissions=[name for name in PERMISSIONS if principal.can(name)],
        errors=errors or {},
        form=form or {},
        enrollment=enrollment,
        recovery_codes=recovery_codes,
        new_token=new_token,
    )


@router.get("/console/security")
def security(request: Request, session: DbSession, principal: SignedIn) -> Response:
    """Session timeouts, your second factor and sessions, and API tokens."""
    return _security_page(request, session, principal)


@router.post("/console/security/settings")
def update_security(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("security:update")],
    idle_minutes: Annotated[str, Form()] = "",
    absolute_hours: Annotated[str, Form()] = "",
    require_admin_2fa: Annotated[str, Form()] = "",
) -> Response:
    """Change the session timeouts and whether admins need a second factor."""
    form = {
        "idle_minutes": idle_minutes[:10],
        "absolute_hours": absolute_hours[:10],
        "require_admin_2fa": bool(require_admin_2fa),
    }
    try:
        console_service.update_security(
            principal.scope(session),
            idle_minutes=idle_minutes,
            absolute_hours=absolute_hours,
            require_admin_2fa=bool(require_admin_2fa),
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        return _security_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    return _back(request, "/console/security", "success", "Security settings saved.")


@router.post("/console/security/totp/start")
def totp_start(
    request: Request, session: DbSession, instance: InstanceDep, principal: SignedIn
) -> Response:
    """Create a TOTP secret to add to an authenticator app (enabled after a first code)."""
    user = _user(principal)
    if user.totp_enabled:
        return _back(request, "/console/security", "info", "Your second factor is already on.")
    enrollment = accounts.start_totp(user, instance.keyring)
    return _security_page(
        request,
        session,
        principal,
        enrollment={"secret": enrollment.secret, "uri": enrollment.uri},
    )


def _pending_enrollment(user: User, instance: Instance) -> dict[str, str] | None:
    """Return the secret waiting for its first code again (after a wrong code)."""
    if user.totp_enabled or user.totp_secret is None:
        return None
    try:
        raw = read_secret(user, "totp_secret", ring=instance.keyring)
    except DecryptionError:
        return None
    if raw is None:
        return None
    secret = raw.decode()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=accounts.TOTP_ISSUER)
    return {"secret": secret, "uri": uri}


@router.post("/console/security/totp/confirm")
def totp_confirm(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    code: Annotated[str, Form()] = "",
) -> Response:
    """Turn the second factor on with a first code; show the recovery codes once."""
    user = _user(principal)
    if user.totp_enabled:
        return _back(request, "/console/security", "info", "Your second factor is already on.")
    try:
        codes = console_service.confirm_second_factor(
            session,
            keyring=instance.keyring,
            user=user,
            code=code[:20],
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        return _security_page(
            request,
            session,
            principal,
            status_code=422,
            errors=_field_errors(err),
            enrollment=_pending_enrollment(user, instance),
        )
    return _security_page(request, session, principal, recovery_codes=codes)


def _password_errors(err: SpecValidationError, field: str) -> dict[str, str]:
    """Every policy problem of a new password, on the form's ``field``."""
    problems = [item.message for item in err.errors if item.field == "password"]
    return {field: "; ".join(problems) or err.message}


@router.post("/console/security/password")
def change_password(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    """Change your password after re-entering it; your other sessions end, this one rotates."""
    user = _user(principal)
    limit_request(request, None, user_id=user.id, name="signin")
    errors: dict[str, str] = {}
    if len(current_password) > MAX_PASSWORD:
        errors["current_password"] = "the current password is not correct"  # noqa: S105
    elif len(new_password) > MAX_PASSWORD:
        errors["new_password"] = f"expected at most {MAX_PASSWORD} characters"
    elif new_password != confirm_password:
        errors["confirm_password"] = "the two new passwords are not the same"  # noqa: S105
    else:
        try:
            replacement = manage.change_password(
                session,
                hashing=instance.hashing,
                csrf=instance.csrf,
                user=user,
                current_password=current_password,
                new_password=new_password,
                current=principal.web_session,
                actor=principal.actor(address),
            )
        except AuthenticationError as err:
            errors["current_password"] = err.message
        except SpecValidationError as err:
            errors = _password_errors(err, "new_password")
        else:
            response = _back(
                request,
                "/console/security",
                "success",
                "Your password is changed. Your other sessions were signed out.",
            )
            if replacement is not None:
                session_form_token(request, replacement.row)
                _set_cookie(request, response, replacement.token)
            return response
    return _security_page(request, session, principal, status_code=422, errors=errors)


@router.post("/console/security/totp/disable")
def totp_disable(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: SignedIn,
    password: Annotated[str, Form()] = "",
) -> Response:
    """Turn your second factor off after re-entering your password (unless it is required)."""
    user = _user(principal)
    if not user.totp_enabled:
        return _back(request, "/console/security", "info", "Your second factor is already off.")
    limit_request(request, None, user_id=user.id, name="signin")
    try:
        console_service.disable_second_factor(
            session,
            hashing=instance.hashing,
            user=user,
            password=password[: MAX_PASSWORD + 1],
            actor=principal.actor(address),
        )
    except SpecValidationError as err:
        errors = {"totp_password": "; ".join(_field_errors(err).values())}
        return _security_page(request, session, principal, status_code=422, errors=errors)
    except PermissionDeniedError as err:
        return _security_page(
            request, session, principal, status_code=403, errors={"totp_off": err.message}
        )
    return _back(
        request,
        "/console/security",
        "success",
        "Your second factor is off: signing in needs only your password now.",
    )


@router.post("/console/security/sessions/{session_id}/revoke")
def revoke_session(
    session_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: SignedIn,
) -> Response:
    """Revoke one of your own sessions (this one signs you out)."""
    manage.revoke_own_session(
        session, user=_user(principal), session_id=session_id, actor=principal.actor(address)
    )
    if principal.web_session is not None and principal.web_session.id == session_id:
        response = _back(request, "/sign-in", "success", "This session was ended.")
        response.delete_cookie(session_cookie_name(request), path="/")
        return response
    return _back(request, "/console/security", "success", "Session ended.")


@router.post("/console/security/tokens")
def create_token(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("tokens:manage")],
    name: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
    expires: Annotated[str, Form()] = "",
) -> Response:
    """Create an API token with at most your own permissions (its secret is shown once)."""
    chosen = list(permissions or [])
    form: dict[str, Any] = {"token_name": name[:120], "token_permissions": chosen}
    form["token_expires"] = expires[:10]
    errors: dict[str, str] = {}
    day = _parse_date(expires, "token_expires", errors)
    if day is not None and _end_of_day(day) <= utcnow():
        errors["token_expires"] = "expected a date in the future"  # noqa: S105  # a message
    if not errors:
        try:
            issued = manage.create_token(
                principal.scope(session),
                grant=principal.acting_grant(),
                name=name,
                permissions=chosen,
                expires_at=_end_of_day(day) if day else None,
                actor=principal.actor(address),
            )
        except SpecValidationError as err:
            errors = {f"token_{key}": message for key, message in _field_errors(err).items()}
        except PermissionDeniedError as err:
            errors = {"token_permissions": err.message}
        else:
            return _security_page(
                request,
                session,
                principal,
                new_token={"name": issued.row.name, "secret": issued.secret},
            )
    return _security_page(request, session, principal, status_code=422, errors=errors, form=form)


@router.post("/console/security/tokens/{token_id}/revoke")
def revoke_token(
    token_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("tokens:manage")],
) -> Response:
    """Revoke an API token."""
    manage.revoke_token(principal.scope(session), token_id=token_id, actor=principal.actor(address))
    return _back(request, "/console/security", "success", "Token revoked.")


# --- storage --------------------------------------------------------------------------------


def _storage_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    scope = principal.scope(session)
    rows = []
    for row in scope.list(StorageConfig, order_by=StorageConfig.name):
        try:
            stored = read_secret_json(row, "credentials") or {}
        except DecryptionError:
            stored = None
        rows.append(
            {
                "row": row,
                "label": PROVIDER_LABELS.get(row.provider, row.provider),
                # Names of the stored credentials only; their values are never shown.
                "credentials": sorted(stored) if isinstance(stored, dict) else None,
                "settings": {k: v for k, v in row.settings.items() if v not in (None, "")},
            }
        )
    return _page(
        request,
        session,
        principal,
        "console/storage.html",
        active="storage",
        status_code=status_code,
        rows=rows,
        providers=PROVIDER_LABELS,
        errors=errors or {},
        form=form or {},
    )


@router.get("/console/storage")
def storage(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("storage:read")],
) -> Response:
    """The storage connections, with their status."""
    return _storage_page(request, session, principal)


@router.post("/console/storage")
def add_storage(
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("storage:manage")],
    provider: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    path: Annotated[str, Form()] = "",
    bucket: Annotated[str, Form()] = "",
    region: Annotated[str, Form()] = "",
    endpoint: Annotated[str, Form()] = "",
    access_key_id: Annotated[str, Form()] = "",
    secret_access_key: Annotated[str, Form()] = "",
    client_id: Annotated[str, Form()] = "",
    client_secret: Annotated[str, Form()] = "",
    app_key: Annotated[str, Form()] = "",
    app_secret: Annotated[str, Form()] = "",
    backup_strategy: Annotated[str, Form()] = "local",
    retention_days: Annotated[str, Form()] = "365",
) -> Response:
    """Add a connection; credentials are stored encrypted and never shown again."""
    values = {
        "name": name,
        "path": path,
        "bucket": bucket,
        "region": region,
        "endpoint": endpoint,
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "client_id": client_id,
        "client_secret": client_secret,
        "app_key": app_key,
        "app_secret": app_secret,
    }
    # What the form shows again after an error: never the secrets.
    form = {k: v[:300] for k, v in values.items() if k not in STORAGE_SECRETS}
    form.update(
        provider=provider[:20],
        backup_strategy=backup_strategy[:20],
        retention_days=retention_days[:10],
    )
    try:
        row = console_service.add_storage(
            principal.scope(session),
            provider=provider,
            fields={console_service.camel(k): v for k, v in values.items()},
            backup_strategy=backup_strategy,
            retention_days=retention_days,
            actor=principal.actor(address),
            may_use_server_paths=principal.can("org:create"),
        )
    except SpecValidationError as err:
        return _storage_page(
            request, session, principal, status_code=422, errors=_field_errors(err), form=form
        )
    except ConflictError as err:
        return _storage_page(
            request, session, principal, status_code=409, errors={"name": err.message}, form=form
        )
    return _back(
        request,
        "/console/storage",
        "success",
        f"Storage connection {row.name!r} added; its credentials are stored encrypted.",
    )


@router.post("/console/storage/{storage_id}/test")
def storage_test(
    storage_id: str,
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    address: ClientAddress,
    principal: Annotated[Principal, require("storage:manage")],
) -> Response:
    """Test a connection and report the result honestly."""
    result = console_service.check_storage(
        principal.scope(session),
        storage_id=storage_id,
        data_dir=instance.settings.data_dir,
        actor=principal.actor(address),
        allow_private_endpoints=instance.settings.storage_private_endpoints,
    )
    kind = {True: "success", False: "error", None: "info"}[result.ok]
    prefix = {True: "Connection works: ", False: "Connection failed: ", None: "Not tested: "}
    return _back(request, "/console/storage", kind, prefix[result.ok] + result.message + ".")


@router.post("/console/storage/{storage_id}/remove")
def storage_remove_confirm(
    storage_id: str,
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("storage:manage")],
) -> Response:
    """Ask to confirm removing a connection (nothing changes yet)."""
    row = principal.scope(session).get(StorageConfig, storage_id)
    return _page(
        request,
        session,
        principal,
        "console/storage_remove.html",
        active="storage",
        row=row,
        label=PROVIDER_LABELS.get(row.provider, row.provider),
    )


@router.post("/console/storage/{storage_id}/remove/confirm")
def storage_remove(
    storage_id: str,
    request: Request,
    session: DbSession,
    address: ClientAddress,
    principal: Annotated[Principal, require("storage:manage")],
) -> Response:
    """Remove a connection and its stored credentials (files in it stay where they are)."""
    row = console_service.remove_storage(
        principal.scope(session), storage_id=storage_id, actor=principal.actor(address)
    )
    return _back(
        request,
        "/console/storage",
        "success",
        f"Storage connection {row.name!r} removed; its stored credentials are gone.",
    )


# --- audit log ------------------------------------------------------------------------------


def _audit_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    actor: str = "",
    action: str = "",
    date_from: str = "",
    date_to: str = "",
    page: str = "1",
    report: audit.VerifyReport | None = None,
) -> Response:
    scope = principal.scope(session)
    errors: dict[str, str] = {}
    start = _parse_date(date_from, "from", errors)
    end = _parse_date(date_to, "to", errors)
    try:
        number = max(1, int(page))
    except ValueError:
        number = 1
    stmt = select(AuditLog).where(AuditLog.chain == scope.organization_id)
    if actor.strip():
        stmt = stmt.where(AuditLog.actor_id == actor.strip()[:40])
    if action.strip():
        stmt = stmt.where(AuditLog.action.startswith(action.strip()[:80], autoescape=True))
    if start is not None:
        stmt = stmt.where(AuditLog.created_at >= datetime.combine(start, time.min, tzinfo=UTC))
    if end is not None:
        stmt = stmt.where(
            AuditLog.created_at < datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
        )
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    pages = max(1, math.ceil(total / AUDIT_PAGE_SIZE))
    number = min(number, pages)
    rows = session.scalars(
        stmt.order_by(AuditLog.seq.desc())
        .offset((number - 1) * AUDIT_PAGE_SIZE)
        .limit(AUDIT_PAGE_SIZE)
    ).all()
    filters = {"actor": actor[:40], "action": action[:80], "from": date_from[:10]}
    filters["to"] = date_to[:10]
    query = "&".join(f"{key}={quote(value)}" for key, value in filters.items() if value)
    last = session.scalar(
        select(func.max(AuditLog.seq)).where(AuditLog.chain == scope.organization_id)
    )
    return _page(
        request,
        session,
        principal,
        "console/audit.html",
        active="audit",
        status_code=422 if errors else 200,
        rows=rows,
        total=total,
        page=number,
        pages=pages,
        filters=filters,
        query=query,
        errors=errors,
        who=actors(session, scope.organization_id, list(rows)),
        report=report,
        chain_rows=last or 0,
    )


@router.get("/console/audit")
def audit_log(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("audit:read")],
    actor: str = "",
    action: str = "",
    date_from: Annotated[str, Query(alias="from")] = "",
    date_to: Annotated[str, Query(alias="to")] = "",
    page: str = "1",
) -> Response:
    """The organization's audit log: filters, paging, export and chain verification."""
    return _audit_page(
        request,
        session,
        principal,
        actor=actor,
        action=action,
        date_from=date_from,
        date_to=date_to,
        page=page,
    )


@router.post("/console/audit/verify")
def audit_verify(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: Annotated[Principal, require("audit:read")],
) -> Response:
    """Verify the organization's chain (hashes, links and signed checkpoints)."""
    scope = principal.scope(session)
    # verify() reads in its own transaction; it writes nothing, so it never waits on ours.
    report = audit.verify(
        instance.db, audit.verifying_key(instance.settings), chain=scope.organization_id
    )
    return _audit_page(request, session, principal, report=report)


@router.get("/console/audit/export")
def audit_export(
    request: Request,
    session: DbSession,
    instance: InstanceDep,
    principal: Annotated[Principal, require("audit:export")],
    fmt: Annotated[str, Query(alias="format")] = "csv",
) -> Response:
    """Download the organization's chain as CSV or JSON lines (with a signed checkpoint)."""
    scope = principal.scope(session)
    if fmt not in ("csv", "jsonl"):
        return _back(request, "/console/audit", "error", "Choose CSV or JSONL for the export.")
    has_rows = session.scalar(
        select(AuditLog.id).where(AuditLog.chain == scope.organization_id).limit(1)
    )
    if has_rows is None:
        return _back(request, "/console/audit", "info", "Nothing to export yet.")
    org = session.get(Organization, scope.organization_id)
    slug = org.slug if org else "organization"
    # export() signs a checkpoint in its own write transaction: end this request's (read)
    # transaction first, so a pending touch of the session row cannot hold SQLite's write
    # lock against it. Nothing below uses the request's session.
    session.commit()
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115  # closed by the stream below
        max_size=EXPORT_SPOOL_BYTES, mode="w+", encoding="utf-8", newline=""
    )
    try:
        audit.export(
            instance.db,
            instance.settings,
            chain=scope.organization_id,
            fmt="csv" if fmt == "csv" else "jsonl",
            out=cast(TextIO, spool),
        )
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks() -> Iterator[str]:
        try:
            while chunk := spool.read(64 * 1024):
                yield chunk
        finally:
            spool.close()

    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        chunks(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="audit-{slug}-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


__all__ = [
    "activity_chart",
    "actors",
    "health_bars",
    "human_bytes",
    "human_details",
    "human_duration",
    "router",
]
