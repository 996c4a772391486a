"""The SetupSpec: wire shape, validation errors, derived forms and round trips."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.services.onboarding import (
    SetupSpec,
    SetupSpecError,
    all_choices,
    choices,
    field_help,
    load_catalog,
    parse_spec,
    schema_bundle,
    slugify,
    spec_fields,
    spec_json_schema,
    validate_partial,
)
from paulyops.services.onboarding.spec import (
    CHOICE_FIELDS,
    CHOICE_LABELS,
    ComplianceLevel,
    Industry,
    LocalProvider,
    ProviderType,
    S3Provider,
)

BRIEF_BODY: dict[str, Any] = {
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
}


def body(**sections: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the brief's body with some sections' fields replaced."""
    raw = copy.deepcopy(BRIEF_BODY)
    for name, fields in sections.items():
        raw.setdefault(name, {}).update(fields)
    return raw


def errors_of(raw: Any) -> dict[str, FieldError]:
    """Parse ``raw``, expecting failure, and return its field errors by wire path."""
    with pytest.raises(SpecValidationError) as info:
        parse_spec(raw)
    return {error.field: error for error in info.value.errors}


# --- the brief's body --------------------------------------------------------------------


def test_brief_example_body_parses() -> None:
    """The request body from the brief is a valid spec and keeps every answer it gives."""
    spec = parse_spec(BRIEF_BODY)
    assert spec.organization.name == "Acme Corp"
    assert spec.organization.industry is Industry.FINANCE
    assert spec.organization.compliance_level is ComplianceLevel.SOC2
    assert [p.type for p in spec.storage.providers] == ["google-drive", "dropbox"]
    assert spec.security.data_retention == 2555
    assert spec.agents.default_agents == ["file-processor", "data-analyzer"]
    assert spec.agents.default_agent_ids == ["paulyops.file-processor", "paulyops.data-analyzer"]
    assert spec.slug == "acme-corp"


def test_wire_output_is_camel_case_and_complete() -> None:
    """to_wire() returns every field under its camelCase name, unset ones filled in."""
    wire = parse_spec(BRIEF_BODY).to_wire()
    assert set(wire) == {"organization", "storage", "security", "agents", "owner"}
    assert wire["security"]["requireAdmin2fa"] is True  # from the soc2 preset
    assert wire["organization"]["timezone"] is None
    assert wire["storage"]["providers"][0] == {
        "type": "google-drive",
        "name": "google-drive",
        "clientId": None,
    }


def test_snake_case_keys_parse_like_wire_keys() -> None:
    """Python callers may use snake_case names; the spec is the same as from camelCase."""
    snake = body()
    snake["organization"] = {
        "name": "Acme Corp",
        "industry": "finance",
        "compliance_level": "soc2",
        "size": "51-200",
    }
    snake["security"] = {
        "rbac_model": "granular",
        "audit_logging": True,
        "data_retention": 2555,
        "encryption_level": "enhanced",
        "require_admin_2fa": True,
    }
    assert parse_spec(snake) == parse_spec(BRIEF_BODY)


def test_choices_are_case_and_space_insensitive() -> None:
    """' Finance ' and 'SOC2' are read as finance and soc2."""
    raw = body(organization={"industry": " Finance ", "complianceLevel": "SOC2"})
    spec = parse_spec(raw)
    assert spec.organization.industry is Industry.FINANCE
    assert spec.organization.compliance_level is ComplianceLevel.SOC2


def test_only_organization_name_and_industry_are_required() -> None:
    """A body with just a name and an industry is complete after templates and presets."""
    spec = parse_spec({"organization": {"name": "Tiny", "industry": "other"}})
    assert spec.organization.compliance_level is ComplianceLevel.BASIC
    assert spec.storage.providers == [LocalProvider()]
    errors = errors_of({"organization": {}})
    assert errors["organization.name"].message == "is required"
    assert errors["organization.industry"].allowed == [i.value for i in Industry]
    assert set(errors_of({})) == {"organization.name", "organization.industry"}


# --- storage providers -------------------------------------------------------------------


def test_short_and_detailed_provider_forms_are_the_same() -> None:
    """'s3' on the wire equals {'type': 's3'}; both get the type as their name."""
    short = parse_spec(body(storage={"providers": ["s3", "local"]}))
    detailed = parse_spec(body(storage={"providers": [{"type": "s3"}, {"type": "local"}]}))
    assert short == detailed
    assert [p.name for p in short.storage.providers] == ["s3", "local"]


def test_detailed_providers_keep_their_settings_and_secrets() -> None:
    """A detailed S3 entry keeps bucket, region and endpoint, and its keys as secrets."""
    raw = body(
        storage={
            "providers": [
                {
                    "type": "s3",
                    "name": "archive",
                    "bucket": "acme-archive",
                    "region": "eu-central-1",
                    "endpoint": "https://minio.example.com:9000",
                    "accessKeyId": "AKIAEXAMPLE",
                    "secretAccessKey": "s3cr3t",
                },
                {"type": "local", "path": "/srv/acme"},
                {"type": "google-drive", "clientId": "123.apps", "clientSecret": "gsecret"},
                {"type": "dropbox", "appKey": "key1", "appSecret": "dsecret"},
            ]
        }
    )
    s3, local, drive, dropbox = parse_spec(raw).storage.providers
    assert isinstance(s3, S3Provider)
    assert s3.bucket == "acme-archive"
    assert isinstance(s3.secret_access_key, SecretStr)
    assert s3.secret_access_key.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(s3)
    assert local.type == "local"
    assert drive.type == "google-drive"
    assert dropbox.type == "dropbox"


def test_missing_credentials_are_valid_and_listed() -> None:
    """Providers without credentials validate; missing_settings() names what is missing."""
    spec = parse_spec(body(storage={"providers": ["s3", "google-drive", "dropbox", "local"]}))
    missing = [p.missing_settings() for p in spec.storage.providers]
    assert missing == [
        ["bucket", "accessKeyId", "secretAccessKey"],
        ["clientId", "clientSecret"],
        ["appKey", "appSecret"],
        [],
    ]


def test_empty_credential_fields_count_as_missing() -> None:
    """Blank form inputs ("") are read as not given, not as empty secrets."""
    raw = body(storage={"providers": [{"type": "dropbox", "appKey": "", "appSecret": " "}]})
    (provider,) = parse_spec(raw).storage.providers
    assert provider.missing_settings() == ["appKey", "appSecret"]


def test_duplicate_provider_names_are_refused() -> None:
    """Two providers with the same name are an error on the second one's name."""
    errors = errors_of(body(storage={"providers": ["s3", {"type": "s3"}]}))
    assert "storage.providers.1.name" in errors
    assert "storage.providers.0" in errors["storage.providers.1.name"].message


def test_same_type_with_distinct_names_is_allowed() -> None:
    """Two S3 buckets are fine when each has its own name."""
    raw = body(storage={"providers": [{"type": "s3"}, {"type": "s3", "name": "archive"}]})
    assert [p.name for p in parse_spec(raw).storage.providers] == ["s3", "archive"]


def test_at_least_one_provider_is_required() -> None:
    """An empty provider list is refused."""
    errors = errors_of(body(storage={"providers": []}))
    assert errors["storage.providers"].message.startswith("expected at least 1 items")


@pytest.mark.parametrize(
    ("entry", "path", "suggestion"),
    [
        ("gogle-drive", "storage.providers.0", "google-drive"),
        ({"type": "dropbx"}, "storage.providers.0.type", "dropbox"),
    ],
)
def test_unknown_provider_type_suggests_the_close_one(
    entry: object, path: str, suggestion: str
) -> None:
    """A misspelt provider type, short or detailed, names its path and suggests the type."""
    errors = errors_of(body(storage={"providers": [entry]}))
    assert errors[path].suggestion == suggestion
    assert errors[path].allowed == [p.value for p in ProviderType]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"type": "s3", "bucket": "Not_A_Bucket"}, "bucket"),
        ({"type": "s3", "endpoint": "ftp://example.com"}, "endpoint"),
        ({"type": "s3", "endpoint": "https://user:pw@example.com"}, "endpoint"),
        ({"type": "s3", "region": "EU Central"}, "region"),
        ({"type": "local", "path": "../../etc"}, "path"),
        ({"type": "local", "name": "My Files"}, "name"),
        ({"type": "google-drive", "clientId": "has space"}, "clientId"),
    ],
)
def test_provider_settings_are_checked(entry: dict[str, str], field: str) -> None:
    """Malformed provider settings are errors at storage.providers.<i>.<field>."""
    errors = errors_of(body(storage={"providers": ["local", entry]}))
    assert list(errors) == [f"storage.providers.1.{field}"]


def test_unknown_provider_field_suggests_the_known_one() -> None:
    """A misspelt provider field is refused with the close field name."""
    errors = errors_of(body(storage={"providers": [{"type": "s3", "buckett": "x"}]}))
    error = errors["storage.providers.0.buckett"]
    assert error.suggestion == "bucket"
    assert error.allowed is not None
    assert "secretAccessKey" in error.allowed


# --- error shape -------------------------------------------------------------------------


def test_misspelt_industry_suggests_finance() -> None:
    """'fiannce' is refused at organization.industry, with the choices and 'finance'."""
    error = errors_of(body(organization={"industry": "fiannce"}))["organization.industry"]
    assert error.suggestion == "finance"
    assert error.allowed == [i.value for i in Industry]
    assert "'fiannce'" in error.message
    assert "finance" in error.message


def test_unknown_field_suggests_the_close_name() -> None:
    """An unknown field is an error with the closest known name as suggestion."""
    raw = body()
    raw["organization"]["industy"] = "finance"
    raw["securty"] = {}
    errors = errors_of(raw)
    assert errors["organization.industy"].suggestion == "industry"
    assert errors["securty"].suggestion == "security"


def test_misspelt_agent_suggests_catalog_name() -> None:
    """An unknown agent is refused at its list index with the closest catalog name."""
    raw = body(agents={"defaultAgents": ["file-processor", "invoice-extracter"]})
    error = errors_of(raw)["agents.defaultAgents.1"]
    assert error.suggestion == "invoice-extractor"
    assert error.allowed == load_catalog().names


def test_agent_ids_and_short_names_are_both_accepted() -> None:
    """'paulyops.data-analyzer' is read as the short name 'data-analyzer'."""
    spec = parse_spec(body(agents={"defaultAgents": ["paulyops.data-analyzer"]}))
    assert spec.agents.default_agents == ["data-analyzer"]


def test_duplicate_agent_is_refused() -> None:
    """An agent listed twice is an error on its second position."""
    raw = body(agents={"defaultAgents": ["data-analyzer", "file-processor", "data-analyzer"]})
    assert "agents.defaultAgents.2" in errors_of(raw)


def test_every_problem_is_reported_at_once() -> None:
    """All problems come back together, one field error each, across sections."""
    raw = body(
        organization={"industry": "fiannce", "size": "huge"},
        storage={"retentionDays": 0},
        security={"encryptionLevel": "rot13"},
        agents={"confidenceThreshold": 1.5},
    )
    with pytest.raises(SetupSpecError) as info:
        parse_spec(raw)
    fields = [e.field for e in info.value.errors]
    assert fields == [
        "organization.industry",
        "organization.size",
        "storage.retentionDays",
        "security.encryptionLevel",
        "agents.confidenceThreshold",
    ]
    assert info.value.message.startswith("invalid setup (5 problems): organization.industry:")


def test_messages_name_expected_and_received_values() -> None:
    """A range error says what was expected and what was received."""
    error = errors_of(body(storage={"retentionDays": 40000}))["storage.retentionDays"]
    assert error.message == "expected at most 36500, got 40000"


def test_secrets_are_never_echoed_in_errors() -> None:
    """A bad secret value is reported without repeating it."""
    secret = "x" * 5000
    raw = body(storage={"providers": [{"type": "s3", "secretAccessKey": secret}]})
    with pytest.raises(SetupSpecError) as info:
        parse_spec(raw)
    assert [e.field for e in info.value.errors] == ["storage.providers.0.secretAccessKey"]
    assert "xxxx" not in info.value.message
    assert "xxxx" not in str(info.value.__cause__)


@pytest.mark.parametrize("raw", [[], "spec", 42, None])
def test_non_object_body_is_refused(raw: Any) -> None:
    """A body that is not an object is one error on the whole body."""
    assert errors_of(raw)[""].message.startswith("expected an object")


def test_error_serializes_to_the_one_error_shape() -> None:
    """FieldError.as_dict() gives the API's {field, message, allowed, suggestion} items."""
    error = errors_of(body(organization={"industry": "fiannce"}))["organization.industry"]
    item = error.as_dict()
    assert item["field"] == "organization.industry"
    assert item["suggestion"] == "finance"
    json.dumps(item)


# --- organization ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("   ", "empty"),
        ("!!!", "letter or digit"),
        ("x" * 101, "at most 100"),
        ("Acme\nCorp", "control characters"),
    ],
)
def test_organization_name_rules(name: str, problem: str) -> None:
    """Names must be 1-100 characters with a letter or digit and no control characters."""
    error = errors_of(body(organization={"name": name}))["organization.name"]
    assert problem in error.message


def test_organization_name_is_stripped() -> None:
    """Surrounding spaces are not part of the name."""
    assert parse_spec(body(organization={"name": "  Acme Corp "})).organization.name == "Acme Corp"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme Corp", "acme-corp"),
        ("  ACME   corp.  ", "acme-corp"),
        ("Müller & Söhne GmbH", "muller-sohne-gmbh"),
        ("a" * 70, "a" * 63),
        ("x" * 62 + " y", "x" * 62),
    ],
)
def test_slug_is_normalized(name: str, slug: str) -> None:
    """Slugs are lowercase a-z0-9 and '-', at most 63 characters, without edge dashes."""
    assert slugify(name) == slug


def test_slug_of_non_latin_name_is_stable_and_valid() -> None:
    """A name without Latin letters still gets a stable, valid slug."""
    assert slugify("株式会社") == slugify("株式会社")
    assert slugify("株式会社").startswith("org-")
    assert slugify("株式会社") != slugify("有限会社")


def test_timezone_is_validated_with_suggestion() -> None:
    """The timezone must be an IANA zone; a near miss gets a suggestion."""
    ok = parse_spec(body(organization={"timezone": "Europe/Berlin"}))
    assert ok.organization.timezone == "Europe/Berlin"
    error = errors_of(body(organization={"timezone": "Europe/Berln"}))["organization.timezone"]
    assert error.suggestion == "Europe/Berlin"
    assert "IANA" in error.message


def test_admin_contact_must_be_an_email() -> None:
    """adminContact takes an email address and refuses anything else."""
    ok = parse_spec(body(organization={"adminContact": "it@acme.example.com"}))
    assert ok.organization.admin_contact == "it@acme.example.com"
    error = errors_of(body(organization={"adminContact": "nope"}))["organization.adminContact"]
    assert "email address" in error.message


def test_owner_is_optional_but_complete_when_given() -> None:
    """No owner is fine; an owner needs an email and a name."""
    assert parse_spec(BRIEF_BODY).owner is None
    spec = parse_spec(body(owner={"email": "ann@acme.example.com", "name": " Ann Lee "}))
    assert spec.owner is not None
    assert spec.owner.name == "Ann Lee"
    errors = errors_of(body(owner={"email": "ann@acme.example.com"}))
    assert list(errors) == ["owner.name"]


@pytest.mark.parametrize(
    "email",
    ["admin@acme.local", "admin@acme.lan", "admin@acme.internal", "admin@office.acme.home.arpa"],
)
def test_owner_and_admin_contact_accept_internal_mail_domains(email: str) -> None:
    """Addresses on a private network's mail domain are accepted (not "special-use")."""
    spec = parse_spec(
        body(organization={"adminContact": email}, owner={"email": email, "name": "Ann Lee"})
    )
    assert spec.owner is not None
    assert spec.owner.email == email
    assert spec.organization.admin_contact == email


def test_internal_mail_domains_keep_the_syntax_checks() -> None:
    """Internal domains are normalized and still checked: spaces, dots, bare names, .onion."""
    spec = parse_spec(body(owner={"email": "Ann@Acme.LOCAL", "name": "Ann"}))
    assert spec.owner is not None
    assert spec.owner.email == "Ann@acme.local"
    for bad in ("ann lee@acme.local", "ann@acme..local", "ann@local", "ann@home.arpa", "a@x.onion"):
        error = errors_of(body(owner={"email": bad, "name": "Ann"}))["owner.email"]
        assert "email address" in error.message, bad


# --- compliance rules on the model -------------------------------------------------------


def test_direct_construction_still_enforces_the_preset() -> None:
    """Building a SetupSpec without parse_spec cannot break the chosen preset either."""
    raw = body(security={"auditLogging": False})
    with pytest.raises(ValidationError, match="soc2 compliance preset"):
        SetupSpec.model_validate(raw)


def test_preset_violation_names_field_rule_and_preset() -> None:
    """Breaking a preset rule is an error on the wire field naming the rule and preset."""
    error = errors_of(body(security={"dataRetention": 30}))["security.dataRetention"]
    assert error.message.startswith("the soc2 compliance preset requires dataRetention")
    assert "at least 365" in error.message
    assert "got 30" in error.message
    assert error.suggestion == "365"


# --- to_wire, hashing and round trips ----------------------------------------------------

SECRET_RAW = body(
    storage={
        "providers": [
            {"type": "s3", "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "hunter2"},
            {"type": "dropbox", "appKey": "k", "appSecret": "dsecret"},
        ]
    }
)


def test_to_wire_omits_secrets_by_default() -> None:
    """The default wire form (configs/setup.json) holds no secret, not even masked."""
    wire = parse_spec(SECRET_RAW).to_wire()
    text = json.dumps(wire)
    assert "hunter2" not in text
    assert "dsecret" not in text
    assert "secretAccessKey" not in text
    assert "accessKeyId" not in text
    assert wire["storage"]["providers"][1]["appKey"] == "k"


def test_to_wire_with_secrets_round_trips() -> None:
    """include_secrets=True keeps the credentials and parses back to an equal spec."""
    spec = parse_spec(SECRET_RAW)
    wire = spec.to_wire(include_secrets=True)
    assert wire["storage"]["providers"][0]["secretAccessKey"] == "hunter2"
    assert parse_spec(wire) == spec


def test_plain_json_dump_masks_secrets() -> None:
    """A model_dump in JSON mode by other code masks secrets instead of revealing them."""
    text = json.dumps(parse_spec(SECRET_RAW).model_dump(mode="json"))
    assert "hunter2" not in text


def test_canonical_hash_ignores_secrets_and_follows_answers() -> None:
    """Same answers give the same hash whatever the secrets; another answer changes it."""
    with_secrets = parse_spec(SECRET_RAW)
    without = parse_spec(body(storage={"providers": ["s3", {"type": "dropbox", "appKey": "k"}]}))
    assert with_secrets.canonical_hash() == without.canonical_hash()
    other = parse_spec(body(storage={"retentionDays": 366}))
    assert other.canonical_hash() != parse_spec(BRIEF_BODY).canonical_hash()
    assert len(with_secrets.canonical_hash()) == 64


def test_wire_output_validates_against_the_json_schema() -> None:
    """The JSON Schema accepts the brief's body and every to_wire() output."""
    validator = jsonschema_rs.validator_for(spec_json_schema())
    assert validator.is_valid(BRIEF_BODY)
    assert validator.is_valid(parse_spec(SECRET_RAW).to_wire(include_secrets=True))
    assert not validator.is_valid({"organization": {"name": "x", "industry": "fiannce"}})


# --- schema and form helpers -------------------------------------------------------------


def test_json_schema_uses_wire_names_help_and_choices() -> None:
    """The schema names fields in camelCase, carries help texts and lists choices."""
    schema = spec_json_schema()
    defs = schema["$defs"]
    security = defs["SecuritySpec"]["properties"]
    assert "dataRetention" in security
    assert "requireAdmin2fa" in security
    assert security["dataRetention"]["description"]
    assert defs["Industry"]["enum"] == [i.value for i in Industry]
    agents = defs["AgentsSpec"]["properties"]["defaultAgents"]["items"]["enum"]
    assert agents == load_catalog().names
    provider_forms = defs["StorageSpec"]["properties"]["providers"]["items"]["anyOf"]
    assert {"$ref": "#/$defs/ProviderType"} in provider_forms


def test_every_field_has_a_title_and_help_text() -> None:
    """Every answer has a title and a description for prompts and forms."""
    fields = spec_fields()
    assert len(fields) >= 20
    for help_ in fields:
        assert help_.title, help_.path
        assert help_.description, help_.path
    assert field_help("security.dataRetention").startswith("How many days audit")


def test_schema_bundle_has_schema_templates_presets_catalog_and_choices() -> None:
    """The schema endpoint's bundle holds everything a form needs, as JSON."""
    bundle = schema_bundle()
    assert set(bundle) == {"schema", "templates", "presets", "catalog", "choices"}
    assert set(bundle["templates"]) == {i.value for i in Industry} - {"other"}
    assert set(bundle["presets"]) == {c.value for c in ComplianceLevel}
    assert bundle["catalog"][0]["id"] == "paulyops.file-processor"
    assert bundle["choices"]["organization.complianceLevel"][0]["label"] == "basic — GDPR/CCPA"
    json.dumps(bundle)


def test_every_choice_has_a_label() -> None:
    """Each enum value has a label, so CLI and web never hard-code one."""
    for path, enum in CHOICE_FIELDS.items():
        assert [c.value for c in choices(path)] == [m.value for m in enum]
        assert set(CHOICE_LABELS[enum]) == {m.value for m in enum}
    assert set(all_choices()) == {*CHOICE_FIELDS, "agents.defaultAgents"}
    assert choices("organization.industry")[2].description


# --- validate_partial --------------------------------------------------------------------


def test_validate_partial_checks_only_its_step() -> None:
    """A step's validation reports that step's problems and ignores the others."""
    raw = body(organization={"industry": "fiannce"}, storage={"retentionDays": 0})
    assert [e.field for e in validate_partial(raw, "storage")] == ["storage.retentionDays"]
    assert [e.field for e in validate_partial(raw, "organization")] == ["organization.industry"]
    assert validate_partial(raw, "agents") == []


def test_validate_partial_applies_preset_rules_once_the_level_is_known() -> None:
    """The security step is checked against the preset the organization step picked."""
    draft: dict[str, Any] = {"security": {"auditLogging": False}}
    assert validate_partial(draft, "security") == []
    draft["organization"] = {"industry": "healthcare"}
    errors = validate_partial(draft, "security")
    assert [e.field for e in errors] == ["security.auditLogging"]
    assert "healthcare template" in errors[0].message


def test_validate_partial_of_owner_requires_email_and_name() -> None:
    """Validating the owner step of a draft without an owner names both fields."""
    assert [e.field for e in validate_partial({}, "owner")] == ["owner.email", "owner.name"]


def test_validate_partial_agrees_with_parse_spec() -> None:
    """Per-step errors together are exactly what parse_spec reports."""
    raw = body(
        organization={"industry": "fiannce"},
        storage={"providers": ["dropbx"]},
        security={"dataRetention": 10},
        agents={"defaultAgents": ["nope"]},
    )
    steps = ("organization", "storage", "security", "agents")
    partial = [e for step in steps for e in validate_partial(raw, step)]
    assert sorted(partial, key=lambda e: e.field) == sorted(
        errors_of(raw).values(), key=lambda e: e.field
    )


# --- hypothesis --------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["finance", "s3", "soc2", "local", "file-processor", "Europe/Berlin"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=16,
)
SECTION_KEYS = {
    name: sorted({f.path.split(".", 1)[1] for f in spec_fields(name)} | {"bogus", "type"})
    for name in ("organization", "storage", "security", "agents", "owner")
}
near_valid = st.fixed_dictionaries(
    {},
    optional={
        name: st.dictionaries(st.sampled_from(keys), json_values, max_size=6) | json_values
        for name, keys in SECTION_KEYS.items()
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw=json_values | near_valid)
def test_junk_never_raises_anything_but_spec_validation_error(raw: Any) -> None:
    """parse_spec on any JSON value returns a spec or raises SpecValidationError only."""
    errors: list[FieldError] = []
    try:
        spec = parse_spec(raw)
    except SpecValidationError as err:
        errors = err.errors
    else:
        assert isinstance(spec, SetupSpec)
        return
    assert errors
    for error in errors:
        assert isinstance(error.field, str)
        assert error.message


@settings(max_examples=150, deadline=None)
@given(raw=json_values | near_valid, step=st.sampled_from(list(SECTION_KEYS)))
def test_validate_partial_never_raises(raw: Any, step: Any) -> None:
    """validate_partial on any JSON value returns a list of field errors."""
    errors = validate_partial(raw, step)
    assert all(isinstance(error, FieldError) for error in errors)


def _maybe(draw: st.DrawFn, target: dict[str, Any], key: str, strategy: Any) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


names = st.text(
    st.characters(categories=["L", "N", "P", "Zs", "S"]), min_size=1, max_size=100
).filter(lambda s: s.strip() and any(c.isalnum() for c in s) and len(s.strip()) <= 100)
emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    st.from_regex(r"[a-z]{2,10}", fullmatch=True),
    st.sampled_from(["com", "org", "de", "io"]),
)
secrets_ = st.none() | st.text(min_size=1, max_size=20)
tokens = st.none() | st.from_regex(r"[a-z0-9.]{1,20}", fullmatch=True)


@st.composite
def provider_entries(draw: st.DrawFn) -> Any:
    """Draw one provider entry, short or detailed."""
    kind = draw(st.sampled_from([p.value for p in ProviderType]))
    if draw(st.booleans()):
        return kind
    entry: dict[str, Any] = {"type": kind}
    _maybe(draw, entry, "name", st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True))
    if kind == "s3":
        _maybe(
            draw, entry, "bucket", st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
        )
        _maybe(draw, entry, "region", st.sampled_from(["eu-central-1", "us-east-1", None]))
        _maybe(draw, entry, "endpoint", st.sampled_from(["https://minio.example.com:9000", None]))
        _maybe(draw, entry, "accessKeyId", secrets_)
        _maybe(draw, entry, "secretAccessKey", secrets_)
    elif kind == "local":
        _maybe(draw, entry, "path", st.sampled_from(["/srv/docs", "docs/acme", None]))
    elif kind == "google-drive":
        _maybe(draw, entry, "clientId", tokens)
        _maybe(draw, entry, "clientSecret", secrets_)
    else:
        _maybe(draw, entry, "appKey", tokens)
        _maybe(draw, entry, "appSecret", secrets_)
    return entry


def _provider_name(entry: Any) -> str:
    return entry if isinstance(entry, str) else entry.get("name", entry["type"])


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a body whose every answer is valid on its own (presets may still refuse)."""
    org: dict[str, Any] = {
        "name": draw(names),
        "industry": draw(st.sampled_from([i.value for i in Industry])),
    }
    _maybe(draw, org, "complianceLevel", st.sampled_from([c.value for c in ComplianceLevel]))
    _maybe(draw, org, "size", st.sampled_from(["1-10", "11-50", "51-200", "201-1000", "1000+"]))
    _maybe(draw, org, "adminContact", emails)
    _maybe(draw, org, "timezone", st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"]))
    storage: dict[str, Any] = {}
    providers = st.lists(provider_entries(), min_size=1, max_size=4, unique_by=_provider_name)
    _maybe(draw, storage, "providers", providers)
    _maybe(draw, storage, "backupStrategy", st.sampled_from(["local", "cloud", "hybrid"]))
    _maybe(draw, storage, "retentionDays", st.integers(1, 36500))
    security: dict[str, Any] = {}
    _maybe(draw, security, "rbacModel", st.sampled_from(["simple", "granular", "enterprise"]))
    _maybe(draw, security, "auditLogging", st.booleans())
    _maybe(draw, security, "dataRetention", st.integers(1, 36500))
    _maybe(draw, security, "encryptionLevel", st.sampled_from(["standard", "enhanced", "fips"]))
    _maybe(draw, security, "requireAdmin2fa", st.booleans())
    agents: dict[str, Any] = {}
    catalog = load_catalog().names
    _maybe(draw, agents, "defaultAgents", st.lists(st.sampled_from(catalog), unique=True))
    _maybe(draw, agents, "autoRouting", st.booleans())
    _maybe(draw, agents, "confidenceThreshold", st.floats(0.0, 1.0))
    _maybe(draw, agents, "monitoringEnabled", st.booleans())
    raw: dict[str, Any] = {"organization": org}
    for key, section in (("storage", storage), ("security", security), ("agents", agents)):
        if section or draw(st.booleans()):
            raw[key] = section
    _maybe(draw, raw, "owner", st.fixed_dictionaries({"email": emails, "name": names}))
    return raw


def _parse_or_skip_preset(raw: dict[str, Any]) -> SetupSpec:
    """Parse a drawn body; discard it when only preset rules refuse it."""
    try:
        return parse_spec(raw)
    except SpecValidationError as err:
        assume(not all("compliance preset" in e.message for e in err.errors))
        raise


@settings(max_examples=200, deadline=None)
@given(raw=valid_bodies())
def test_valid_specs_round_trip_through_the_wire(raw: dict[str, Any]) -> None:
    """parse_spec(spec.to_wire(include_secrets=True)) gives back an equal spec."""
    spec = _parse_or_skip_preset(raw)
    wire = spec.to_wire(include_secrets=True)
    assert parse_spec(json.loads(json.dumps(wire))) == spec


@settings(max_examples=100, deadline=None)
@given(raw=valid_bodies())
def test_secretless_wire_form_keeps_the_hash(raw: dict[str, Any]) -> None:
    """The wire form without secrets parses to a spec with the same canonical hash."""
    spec = _parse_or_skip_preset(raw)
    again = parse_spec(spec.to_wire())
    assert again.canonical_hash() == spec.canonical_hash()
    assert again.slug == spec.slug
