"""``paulyops doctor``: the production checklist, walked against this instance.

Each check answers one question of the brief's production checklist (environment,
migrations, Redis, TLS, security headers, rate limiting, audit logging, health checks,
backups, monitoring, secrets and file modes, sandbox layers) with ``pass``, ``warn`` or
``fail`` and, unless it passed, the exact fix. :func:`instance_checks` looks at the
configured instance (its settings, files and database); :func:`server_checks` asks a
running server over HTTP(S), as a browser would. A ``fail`` is something to fix before
going live; a ``warn`` is fine for a trial on one machine.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from paulyops.core.settings import ENV_FILE_NAME, weak_secrets

if TYPE_CHECKING:
    import httpx

    from paulyops.core.instance import Instance
    from paulyops.core.settings import Settings

KEY_ROTATION_DAYS = 90
BACKUP_MAX_AGE = timedelta(days=7)
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class Status(StrEnum):
    """The outcome of one check."""

    PASS = "pass"  # noqa: S105  # a check outcome, not a password
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist: its area, what was found and, unless it passed, the fix."""

    area: str
    status: Status
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``--json`` and the console page)."""
        out = asdict(self)
        out["status"] = self.status.value
        return out


def _ok(area: str, message: str) -> Check:
    return Check(area, Status.PASS, message)


# --- the configured instance -------------------------------------------------------------


def environment(settings: Settings) -> list[Check]:
    """Production mode, and a public URL that links and cookies can use."""
    out = []
    if settings.is_production:
        out.append(_ok("environment", "PAULYOPS_ENV=production"))
    else:
        out.append(
            Check(
                "environment",
                Status.WARN,
                f"PAULYOPS_ENV={settings.env.value}: development defaults (console logs, "
                "no production checks)",
                f"add PAULYOPS_ENV=production to {settings.root / ENV_FILE_NAME}",
            )
        )
    if not settings.public_url:
        level = Status.FAIL if settings.is_production else Status.WARN
        out.append(
            Check(
                "environment",
                level,
                "PAULYOPS_PUBLIC_URL is not set: links in e-mails point at the bind address",
                "add PAULYOPS_PUBLIC_URL=https://ops.example.com (the address users open)",
            )
        )
    return out


def tls(settings: Settings) -> list[Check]:
    """The public URL is https (TLS ends at a reverse proxy in front of PaulyOps)."""
    if not settings.public_url:
        return []
    parts = urlsplit(settings.public_url)
    if parts.scheme == "https":
        return [_ok("tls", f"public URL {settings.public_url} is https")]
    level = Status.WARN if parts.hostname in _LOOPBACK else Status.FAIL
    return [
        Check(
            "tls",
            level,
            f"public URL {settings.public_url} is not https: passwords would cross the "
            "network in clear",
            "put Caddy or nginx in front with TLS (docs/operations.md, 'TLS with a reverse "
            "proxy') and set PAULYOPS_PUBLIC_URL=https://...",
        )
    ]


def secrets_and_files(settings: Settings) -> list[Check]:
    """Strong secrets, and files only their owner can read."""
    out = []
    weak = weak_secrets(settings)
    if weak:
        out.append(
            Check(
                "secrets",
                Status.FAIL,
                f"missing or weak: {', '.join(weak)}",
                "run `paulyops validate env` for details; `paulyops serve` generates what "
                "is missing",
            )
        )
    else:
        out.append(_ok("secrets", "every secret is set and long enough"))
    for path, wanted in (
        (settings.root / ENV_FILE_NAME, 0o600),
        (settings.data_dir, 0o700),
        (settings.data_dir / "paulyops.db", 0o600),
    ):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            out.append(
                Check(
                    "file modes",
                    Status.FAIL,
                    f"{path} is readable by other users (mode {mode:o})",
                    f"chmod {wanted:o} {path}",
                )
            )
    if not any(c.area == "file modes" for c in out):
        out.append(_ok("file modes", "secrets and data readable by their owner only"))
    since = _key_since(settings)
    if since is not None and datetime.now(UTC) - since > timedelta(days=KEY_ROTATION_DAYS):
        age = (datetime.now(UTC) - since).days
        out.append(
            Check(
                "secrets",
                Status.WARN,
                f"the encryption key is {age} days old (rotate every {KEY_ROTATION_DAYS})",
                "run `paulyops keys rotate`, then `paulyops keys reencrypt`",
            )
        )
    return out


def _key_since(settings: Settings) -> datetime | None:
    from paulyops.core.security.keyfile import active_key_since

    return active_key_since(settings)


def services(settings: Settings) -> list[Check]:
    """PostgreSQL and Redis for production; what the embedded defaults mean."""
    out = []
    if settings.database_url:
        out.append(_ok("database", "PostgreSQL (DATABASE_URL)"))
    else:
        level = Status.WARN
        out.append(
            Check(
                "database",
                level,
                "the embedded SQLite file: fine on one machine, not for several servers",
                "for production set DATABASE_URL=postgresql://... (docs/configuration.md)",
            )
        )
    if settings.redis_url:
        out.append(_ok("redis", "Redis (REDIS_URL): rate limits and sessions shared"))
    else:
        out.append(
            Check(
                "redis",
                Status.WARN,
                "no REDIS_URL: rate limits, CSRF tokens and sign-in state live in one process",
                "for more than one server process set REDIS_URL=redis://...",
            )
        )
    return out


def rate_limiting(settings: Settings) -> list[Check]:
    """Rate limits apply to every caller except allow-listed addresses."""
    if settings.ratelimit_allowlist:
        return [
            Check(
                "rate limiting",
                Status.WARN,
                f"{len(settings.ratelimit_allowlist)} address(es) bypass every limit "
                "(PAULYOPS_RATELIMIT_ALLOWLIST)",
                "keep only monitors there; remove anything else from the allow-list",
            )
        ]
    return [_ok("rate limiting", "on for every route (no allow-listed addresses)")]


def monitoring(settings: Settings) -> list[Check]:
    """Someone hears about security events and health changes."""
    if settings.alert_webhook_url:
        return [_ok("monitoring", "security events go to PAULYOPS_ALERT_WEBHOOK_URL")]
    return [
        Check(
            "monitoring",
            Status.WARN,
            "no alert webhook: security events are only in the logs",
            "set PAULYOPS_ALERT_WEBHOOK_URL to a chat or incident webhook, and point an "
            "uptime monitor at /api/healthz",
        )
    ]


def backups(settings: Settings, *, now: datetime | None = None) -> list[Check]:
    """A configuration backup exists and is recent."""
    folder = settings.root / "backups"
    archives = (
        sorted(folder.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    )
    fix = "run `paulyops backup config --include-secrets` and copy the archive off this machine"
    if not archives:
        return [Check("backups", Status.WARN, f"no configuration backup in {folder}", fix)]
    newest = archives[-1]
    age = (now or datetime.now(UTC)) - datetime.fromtimestamp(newest.stat().st_mtime, UTC)
    if age > BACKUP_MAX_AGE:
        return [
            Check(
                "backups",
                Status.WARN,
                f"the newest backup {newest.name} is {age.days} days old",
                fix,
            )
        ]
    return [_ok("backups", f"configuration backed up {newest.name}")]


def sandbox() -> list[Check]:
    """The agent sandbox's layers: bubblewrap and unprivileged user namespaces."""
    out = []
    if shutil.which("bwrap"):
        out.append(_ok("sandbox", "bubblewrap installed"))
    else:
        out.append(
            Check(
                "sandbox",
                Status.WARN,
                "bubblewrap (bwrap) is not installed: agents would run without their sandbox",
                "install it: `apt install bubblewrap` (Debian, Ubuntu) or `dnf install bubblewrap`",
            )
        )
    userns = Path("/proc/sys/user/max_user_namespaces")
    try:
        allowed = int(userns.read_text().strip()) > 0
    except (OSError, ValueError):
        allowed = True  # not Linux, or not readable: nothing to say
    if not allowed:
        out.append(
            Check(
                "sandbox",
                Status.WARN,
                "user namespaces are disabled (user.max_user_namespaces = 0)",
                "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)",
            )
        )
    if os.geteuid() == 0:
        out.append(
            Check(
                "sandbox",
                Status.WARN,
                "this command runs as root; run the server as its own user",
                "`paulyops service install` sets up a dedicated user (docs/operators/service.md)",
            )
        )
    return out


def database_state(instance: Instance) -> list[Check]:
    """The schema is current, the health checks pass, every audit chain verifies."""
    from paulyops.core.db import migrate
    from paulyops.services import audit

    out = []
    if instance.startup_error:
        return [
            Check(
                "database",
                Status.FAIL,
                f"cannot reach the database: {instance.startup_error}",
                "check DATABASE_URL and that the server is running (`paulyops health`)",
            )
        ]
    if migrate.is_up_to_date(instance.db):
        out.append(_ok("migrations", "the schema is at the newest revision"))
    else:
        out.append(
            Check(
                "migrations",
                Status.FAIL,
                "the schema is behind this version of PaulyOps",
                "run `paulyops db upgrade` (a server migrates itself at start)",
            )
        )
    out += health_checks(instance.health_report(include_details=True))
    verified = audit.verify(instance.db, audit.verifying_key(instance.settings))
    if verified.is_ok:
        out.append(
            _ok("audit logging", f"{len(verified.chains)} audit chain(s) verify, hash by hash")
        )
    else:
        names = ", ".join(report.chain for report in verified.broken)
        out.append(
            Check(
                "audit logging",
                Status.FAIL,
                f"audit chain(s) do not verify: {names}",
                "run `paulyops audit verify` to see the first bad row; keep the database "
                "as it is and investigate (docs/audit.md)",
            )
        )
    return out


def health_checks(report: dict[str, Any]) -> list[Check]:
    """The health checks' verdict from a health report (fresh, or the monitor's cached one)."""
    state = str(report.get("status"))
    checks = report.get("checks", {})
    bad = [
        name
        for name, check in checks.items()
        if check.get("status") not in {"healthy", "not_configured"}
    ]
    if state == "healthy":
        return [_ok("health checks", "every health check passes")]
    level = Status.FAIL if state == "unhealthy" else Status.WARN
    return [
        Check(
            "health checks",
            level,
            f"{state}: {', '.join(bad) or 'see the report'}",
            "run `paulyops health` for each check's details",
        )
    ]


def console_checks(settings: Settings, report: dict[str, Any]) -> list[Check]:
    """What the console's home shows platform administrators: every check that reads only
    settings and files, and the health from the monitor's cached report (a page view never
    runs the database checks or verifies the audit chains: `paulyops doctor` does)."""
    return [*instance_checks(settings, None), *health_checks(report)]


def instance_checks(settings: Settings, instance: Instance | None) -> list[Check]:
    """Every check of the configured instance (``instance`` None: settings and files only)."""
    out = [
        *environment(settings),
        *tls(settings),
        *secrets_and_files(settings),
        *services(settings),
        *rate_limiting(settings),
        *monitoring(settings),
        *backups(settings),
        *sandbox(),
    ]
    if instance is not None:
        out += database_state(instance)
    return out


# --- a running server ----------------------------------------------------------------------

# What a browser should get on every page (whatever sits in front of PaulyOps).
EXPECTED_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": None,
    "content-security-policy": None,
}


def server_checks(url: str, get: Callable[[str], httpx.Response]) -> list[Check]:
    """Ask a running server at ``url``: reachable, healthy, TLS, security headers, HSTS."""
    import httpx

    base = url.rstrip("/")
    parts = urlsplit(base)
    out = []
    try:
        page = get(base + "/api/livez")
        health = get(base + "/api/healthz")
    except httpx.HTTPError as err:
        return [
            Check(
                "server",
                Status.FAIL,
                f"{base} does not answer ({type(err).__name__})",
                "start it (`paulyops serve`, or `systemctl start paulyops`) and check the "
                "address and port",
            )
        ]
    out.append(_ok("server", f"{base} answers"))
    status = _health_status(health)
    if status == "healthy":
        out.append(_ok("health checks", "/api/healthz: healthy"))
    else:
        level = Status.FAIL if status == "unhealthy" else Status.WARN
        out.append(
            Check("health checks", level, f"/api/healthz: {status}", "run `paulyops health`")
        )
    if parts.scheme == "https":
        out.append(_ok("tls", f"{base} is served over https"))
        if "strict-transport-security" in page.headers:
            out.append(_ok("security headers", "HSTS is sent"))
        else:
            out.append(
                Check(
                    "security headers",
                    Status.FAIL,
                    "no Strict-Transport-Security header over https",
                    "set PAULYOPS_TRUSTED_PROXIES to the proxy's address so PaulyOps sees "
                    "https, or add HSTS at the proxy",
                )
            )
    else:
        level = Status.WARN if parts.hostname in _LOOPBACK else Status.FAIL
        out.append(
            Check("tls", level, f"{base} is plain http", "serve it through a TLS reverse proxy")
        )
    missing = [
        name
        for name, value in EXPECTED_HEADERS.items()
        if name not in page.headers or (value and page.headers[name].lower() != value)
    ]
    if missing:
        out.append(
            Check(
                "security headers",
                Status.FAIL,
                f"missing: {', '.join(missing)}",
                "a proxy in front may strip them: pass PaulyOps' headers through",
            )
        )
    else:
        out.append(_ok("security headers", "nosniff, referrer policy and CSP are sent"))
    return out


def _health_status(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return "unhealthy"
    return str(data.get("status", "unhealthy")) if isinstance(data, dict) else "unhealthy"


def worst(checks: list[Check]) -> Status:
    """The worst status of ``checks`` (``pass`` for none)."""
    order = [Status.PASS, Status.WARN, Status.FAIL]
    return max((c.status for c in checks), key=order.index, default=Status.PASS)


__all__ = [
    "Check",
    "Status",
    "console_checks",
    "health_checks",
    "instance_checks",
    "server_checks",
    "worst",
]
