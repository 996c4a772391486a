"""POST /api/onboarding/setup, validate and schema: the brief's contract, with its guards."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import func, select

from paulyops.core.db.models import AuditLog, Organization, StorageConfig, User
from paulyops.services.actor import SYSTEM
from paulyops.services.audit import verify, verifying_key
from paulyops.services.onboarding.firstrun import ensure_setup_token

BRIEF_BODY = {
    "organization": {
        "name": "Acme Corp",
        "industry": "finance",
        "complianceLevel": "soc2",
        "size": "51-200",
    },
    "storage": {
        "providers": ["google-drive", "dropbox"],
        "backupStrategy": "hybrid",
        "retentionDays": 365,
    },
    "security": {
        "rbacModel": "granular",
        "auditLogging": True,
        "dataRetention": 2555,
        "encryptionLevel": "enhanced",
    },
    "agents": {
        "defaultAgents": ["file-processor", "data-analyzer"],
        "autoRouting": True,
        "confidenceThreshold": 0.9,
        "monitoringEnabled": True,
    },
    "owner": {"email": "pat@acme.example.com", "name": "Pat Owner"},
}


@pytest.fixture
def setup_token(client):
    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    assert token is not None
    return token


def _setup(client, body, token):
    return client.post(
        "/api/onboarding/setup", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def _count(db, model):
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_brief_body_creates_organization(client, setup_token):
    """The brief's request body with the setup token gives the brief's response."""
    response = _setup(client, BRIEF_BODY, setup_token)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    assert body["organizationId"].startswith("org_")
    assert body["message"] == "Organization setup completed successfully"
    assert any("clientId" in step for step in body["nextSteps"])
    assert body["ownerPasswordLink"].startswith("http")
    # A one-time secret: never kept by a browser or proxy cache.
    assert response.headers["cache-control"] == "no-store"
    db = client.app.state.instance.db
    assert _count(db, StorageConfig) == 2
    with db.session() as session:
        owner = session.scalars(select(User)).one()
        assert owner.is_platform_admin
        assert owner.password_hash is None


def test_setup_token_is_single_use(client, setup_token):
    """A consumed setup token cannot create a second organization."""
    assert _setup(client, BRIEF_BODY, setup_token).status_code == 201
    other = copy.deepcopy(BRIEF_BODY)
    other["organization"]["name"] = "Other Corp"
    assert _setup(client, other, setup_token).status_code == 403


def test_setup_without_credentials_is_refused(client):
    """Without the setup token or a platform admin, setup answers 401."""
    response = client.post("/api/onboarding/setup", json=BRIEF_BODY)
    assert response.status_code == 401
    assert response.json()["success"] is False


def test_same_spec_twice_is_idempotent(client, setup_token):
    """Provisioning the same spec again returns 200 with the same id and changes nothing."""
    first = _setup(client, BRIEF_BODY, setup_token).json()
    db = client.app.state.instance.db
    audit_rows = _count(db, AuditLog)
    # The token is used up; the platform admin repeats the setup through the service.
    from paulyops.services.onboarding.provision import ProvisionContext, provision
    from paulyops.services.onboarding.spec import parse_spec

    result = provision(
        db,
        parse_spec(BRIEF_BODY),
        ProvisionContext(
            actor=SYSTEM,
            jwt_secret="x" * 40,
            public_url="http://x",
            data_dir=client.app.state.instance.settings.data_dir,
        ),
    )
    assert result.created is False
    assert result.organization_id == first["organizationId"]
    assert _count(db, Organization) == 1
    assert _count(db, AuditLog) == audit_rows


def test_different_spec_same_slug_conflicts(client, setup_token):
    """A different spec under a slug that is taken is 409, in the one error shape."""
    assert _setup(client, BRIEF_BODY, setup_token).status_code == 201
    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    assert token is None  # an organization exists now: no more setup tokens


def test_invalid_body_gives_field_errors_with_suggestion(client, setup_token):
    """A misspelled industry is a 422 naming the field, the allowed values and a suggestion."""
    body = copy.deepcopy(BRIEF_BODY)
    body["organization"]["industry"] = "fiannce"
    response = _setup(client, body, setup_token)
    assert response.status_code == 422
    payload = response.json()
    assert payload["success"] is False
    (error,) = [e for e in payload["errors"] if e["field"] == "organization.industry"]
    assert error["suggestion"] == "finance"
    assert "finance" in error["allowed"]
    assert _count(client.app.state.instance.db, Organization) == 0


def test_preset_violation_is_422_not_silently_changed(client, setup_token):
    """An explicit value that breaks the compliance preset is refused with the reason."""
    body = copy.deepcopy(BRIEF_BODY)
    body["security"]["dataRetention"] = 30
    response = _setup(client, body, setup_token)
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert "security.dataRetention" in fields


def test_validate_checks_one_step(client):
    """POST /validate returns the same field errors for one wizard step."""
    response = client.post(
        "/api/onboarding/validate",
        json={"step": "organization", "spec": {"organization": {"name": "", "industry": "lega"}}},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False
    fields = {e["field"]: e for e in body["errors"]}
    assert fields["organization.industry"]["suggestion"] == "legal"


def test_schema_is_served_with_templates_and_presets(client):
    """GET /schema serves the JSON Schema, six templates, three presets and the catalog."""
    body = client.get("/api/onboarding/schema").json()
    assert "properties" in body["schema"]
    assert len(body["templates"]) == 6
    assert len(body["presets"]) == 3
    assert body["catalog"]


def test_owner_sets_password_with_link_then_signs_in(client, setup_token):
    """The one-time link sets the owner's password once; then the owner can sign in."""
    result = _setup(client, BRIEF_BODY, setup_token).json()
    token = result["ownerPasswordLink"].split("token=", 1)[1]
    password = "a-long-and-unusual-passphrase-91"
    first = client.post("/api/onboarding/set-password", json={"token": token, "password": password})
    assert first.status_code == 200, first.text
    again = client.post("/api/onboarding/set-password", json={"token": token, "password": password})
    assert again.status_code == 403
    assert "already used" in again.json()["message"]
    signed_in = client.post(
        "/api/auth/sign-in", json={"email": "pat@acme.example.com", "password": password}
    )
    assert signed_in.status_code == 200
    assert signed_in.json()["organizationId"] == result["organizationId"]


def test_provision_writes_a_verifiable_audit_chain(client, setup_token):
    """Provisioning writes one row per object plus a summary, and the chain verifies."""
    org_id = _setup(client, BRIEF_BODY, setup_token).json()["organizationId"]
    instance = client.app.state.instance
    with instance.db.session() as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.chain == org_id).order_by(AuditLog.seq)
        ).all()
    assert actions[-1] == "organization.provisioned"
    assert actions.count("storage.created") == 2
    report = verify(instance.db, verifying_key(instance.settings))
    assert report.is_ok, report


def test_malformed_json_says_body_and_never_a_character_offset(client):
    """A body that is not JSON is a 422 on the field "body"; no offset stands in a field."""
    response = client.post(
        "/api/onboarding/validate",
        content=b'{"step": "all", "spec": {"organization": {"name": "Acme",}}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False
    assert [e["field"] for e in body["errors"]] == ["body"]
    assert "not valid JSON" in body["errors"][0]["message"]
    assert not any(ch.isdigit() for ch in body["errors"][0]["field"])


def test_a_5000_digit_integer_is_a_422_naming_its_field(client):
    """Python's int-str conversion limit is caught while parsing: 422 on the field itself."""
    digits = "1" + "0" * 4999
    response = client.post(
        "/api/onboarding/validate",
        content=(
            '{"step": "all", "spec": {"organization": {"name": "Acme", "size": ' + digits + "}}}"
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["spec.organization.size"]
    assert "at most 4300 digits, got 5000" in errors[0]["message"]


def test_setup_route_declares_setupspec_as_its_body_in_openapi(client):
    """OpenAPI names SetupSpec as the body of POST /api/onboarding/setup, not a bare object.

    Its schema is the one ``paulyops setup --schema`` prints (same sections, required
    organization), and the 422 it documents is the one error shape.
    """
    from paulyops.services.onboarding.spec import spec_json_schema

    document = client.get("/api/openapi.json").json()
    operation = document["paths"]["/api/onboarding/setup"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body.get("additionalProperties") is not True
    ref = body["$ref"] if "$ref" in body else body["allOf"][0]["$ref"]
    name = ref.rpartition("/")[2]
    declared = document["components"]["schemas"][name]
    expected = spec_json_schema()
    assert declared["title"] == "SetupSpec"
    assert set(declared["properties"]) == set(expected["properties"])
    assert declared["required"] == expected["required"] == ["organization"]
    assert operation["requestBody"]["required"] is True
    error = operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error.rpartition("/")[2] == "ErrorOut"


def test_setup_body_that_is_not_an_object_keeps_the_error_shape(client, setup_token):
    """A JSON array as the body is still a 422 in the one error shape."""
    response = _setup(client, [BRIEF_BODY], setup_token)
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert body["errors"]
