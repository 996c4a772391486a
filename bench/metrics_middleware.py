"""The cost of the metrics middleware per request, in process (no network, no server).

Calls the ASGI stack directly, ``--requests`` times per measurement, alternating with and
without the request metrics in the same round, for:

* ``bare``  a one-route ASGI app answering livez's body, with and without
  :class:`~paulyops.web.metrics.MetricsMiddleware` (the metrics as a layer of their own);
* ``app``   the whole PaulyOps app on ``GET /api/livez``, its correlation-id middleware
  with and without the :class:`~paulyops.web.metrics.RequestMetrics` recorder (as shipped).

Prints the median microseconds per request of each side and their difference. Measures
only; no asserts.

    .venv/bin/python bench/metrics_middleware.py [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paulyops.web.metrics import MetricsMiddleware
from paulyops.web.middleware import CorrelationIdMiddleware

BODY = b'{"status":"ok","version":"0.1.0"}'


class _Route:
    path = "/api/livez"


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer livez's body, noting the route as Starlette's router does."""
    scope["route"] = _Route
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/livez",
        "raw_path": b"/api/livez",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_message: Message) -> None:
    return None


async def per_request(app: ASGIApp, requests: int) -> float:
    """Return microseconds per request of ``app`` over ``requests`` calls."""
    start = time.perf_counter()
    for _ in range(requests):
        await app(_scope(), _receive, _send)
    return (time.perf_counter() - start) / requests * 1e6


def paulyops_apps(root: Path) -> tuple[Any, Any, Any]:
    """Return (instance, app with the middleware, app without it) on one started instance."""
    from paulyops.core.instance import Instance
    from paulyops.core.settings import load_settings, new_encryption_key, new_secret
    from paulyops.web.app import create_app

    environ = {
        "PAULYOPS_ENV": "test",
        "JWT_SECRET": new_secret(),
        "SESSION_SECRET": new_secret(),
        "ENCRYPTION_KEY": new_encryption_key(),
        "PAULYOPS_INSTANCE_KEY": new_encryption_key(),
    }
    settings = load_settings(root=root, environ=environ)
    instance = Instance(settings)
    instance.start(background=False)
    with_metrics = create_app(settings, instance=instance)
    without = create_app(settings, instance=instance)
    for middleware in without.user_middleware:
        if middleware.cls is CorrelationIdMiddleware:
            middleware.kwargs["recorder"] = None
    return instance, with_metrics, without


async def measure(requests: int, rounds: int) -> None:
    """Print the paired medians for the bare app and the PaulyOps app."""
    with tempfile.TemporaryDirectory() as tmp:
        instance, app_with, app_without = paulyops_apps(Path(tmp))
        try:
            pairs = {
                "bare": (MetricsMiddleware(bare_app), bare_app),
                "app": (app_with, app_without),
            }
            for name, (with_mw, without_mw) in pairs.items():
                await per_request(with_mw, 200)  # warm up: build stacks, label children
                await per_request(without_mw, 200)
                on, off = [], []
                for _ in range(rounds):
                    off.append(await per_request(without_mw, requests))
                    on.append(await per_request(with_mw, requests))
                a, b = statistics.median(on), statistics.median(off)
                print(
                    f"{name:5} with {a:7.1f} µs/request   without {b:7.1f} µs/request   "
                    f"added {a - b:5.1f} µs ({(a - b) / b * 100:4.1f} %)"
                )
        finally:
            instance.close()


def main() -> None:
    """Parse the options and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians count")
    args = parser.parse_args()
    asyncio.run(measure(args.requests, args.rounds))


if __name__ == "__main__":
    main()
