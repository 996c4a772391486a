"""Onboarding: the SetupSpec, industry templates and compliance presets.

Every front door (CLI wizard, web wizard, ``POST /api/onboarding/setup``, ``--config``)
turns its answers into a :class:`SetupSpec` through :func:`parse_spec`.
"""

from paulyops.services.onboarding.errors import SetupSpecError
from paulyops.services.onboarding.spec import (
    Choice,
    FieldHelp,
    SetupSpec,
    all_choices,
    choices,
    field_help,
    parse_spec,
    schema_bundle,
    slugify,
    spec_fields,
    spec_json_schema,
    validate_partial,
)
from paulyops.services.onboarding.templates import (
    apply_template,
    load_catalog,
    load_presets,
    load_templates,
    settings_defaults,
)

__all__ = [
    "Choice",
    "FieldHelp",
    "SetupSpec",
    "SetupSpecError",
    "all_choices",
    "apply_template",
    "choices",
    "field_help",
    "load_catalog",
    "load_presets",
    "load_templates",
    "parse_spec",
    "schema_bundle",
    "settings_defaults",
    "slugify",
    "spec_fields",
    "spec_json_schema",
    "validate_partial",
]
