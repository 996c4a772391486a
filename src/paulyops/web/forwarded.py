"""Forwarded headers: the client's address and scheme, believed only from trusted proxies.

Behind a reverse proxy every request arrives from the proxy, over plain HTTP. The proxy
says who the client was and how it connected in ``X-Forwarded-For`` and
``X-Forwarded-Proto``; a client can send those headers too, so they count only when the
direct peer is one of ``PAULYOPS_TRUSTED_PROXIES``. This middleware is the one place that
reads them (uvicorn's own ``proxy_headers`` is off): it rewrites the ASGI scope's
``client`` and ``scheme``, so rate-limit keys, audit addresses, the loopback check of
``/api/healthz``, ``Secure`` cookies and HSTS all see the same answer.

.. versionadded:: 0.2
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from paulyops.core.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The app serves no websockets, so only HTTP requests are rewritten.
_SCHEMES = frozenset({"http", "https"})


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Parse ``PAULYOPS_TRUSTED_PROXIES`` entries (addresses or CIDR networks).

    Raises:
        ConfigError: an entry is neither, naming the setting and the entry.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"PAULYOPS_TRUSTED_PROXIES: expected addresses or CIDR networks like "
                f"'127.0.0.1' or '10.0.0.0/8', got {entry!r}"
            ) from None
    return tuple(networks)


def is_in_networks(address: str, networks: Iterable[Network]) -> bool:
    """Whether ``address`` is an IP address inside one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_client(direct: str, forwarded_for: str, networks: Iterable[Network]) -> str:
    """Return the client address a request from the trusted proxy ``direct`` came from.

    The right-most hop of ``X-Forwarded-For`` that is not a trusted proxy is the client:
    each proxy appends the address it saw, so anything left of that could have been
    written by the client itself. When every hop is trusted, the left-most is the client;
    with no header, the proxy itself is.
    """
    networks = tuple(networks)
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_in_networks(hop, networks):
            return hop
    return hops[0] if hops else direct


class ForwardedHeadersMiddleware:
    """Set the scope's client address and scheme from a trusted proxy's forwarded headers.

    Args:
        app: the ASGI app to wrap.
        trusted: addresses or CIDR networks of the proxies to believe; empty believes none.

    Raises:
        ConfigError: an entry of ``trusted`` is not an address or network.
    """

    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks = parse_networks(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if (
            scope["type"] == "http"
            and self.networks
            and peer
            and is_in_networks(peer[0], self.networks)
        ):
            scope = self._rewritten(scope, peer[0])
        await self.app(scope, receive, send)

    def _rewritten(self, scope: Scope, direct: str) -> Scope:
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1")
        scope = dict(scope)
        if forwarded_for:
            client = forwarded_client(direct, ",".join(forwarded_for), self.networks)
            scope["client"] = (client, 0)
        if proto:
            # The right-most value is the one the nearest (trusted) proxy wrote.
            scheme = proto.split(",")[-1].strip().lower()
            if scheme in _SCHEMES:
                scope["scheme"] = scheme
        return scope


def install_forwarded_headers(app: Starlette, *, trusted: Iterable[str]) -> None:
    """Wrap ``app``'s whole middleware stack in :class:`ForwardedHeadersMiddleware`.

    It must sit outside everything that reads the address or scheme, including the
    security headers (HSTS goes out on https only) that
    :func:`~paulyops.web.limits.install_security_headers` puts outside Starlette's error
    middleware: call this after that one.

    Raises:
        ConfigError: an entry of ``trusted`` is not an address or network.
    """
    trusted = tuple(trusted)
    parse_networks(trusted)  # refuse a bad setting when the app is built, not per request
    build = app.build_middleware_stack

    def build_with_forwarded() -> ASGIApp:
        return ForwardedHeadersMiddleware(build(), trusted=trusted)

    # As install_security_headers: Starlette builds the stack lazily through this method.
    app.build_middleware_stack = build_with_forwarded  # type: ignore[method-assign]


__all__ = [
    "ForwardedHeadersMiddleware",
    "forwarded_client",
    "install_forwarded_headers",
    "is_in_networks",
    "parse_networks",
]
