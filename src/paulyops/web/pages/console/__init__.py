"""The console after setup: sign-in, home, people, security, storage, agents, marketplace, audit.

Server-rendered pages that work without JavaScript. Each route declares its access rule
once (``require(permission)``, ``SignedIn`` for the user's own account, ``Public`` for the
sign-in pages); actions the user may not take are not rendered, and forging one anyway is
refused by the guard (403). Every form carries the session's CSRF token, or a pre-session
token before anyone is signed in.

Writes go through the domain services' use cases (:mod:`paulyops.services.auth`,
:mod:`paulyops.services.storage`, ...) inside the request's one transaction — a write
transaction for every POST — so a page never opens a second writer (SQLite would wait on
itself). Results are reported with flash messages after a redirect; a secret that is shown
once (an invitation link, an API token, recovery codes) is rendered in the POST's own
response instead, so it never travels in a cookie.
"""

from __future__ import annotations

from fastapi import APIRouter

from paulyops.web.pages.console import (
    agents,
    audit,
    auth,
    home,
    invitations,
    marketplace,
    members,
    org,
    roles,
    security,
    storage,
)
from paulyops.web.pages.console.views import (
    activity_chart,
    health_bars,
    human_bytes,
    human_details,
    human_duration,
)

router = APIRouter(include_in_schema=False)
# Registration order as before the split: static paths before parametrized ones.
for _module in (
    auth,
    home,
    org,
    members,
    invitations,
    roles,
    security,
    storage,
    agents,
    marketplace,
    audit,
):
    router.include_router(_module.router)

__all__ = [
    "activity_chart",
    "health_bars",
    "human_bytes",
    "human_details",
    "human_duration",
    "router",
]
