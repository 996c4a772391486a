"""Every route declares exactly one access rule (public, a permission, or the setup token)."""

from __future__ import annotations

from paulyops.web.deps import access_rules, api_routes


def test_every_route_declares_one_access_rule(client):
    """A route without an access rule, or with two, fails this test."""
    routes = api_routes(client.app)
    assert len(routes) > 10, "the route table looks empty: is the walk broken?"
    offenders = {}
    for path, route in routes:
        rules = access_rules(route)
        if len(rules) != 1:
            offenders[f"{sorted(route.methods)} {path}"] = rules
    assert offenders == {}
