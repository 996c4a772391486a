"""``GET /metrics``: every layer's series in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from paulyops.core import metrics
from paulyops.web.api.health import is_operator
from paulyops.web.deps import ClientAddress, InstanceDep, Public

router = APIRouter(tags=["metrics"])
REFUSED = (
    "/metrics needs the metrics:read permission (an API token of a platform administrator) "
    "or a request from this machine\n"
)


@router.get(
    "/metrics",
    dependencies=[Public],
    response_class=Response,
    responses={
        200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "the series"},
        403: {"content": {"text/plain": {}}, "description": "neither loopback nor metrics:read"},
    },
)
def scrape(request: Request, instance: InstanceDep, address: ClientAddress) -> Response:
    """Expose the metrics to loopback callers (no proxy in front) and ``metrics:read`` holders.

    A platform administrator makes a scraper's API token limited to ``metrics:read``.
    The pool and health numbers are read now; the health ones come from the background
    monitor's latest report (no check runs for a scrape).

    Anyone else gets 403 with a one-line plain-text reason (what a scraper or ``curl``
    shows), not the console's HTML error page.
    """
    if not is_operator(request, instance, address, "metrics:read"):
        return Response(
            REFUSED, status_code=403, media_type="text/plain", headers={"Cache-Control": "no-store"}
        )
    collector = metrics.InstanceCollector(
        # Details stay in process: the collector exports statuses and the sandbox mode only.
        instance.db,
        lambda: instance.cached_health_report(include_details=True),
    )
    return Response(
        metrics.render(collector),
        media_type=metrics.CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )
