"""``GET /metrics``: every layer's series in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from paulyops.core import metrics
from paulyops.core.errors import PermissionDeniedError
from paulyops.web.api.health import is_operator
from paulyops.web.deps import ClientAddress, InstanceDep, Public

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    dependencies=[Public],
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "the series"}},
)
def scrape(request: Request, instance: InstanceDep, address: ClientAddress) -> Response:
    """Expose the metrics to loopback callers (no proxy in front) and ``metrics:read`` holders.

    A platform administrator makes a scraper's API token limited to ``metrics:read``.
    The pool and health numbers are read now; the health ones come from the background
    monitor's latest report (no check runs for a scrape).

    Raises:
        PermissionDeniedError: anyone else (HTTP 403).
    """
    if not is_operator(request, instance, address, "metrics:read"):
        raise PermissionDeniedError(
            "/metrics needs the metrics:read permission (an API token of a platform "
            "administrator), or a request from this machine"
        )
    collector = metrics.InstanceCollector(
        instance.db, lambda: instance.cached_health_report(include_details=False)
    )
    return Response(
        metrics.render(collector),
        media_type=metrics.CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )
