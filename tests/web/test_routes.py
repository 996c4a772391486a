"""Every route declares exactly one access rule (public, a permission, or the setup token)."""

from __future__ import annotations

from fastapi.routing import APIRoute

from paulyops.web.deps import ACCESS_ATTR


def _access_rules(route: APIRoute) -> list[str]:
    rules = []
    for dependency in route.dependant.dependencies:
        rule = getattr(dependency.call, ACCESS_ATTR, None)
        if rule is not None:
            rules.append(rule)
    return rules


def test_every_route_declares_one_access_rule(client):
    """A route without an access rule, or with two, fails this test."""
    offenders = {}
    for route in client.app.routes:
        if not isinstance(route, APIRoute):
            continue
        rules = _access_rules(route)
        if len(rules) != 1:
            offenders[f"{sorted(route.methods)} {route.path}"] = rules
    assert offenders == {}
