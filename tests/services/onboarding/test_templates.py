"""Industry templates, compliance presets and the catalog: the data files and their layering."""

from __future__ import annotations

import copy
from importlib.resources import files
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from paulyops.core.errors import ConfigError, SpecValidationError
from paulyops.core.settings import load_settings
from paulyops.services.onboarding import (
    apply_template,
    load_catalog,
    load_presets,
    load_templates,
    parse_spec,
    settings_defaults,
    spec_fields,
    validate_partial,
)
from paulyops.services.onboarding.spec import (
    CHOICE_FIELDS,
    SECTION_MODELS,
    ComplianceLevel,
    Industry,
    SecuritySpec,
)
from paulyops.services.onboarding.templates import (
    YAML_LOADER,
    Catalog,
    CompliancePreset,
    IndustryTemplate,
    apply_layers,
)

DATA = files("paulyops").joinpath("data")
DATA_FILES: list[tuple[str, type[BaseModel]]] = [
    ("catalog.yaml", Catalog),
    *((f"templates/{i.value}.yaml", IndustryTemplate) for i in Industry if i is not Industry.OTHER),
    *((f"presets/{c.value}.yaml", CompliancePreset) for c in ComplianceLevel),
]
WIRE_PATHS = {f.path for f in spec_fields()}
LEVELS = [c.value for c in ComplianceLevel]
INDUSTRIES = [i.value for i in Industry]
RULES = [
    pytest.param(level, rule, id=f"{level}-{rule.field}")
    for level, preset in load_presets().items()
    for rule in preset.enforced
]


def minimal(industry: str = "other", **organization: Any) -> dict[str, Any]:
    """Return the smallest valid body for an industry."""
    return {"organization": {"name": "Acme", "industry": industry, **organization}}


def _adapter(path: str) -> TypeAdapter[Any]:
    section, _, key = path.partition(".")
    for name, info in SECTION_MODELS[section].model_fields.items():
        if key in {name, info.alias}:
            return TypeAdapter(info.annotation)
    raise KeyError(path)


# --- the files ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "model"), DATA_FILES, ids=[p for p, _ in DATA_FILES])
def test_every_data_file_validates_against_its_model(path: str, model: type[BaseModel]) -> None:
    """Each packaged data file parses as YAML and validates against its own model."""
    model.model_validate(yaml.safe_load(DATA.joinpath(path).read_text(encoding="utf-8")))


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
def test_data_files_load_with_libyaml_to_the_same_data() -> None:
    """The packaged files are read with libyaml's fast safe loader, with identical results."""
    assert YAML_LOADER is yaml.CSafeLoader
    for path, _ in DATA_FILES:
        text = DATA.joinpath(path).read_text(encoding="utf-8")
        assert yaml.load(text, Loader=YAML_LOADER) == yaml.safe_load(text), path  # a safe loader


def test_no_data_file_is_left_unchecked() -> None:
    """The list above covers every template and preset file in the package."""
    found = {
        f"{folder}/{entry.name}"
        for folder in ("templates", "presets")
        for entry in DATA.joinpath(folder).iterdir()
        if entry.name.endswith(".yaml")
    }
    assert found | {"catalog.yaml"} == {path for path, _ in DATA_FILES}


def test_templates_exist_for_every_industry_but_other() -> None:
    """Every industry except 'other' has a template named after it."""
    assert set(load_templates()) == set(INDUSTRIES) - {"other"}


def test_presets_exist_for_every_compliance_level() -> None:
    """Every compliance level has a preset named after it."""
    assert set(load_presets()) == set(LEVELS)


def test_catalog_maps_short_names_to_paulyops_ids() -> None:
    """Each catalog agent's id is paulyops.<name>; a packaged one says what it handles.

    ``handles`` comes from the bundled manifest (the one source); an agent with no
    package yet is ``unavailable`` and handles nothing.
    """
    catalog = load_catalog()
    for agent in catalog.agents:
        assert agent.id == f"paulyops.{agent.name}"
        if agent.available:
            assert agent.handles is not None
            assert agent.handles.media_types
            assert agent.handles.document_classes
        else:
            assert agent.status == "unavailable"
            assert agent.handles is None
    for name in ("file-processor", "invoice-extractor", "medical-records-redactor"):
        assert name in catalog.names


def test_catalog_handles_are_the_bundled_manifests() -> None:
    """A packaged agent's `handles` are exactly its manifest's; catalog.yaml has none."""
    from paulyops.services.marketplace.bundled import trusted_agents

    raw = yaml.safe_load(DATA.joinpath("catalog.yaml").read_text(encoding="utf-8"))
    assert all("handles" not in entry for entry in raw["agents"])
    catalog = load_catalog()
    packaged = trusted_agents()
    assert packaged
    for package in packaged:
        assert package.manifest is not None
        agent = catalog.get(package.manifest.id.removeprefix("paulyops."))
        assert agent is not None
        assert agent.available
        assert agent.handles is not None
        assert agent.handles.media_types == package.manifest.handles.media_types
        assert agent.handles.document_classes == package.manifest.handles.document_classes
    by_status = {a.name: a.status for a in catalog.agents}
    assert by_status["file-processor"] == "bundled"
    assert by_status["invoice-extractor"] == "unavailable"


def test_catalog_and_bundled_packages_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Marking a packaged agent unavailable, or listing one without a package, is refused."""
    from paulyops.services.onboarding import templates

    raw = yaml.safe_load(DATA.joinpath("catalog.yaml").read_text(encoding="utf-8"))
    entries = raw["agents"]
    marked = [
        {**e, "status": "unavailable"} if e["name"] == "file-processor" else e for e in entries
    ]
    with pytest.raises(ConfigError, match="file-processor unavailable, but its bundled package"):
        templates._with_packages(Catalog.model_validate({"agents": marked}))
    unmarked = [{k: v for k, v in e.items() if k != "status"} for e in entries]
    with pytest.raises(ConfigError, match=r"no bundled package paulyops\.data-analyzer"):
        templates._with_packages(Catalog.model_validate({"agents": unmarked}))
    without = [e for e in entries if e["name"] != "file-processor"]
    with pytest.raises(
        ConfigError, match=r"does not list the bundled agents paulyops\.file-processor"
    ):
        templates._with_packages(Catalog.model_validate({"agents": without}))


@pytest.mark.parametrize("industry", sorted(load_templates()))
def test_template_suggestions_are_valid_answers(industry: str) -> None:
    """A template's level, providers and defaults are valid answers of the spec."""
    template = load_templates()[industry]
    assert template.suggested_compliance_level in LEVELS
    assert set(template.suggested_providers) <= {"local", "s3", "google-drive", "dropbox"}
    draft = {"organization": {"industry": industry}, **copy.deepcopy(template.defaults)}
    for section in template.defaults:
        assert validate_partial(draft, section) == [], section


@pytest.mark.parametrize("industry", sorted(load_templates()))
def test_template_routes_only_to_its_default_agents(industry: str) -> None:
    """Every routing hint sends files to an agent the template enables."""
    template = load_templates()[industry]
    assert template.default_agents
    for hint in template.routing_hints:
        assert hint.agent in template.default_agents, hint


def test_industry_templates_suggest_the_expected_agents_and_levels() -> None:
    """Healthcare suggests enterprise and the redactor, finance soc2 and the extractor."""
    templates = load_templates()
    assert templates["healthcare"].suggested_compliance_level == "enterprise"
    assert "medical-records-redactor" in templates["healthcare"].default_agents
    assert templates["finance"].suggested_compliance_level == "soc2"
    assert "invoice-extractor" in templates["finance"].default_agents
    assert "ndvi-processor" in templates["agriculture"].default_agents


@pytest.mark.parametrize(("level", "rule"), RULES)
def test_preset_rules_name_real_fields_with_typed_values(level: str, rule: Any) -> None:
    """Each enforced rule names a wire field of the spec and a value of its type."""
    assert rule.field in WIRE_PATHS
    values = rule.value if isinstance(rule.value, list) else [rule.value]
    for value in values:
        _adapter(rule.field).validate_python(value, strict=not isinstance(value, str))


@pytest.mark.parametrize("level", LEVELS)
def test_preset_defaults_and_controls_name_real_fields(level: str) -> None:
    """Defaults and control settings use wire paths that exist in the spec."""
    preset = load_presets()[level]
    for section, answers in preset.defaults.items():
        for key in answers:
            assert f"{section}.{key}" in WIRE_PATHS
    for control in preset.controls:
        assert set(control.settings) <= WIRE_PATHS, control.id
        assert control.evidence


@pytest.mark.parametrize("level", LEVELS)
def test_preset_defaults_meet_their_own_rules(level: str) -> None:
    """Filling every answer from a preset never breaks that preset."""
    preset = load_presets()[level]
    for section, answers in preset.defaults.items():
        for key, value in answers.items():
            assert preset.allows(f"{section}.{key}", value), (section, key)


def test_model_defaults_are_the_basic_preset_defaults() -> None:
    """SecuritySpec's own defaults agree with the basic preset's."""
    wire = SecuritySpec().model_dump(mode="json", by_alias=True)
    assert load_presets()["basic"].defaults["security"] == wire


def test_presets_name_their_controls() -> None:
    """The presets carry the named controls auditors ask for."""
    ids = {c.id for preset in load_presets().values() for c in preset.controls}
    assert {"SOC2 CC6.1", "HIPAA 164.312(b)", "GDPR Art. 32"} <= ids


# --- applying ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", [None, *LEVELS])
@pytest.mark.parametrize("industry", INDUSTRIES)
def test_every_industry_and_level_combination_parses(industry: str, level: str | None) -> None:
    """Templates and presets never make a body invalid that the admin did not touch."""
    org = {"complianceLevel": level} if level else {}
    spec = parse_spec(minimal(industry, **org))
    if level:
        assert spec.organization.compliance_level == level


def test_template_fills_only_unset_answers() -> None:
    """The finance template fills what is missing and leaves given answers alone."""
    raw = minimal("finance")
    raw["agents"] = {"confidenceThreshold": 0.5}
    spec = parse_spec(raw)
    finance = load_templates()["finance"]
    assert spec.organization.compliance_level == "soc2"
    assert spec.agents.default_agents == finance.default_agents
    assert spec.agents.confidence_threshold == 0.5
    assert spec.storage.retention_days == finance.defaults["storage"]["retentionDays"]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("organization", "complianceLevel", "basic"),
        ("storage", "retentionDays", 30),
        ("storage", "backupStrategy", "local"),
        ("agents", "defaultAgents", []),
        ("agents", "autoRouting", False),
        ("security", "rbacModel", "simple"),
    ],
)
def test_explicit_value_wins_over_template(section: str, key: str, value: Any) -> None:
    """An explicit answer is kept even where the industry template suggests another."""
    raw = minimal("healthcare" if section != "security" else "legal")
    raw.setdefault(section, {})[key] = value
    wire = parse_spec(raw).to_wire()
    assert wire[section][key] == value


def test_null_counts_as_unset() -> None:
    """An explicit null (an empty form field) is filled like a missing answer."""
    raw = minimal("finance")
    raw["storage"] = {"retentionDays": None}
    assert parse_spec(raw).storage.retention_days == 2555


def test_preset_defaults_fill_security_after_the_template() -> None:
    """Unset security answers come from the chosen preset."""
    spec = parse_spec(minimal("healthcare"))
    assert spec.organization.compliance_level == "enterprise"
    assert spec.security.rbac_model == "enterprise"
    assert spec.security.require_admin_2fa is True
    assert spec.security.encryption_level == "enhanced"


def test_apply_template_leaves_its_input_alone() -> None:
    """apply_template returns a new dict and never modifies the caller's."""
    raw = minimal("retail")
    before = copy.deepcopy(raw)
    applied = apply_template(raw)
    assert raw == before
    assert applied["organization"]["complianceLevel"] == "basic"


def test_apply_layers_records_where_each_value_came_from() -> None:
    """Each filled answer names its layer: template, instance defaults or preset."""
    applied = apply_layers(minimal("finance"))
    assert applied.sources["organization.complianceLevel"] == "finance template"
    assert applied.sources["agents.defaultAgents"] == "finance template"
    assert applied.sources["security.dataRetention"] == "soc2 preset"
    assert "organization.name" not in applied.sources


def _breaking_values(rule: Any) -> list[Any]:
    if rule.operator == "eq":
        return [not rule.value]
    if rule.operator == "gte":
        return [rule.value - 1]
    return [m.value for m in CHOICE_FIELDS[rule.field] if m.value not in rule.value]


# soc2's "standard or better" encryption rule admits every level there is today, so it
# has no breaking value to try; it still documents the requirement (and would bite if a
# weaker level were ever added).
BREAKABLE = [
    pytest.param(level, rule, bad, id=f"{level}-{rule.field}-{bad}")
    for level, preset in load_presets().items()
    for rule in preset.enforced
    for bad in _breaking_values(rule)
]


@pytest.mark.parametrize(("level", "rule", "bad"), BREAKABLE)
def test_breaking_a_preset_rule_is_an_error_never_a_change(level: str, rule: Any, bad: Any) -> None:
    """An explicit value against an enforced rule is refused at its wire path."""
    section, _, key = rule.field.partition(".")
    raw = minimal("other", complianceLevel=level)
    raw[section] = {key: bad}
    with pytest.raises(SpecValidationError) as info:
        parse_spec(raw)
    (error,) = info.value.errors
    assert error.field == rule.field
    assert f"the {level} compliance preset" in error.message
    assert rule.reason in error.message


def test_every_level_but_basic_has_breakable_rules() -> None:
    """soc2 and enterprise refuse something; basic enforces nothing."""
    levels = {param.values[0] for param in BREAKABLE}
    assert levels == {"soc2", "enterprise"}
    assert load_presets()["basic"].enforced == []


def test_basic_allows_audit_logging_off() -> None:
    """Under basic, auditLogging false is accepted (it only lowers detail)."""
    raw = minimal("other")
    raw["security"] = {"auditLogging": False}
    assert parse_spec(raw).security.audit_logging is False


def test_template_suggested_level_is_named_in_the_error() -> None:
    """When the level came from the template, the error says so and how to change it."""
    raw = minimal("healthcare")
    raw["security"] = {"dataRetention": 400}
    with pytest.raises(SpecValidationError) as info:
        parse_spec(raw)
    (error,) = info.value.errors
    assert "suggested by the healthcare template" in error.message
    assert "organization.complianceLevel" in error.message


def test_choosing_a_lower_level_relaxes_the_template() -> None:
    """An explicit compliance level wins over the template's suggestion."""
    raw = minimal("healthcare", complianceLevel="basic")
    raw["security"] = {"dataRetention": 400, "auditLogging": False}
    spec = parse_spec(raw)
    assert spec.security.data_retention == 400


# --- instance defaults -------------------------------------------------------------------


def test_settings_defaults_take_only_what_the_operator_set(tmp_path: Any) -> None:
    """Only variables present in the environment become defaults for new organizations."""
    settings = load_settings(
        root=tmp_path, environ={"COMPLIANCE_LEVEL": "soc2", "DEFAULT_AGENTS": "data-analyzer"}
    )
    assert settings_defaults(settings) == {
        "organization": {"complianceLevel": "soc2"},
        "agents": {"defaultAgents": ["data-analyzer"]},
    }
    assert settings_defaults(load_settings(root=tmp_path, environ={})) == {}


def test_instance_defaults_rank_below_templates_and_above_presets() -> None:
    """Template > instance defaults > preset defaults, for answers left unset."""
    instance = {
        "organization": {"complianceLevel": "soc2"},
        "agents": {"defaultAgents": ["data-analyzer"]},
        "security": {"rbacModel": "enterprise"},
    }
    other = parse_spec(minimal("other"), instance_defaults=instance)
    assert other.organization.compliance_level == "soc2"
    assert other.agents.default_agents == ["data-analyzer"]
    assert other.security.rbac_model == "enterprise"
    healthcare = parse_spec(minimal("healthcare"), instance_defaults=instance)
    assert healthcare.organization.compliance_level == "enterprise"
    assert "medical-records-redactor" in healthcare.agents.default_agents


def test_filled_value_that_breaks_the_preset_is_skipped() -> None:
    """A default that would break the chosen preset is not used; the preset's is."""
    instance = {"security": {"dataRetention": 365, "auditLogging": False}}
    spec = parse_spec(minimal("other", complianceLevel="enterprise"), instance_defaults=instance)
    assert spec.security.data_retention == 2555
    assert spec.security.audit_logging is True


def test_setup_choices_say_which_agents_are_not_available_yet() -> None:
    """The wizards' agent choices mark an agent with no package; a packaged one is plain."""
    from paulyops.services.onboarding.presentation import UNAVAILABLE_NOTE, choices

    by_value = {c.value: c for c in choices("agents.defaultAgents")}
    assert by_value["file-processor"].label == "File processor"
    assert UNAVAILABLE_NOTE not in (by_value["file-processor"].description or "")
    assert by_value["data-analyzer"].label == "Data analyzer (not available yet)"
    assert (by_value["data-analyzer"].description or "").endswith(UNAVAILABLE_NOTE)
