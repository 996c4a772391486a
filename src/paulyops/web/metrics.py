"""HTTP request metrics: counts by route template and status, with their latency."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paulyops.core import metrics

# Requests no route matched (404s of scanners, typos) share one label: raw paths would
# create a series per probed URL.
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Route areas that are plumbing, not a product feature someone uses.
_NOT_FEATURES = frozenset({"health", "metrics"})
# Pages have no OpenAPI tag: their first path segment names the area.
_PAGE_AREAS = frozenset({"console", "setup", "sign-in", "invitations"})


def feature_of(route: Any) -> str | None:
    """Return the product feature a route belongs to: its first OpenAPI tag or page area.

    ``None`` for plumbing (health, metrics, static files) and unmatched requests.
    """
    tags = getattr(route, "tags", None)
    if tags:
        tag = str(tags[0])
        return None if tag in _NOT_FEATURES else tag
    path = getattr(route, "path", "")
    first = path.strip("/").split("/", 1)[0] if isinstance(path, str) else ""
    return first if first in _PAGE_AREAS else None


def route_template(scope: Scope) -> str:
    """Return the template of the route that answered (``/api/tokens/{token_id}``).

    The router stores the matched route in the scope; its ``path`` is the template, with
    the parameters' names, never their values.
    """
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RequestMetrics:
    """Count each HTTP request and observe its duration, labelled by route template.

    A successful answer (below 400) of a route that belongs to a product feature also
    counts one use of that feature (``paulyops_feature_usage_total``): per feature, never
    per person. :class:`~paulyops.web.middleware.CorrelationIdMiddleware` calls
    :meth:`observe` with the status and duration it measures anyway, so metrics add no
    ASGI layer of their own; :class:`MetricsMiddleware` is the same as a middleware.
    Cheap on purpose: dictionary lookups and two or three counter updates per request.
    """

    def __init__(self) -> None:
        # Children are cached per label tuple: ``labels()`` takes a lock and builds a key.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}
        self._features: dict[str, Any] = {}  # a counter child, or None: not a feature

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Record one answered request of ``scope``."""
        method = scope.get("method", "GET")
        if method not in _METHODS:
            method = "other"
        route = route_template(scope)
        key = (method, route, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = metrics.HTTP_REQUESTS.labels(method, route, str(status))
        counter.inc()
        hkey = (method, route)
        histogram = self._histograms.get(hkey)
        if histogram is None:
            histogram = self._histograms[hkey] = metrics.HTTP_DURATION.labels(method, route)
        histogram.observe(seconds)
        if status < 400 and route != UNMATCHED:
            self._count_feature(route, scope.get("route"))

    def _count_feature(self, template: str, route: Any) -> None:
        if template not in self._features:
            feature = feature_of(route)
            self._features[template] = (
                metrics.FEATURE_USAGE.labels(metrics.safe_label(feature)) if feature else None
            )
        child = self._features[template]
        if child is not None:
            child.inc()


class MetricsMiddleware:
    """:class:`RequestMetrics` as an ASGI middleware of its own (for apps without ours)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.recorder = RequestMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.recorder.observe(scope, status, time.perf_counter() - start)


__all__ = ["UNMATCHED", "MetricsMiddleware", "RequestMetrics", "feature_of", "route_template"]
