"""Parse setup answers into a :class:`SetupSpec`: the one way into provisioning.

The CLI wizard, the web wizard, ``POST /api/onboarding/setup`` and ``setup --config``
all end in :func:`parse_spec`, and the prompts, form fields, JSON Schema and error
messages are all derived from the models (fields, defaults, limits, enums, help
texts) — never from a second copy of a rule. The concepts live in their own modules:

* :mod:`.models` — the SetupSpec and its sections;
* :mod:`.validators` — the field types and checks they compose;
* :mod:`paulyops.services.storage.providers` — the storage provider models;
* :mod:`.presentation` — labels, titles and help; :mod:`.form` — the wizards' form plan.

This module keeps every name it had before the split importable.

On the wire the spec is camelCase JSON (the brief's request body); in Python it is
snake_case. :func:`parse_spec` applies the industry template and compliance preset (see
:mod:`.templates`) to the raw answers, validates them and raises one
:class:`~.errors.SetupSpecError` naming every problem by its wire path.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from paulyops.core.errors import FieldError
from paulyops.services.onboarding.errors import (
    SetupSpecError,
    dedupe,
    field_errors,
    show,
    spec_error,
)
from paulyops.services.onboarding.models import (
    PRESET_RULE,
    SECTION_MODELS,
    STEPS,
    AgentsSpec,
    BackupStrategy,
    ComplianceLevel,
    EncryptionLevel,
    Industry,
    InstanceDefaults,
    OrganizationSize,
    OrganizationSpec,
    OwnerSpec,
    ProviderType,
    RbacModel,
    SecuritySpec,
    SetupSpec,
    Step,
    StorageSpec,
    slugify,
    step_of,
)
from paulyops.services.onboarding.presentation import (
    AGENTS_FIELD,
    CHOICE_FIELDS,
    CHOICE_LABELS,
    Choice,
    FieldHelp,
    all_choices,
    choices,
    field_help,
    spec_fields,
)
from paulyops.services.onboarding.templates import (
    MISSING,
    AppliedSpec,
    apply_layers,
    load_catalog,
    load_presets,
    load_templates,
    normalize_choice,
)
from paulyops.services.onboarding.validators import BIDI_CONTROLS, unsafe_text_problem
from paulyops.services.storage.providers import (
    PROVIDER_MODELS,
    SECRET_FIELDS,
    DropboxProvider,
    GoogleDriveProvider,
    LocalProvider,
    S3Provider,
    StorageProvider,
)

# --- entry points ------------------------------------------------------------------------


def parse_spec(
    raw: Mapping[str, object], *, instance_defaults: InstanceDefaults | None = None
) -> SetupSpec:
    """Apply the industry template and compliance preset to ``raw``, then validate it.

    Args:
        raw: the answers in wire form (camelCase; snake_case keys are accepted too).
        instance_defaults: the instance's defaults for new organizations
            (:func:`~.templates.settings_defaults`); a template still wins over them.

    Raises:
        SetupSpecError: one :class:`~paulyops.core.errors.FieldError` per problem.
    """
    if not isinstance(raw, Mapping):
        raise spec_error([FieldError("", f"expected an object, got {show(raw)}")])
    applied = apply_layers(wire_keys(raw), instance_defaults=instance_defaults)
    try:
        return SetupSpec.model_validate(applied.data)
    except ValidationError as err:
        errors = field_errors(err, SetupSpec, skip=(PRESET_RULE,))
        # Reported with where the compliance level came from, and even when other fields
        # are invalid (the model's own preset check only runs once everything else is).
        errors += _rule_errors(applied)
        raise spec_error(errors) from err


def validate_partial(
    raw: Mapping[str, object], step: Step, *, instance_defaults: InstanceDefaults | None = None
) -> list[FieldError]:
    """Validate one wizard step of a draft with the same rules as :func:`parse_spec`.

    The draft may hold other steps too: they pick the template and preset, so a preset
    rule on this step applies as soon as the answers it needs are there.

    Args:
        raw: the draft in wire form.
        step: the section to check.
        instance_defaults: as for :func:`parse_spec`.

    Returns:
        The problems of this step (empty when it is valid).
    """
    if not isinstance(raw, Mapping):
        return [FieldError("", f"expected an object, got {show(raw)}")]
    applied = apply_layers(wire_keys(raw), instance_defaults=instance_defaults)
    model = SECTION_MODELS[step]
    section = applied.data.get(step)
    errors: list[FieldError] = []
    try:
        model.model_validate({} if section is None else section)
    except ValidationError as err:
        errors = field_errors(err, model, prefix=(step,))
    errors += [e for e in _rule_errors(applied) if e.field.startswith(f"{step}.")]
    return dedupe(errors)


def wire_keys(raw: Mapping[str, object]) -> dict[str, object]:
    """Return ``raw`` with snake_case field names renamed to their wire (camelCase) names."""
    out = _rename(raw, SetupSpec)
    for section, model in SECTION_MODELS.items():
        value = out.get(section)
        if isinstance(value, Mapping):
            out[section] = _rename(value, model)
    storage = out.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("providers"), list):
        storage["providers"] = [_rename_provider(item) for item in storage["providers"]]
    return out


@functools.cache
def _schema() -> str:
    schema = SetupSpec.model_json_schema(by_alias=True, mode="validation")
    return json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema})


def spec_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the wire form (``paulyops setup --schema``)."""
    schema: dict[str, Any] = json.loads(_schema())
    return schema


def schema_bundle() -> dict[str, Any]:
    """Return what a form needs to render and pre-fill the setup questions.

    Keys: ``schema`` (JSON Schema), ``templates`` (by industry), ``presets`` (by level),
    ``catalog`` (the agents) and ``choices`` (labels of every choice field).
    """
    return {
        "schema": spec_json_schema(),
        "templates": {
            name: template.model_dump(mode="json", by_alias=True)
            for name, template in load_templates().items()
        },
        "presets": {
            name: preset.model_dump(mode="json", by_alias=True)
            for name, preset in load_presets().items()
        },
        "catalog": [
            agent.model_dump(mode="json", by_alias=True) for agent in load_catalog().agents
        ],
        "choices": {
            path: [choice.as_dict() for choice in items] for path, items in all_choices().items()
        },
    }


# --- internals ---------------------------------------------------------------------------


def _rule_errors(applied: AppliedSpec) -> list[FieldError]:
    preset = applied.preset
    if preset is None:
        return []
    source = applied.sources.get("organization.complianceLevel", "")
    origin = source if source.endswith("template") or source == "instance defaults" else None
    broken = preset.violations(lambda path: _typed_value(applied.data, path))
    return [preset.rule_error(rule, value, origin=origin) for rule, value in broken]


def _typed_value(data: Mapping[str, object], path: str) -> object:
    """Return the validated value at wire ``path`` (or its default), or MISSING if invalid."""
    section_name, _, key = path.partition(".")
    section = data.get(section_name)
    if section is not None and not isinstance(section, Mapping):
        return MISSING
    value = section.get(key) if section is not None else None
    adapter, default = _field_adapter(path)
    if value is None:
        return default
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return MISSING


@functools.cache
def _field_adapter(path: str) -> tuple[TypeAdapter[Any], object]:
    section_name, _, key = path.partition(".")
    model = SECTION_MODELS[section_name]
    for name, info in model.model_fields.items():
        if key in {name, info.alias}:
            default = info.get_default(call_default_factory=True)
            annotation: Any = info.annotation
            if info.metadata:
                annotation = Annotated[(annotation, *info.metadata)]
            adapter: TypeAdapter[Any] = TypeAdapter(annotation)
            return adapter, MISSING if default is PydanticUndefined else default
    raise KeyError(path)


def _rename(raw: Mapping[Any, object], model: type[BaseModel]) -> dict[Any, object]:
    names = {name: info.alias for name, info in model.model_fields.items() if info.alias}
    out: dict[Any, object] = {}
    for key, value in raw.items():
        alias = names.get(key) if isinstance(key, str) else None
        if alias is not None and alias != key and alias not in raw:
            out[alias] = value
        else:
            out[key] = value
    return out


def _rename_provider(item: object) -> object:
    if not isinstance(item, Mapping):
        return item
    model = PROVIDER_MODELS.get(str(normalize_choice(item.get("type"))))
    return _rename(item, model) if model is not None else dict(item)


__all__ = [
    "AGENTS_FIELD",
    "BIDI_CONTROLS",
    "CHOICE_FIELDS",
    "CHOICE_LABELS",
    "MISSING",
    "PRESET_RULE",
    "PROVIDER_MODELS",
    "SECRET_FIELDS",
    "SECTION_MODELS",
    "STEPS",
    "AgentsSpec",
    "BackupStrategy",
    "Choice",
    "ComplianceLevel",
    "DropboxProvider",
    "EncryptionLevel",
    "FieldHelp",
    "GoogleDriveProvider",
    "Industry",
    "InstanceDefaults",
    "LocalProvider",
    "OrganizationSize",
    "OrganizationSpec",
    "OwnerSpec",
    "ProviderType",
    "RbacModel",
    "S3Provider",
    "SecuritySpec",
    "SetupSpec",
    "SetupSpecError",
    "Step",
    "StorageProvider",
    "StorageSpec",
    "all_choices",
    "choices",
    "field_help",
    "parse_spec",
    "schema_bundle",
    "slugify",
    "spec_fields",
    "spec_json_schema",
    "step_of",
    "unsafe_text_problem",
    "validate_partial",
    "wire_keys",
]
