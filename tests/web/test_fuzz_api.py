"""Fuzz the whole JSON API from its own OpenAPI schema (schemathesis, capped examples).

Every operation is called with generated requests, anonymously and with an Owner's API
token, and every response must hold: no 5xx, a status code the operation declares, and a
body that conforms to the declared schema of that status.

Every error status is declared with the one error shape (``ErrorOut``, see
``web/app.py``'s ``ERROR_RESPONSES``), so schemathesis' own status and schema checks apply
to errors too; :func:`conforms_to_declaration` adds that an error body says
``success: false`` and carries no other keys.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from paulyops.core.db.scoped import OrgScope
from paulyops.core.instance import Instance
from paulyops.services.auth import tokens
from paulyops.services.auth.permissions import ALL
from paulyops.web.app import create_app
from paulyops.web.errors import ErrorOut
from tests.conftest import make_settings
from tests.factories import make_org

MAX_EXAMPLES = 15
RATE_LIMITS = (
    "api=100000/minute,onboarding_setup=100000/hour,"
    "onboarding_validate=100000/minute,signin=100000/minute"
)
# Error statuses whose bodies must be exactly the one error shape.
ERROR_STATUSES = frozenset({400, 401, 403, 404, 409, 422, 429})
ERROR_KEYS = frozenset(ErrorOut.model_fields)
OWNER_PERMISSIONS = ALL - {"org:create"}


# schemathesis' lazy ``from_fixture`` schema does not run on pytest 9 (it reads
# ``request.node._nodeid``), so the schema is loaded at import from an app built around an
# instance that is not started yet; the module fixture starts it and closes it afterwards.
_ROOT = Path(tempfile.mkdtemp(prefix="paulyops-fuzz-"))
_SETTINGS = make_settings(_ROOT, PAULYOPS_RATE_LIMITS=RATE_LIMITS)
_INSTANCE = Instance(_SETTINGS)
APP = create_app(_SETTINGS, instance=_INSTANCE)
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)


@pytest.fixture(scope="module")
def owner_token() -> Iterator[str]:
    """Start the app's instance (SQLite) for the module; yield an Owner's API token."""
    _INSTANCE.start(background=False)
    assert _INSTANCE.ready.wait(20), "instance did not become ready"
    try:
        yield _owner_token(_INSTANCE)
    finally:
        _INSTANCE.close()
        shutil.rmtree(_ROOT, ignore_errors=True)


def _owner_token(instance: Instance) -> str:
    org = make_org(instance.db, "fuzz")
    with instance.db.write_session() as session:
        issued = tokens.create_api_token(
            OrgScope(session, org.id),
            user_id=org.members["Owner"],
            name="fuzz",
            permissions=sorted(OWNER_PERMISSIONS),
            holder_permissions=OWNER_PERMISSIONS,
        )
    return issued.secret


def _is_error_shape(response: Any) -> bool:
    return response.status_code in ERROR_STATUSES


def conforms_to_declaration(ctx: Any, response: Any, case: Any) -> bool | None:
    """Declared status and schema; an error body is exactly the one error shape."""
    if _is_error_shape(response):
        body = response.json()
        assert isinstance(body, dict), f"{response.status_code}: expected the error object"
        assert set(body) <= ERROR_KEYS, f"{response.status_code}: unexpected keys {set(body)}"
        assert ErrorOut.model_validate(body).success is False
    status_code_conformance(ctx, response, case)
    return response_schema_conformance(ctx, response, case)


CHECKS = [schemathesis.checks.not_a_server_error, conforms_to_declaration]

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@schema.parametrize()
@FUZZ_SETTINGS
@pytest.mark.usefixtures("owner_token")
def test_api_anonymous(case: Any) -> None:
    """Anonymous calls never 5xx and answer only declared statuses in declared shapes."""
    case.call_and_validate(checks=CHECKS)


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_as_owner(case: Any, owner_token: str) -> None:
    """An Owner's API token calls never 5xx and answer only declared statuses and shapes."""
    headers = {**(case.headers or {}), "Authorization": f"Bearer {owner_token}"}
    case.call_and_validate(headers=headers, checks=CHECKS)


@pytest.mark.usefixtures("owner_token")
def test_malformed_json_uses_the_one_error_shape() -> None:
    """A request body that is not UTF-8 JSON is a 4xx in the one error shape (success=false)."""
    with TestClient(APP, base_url="http://127.0.0.1") as client:
        response = client.post(
            "/api/auth/sign-in",
            content=b"\xff\x13\xfe",
            headers={"Content-Type": "application/json"},
        )
    assert 400 <= response.status_code < 500
    assert response.json().get("success") is False
