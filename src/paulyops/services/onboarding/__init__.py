"""Onboarding: the SetupSpec, industry templates and compliance presets.

Every front door (CLI wizard, web wizard, ``POST /api/onboarding/setup``, ``--config``)
turns its answers into a :class:`SetupSpec` through :func:`parse_spec`.

The names below load on first use: :mod:`paulyops.services.storage.providers` builds on
this package's validators, and the SetupSpec builds on the providers, so importing the
package must not import the spec eagerly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "SetupSpecError": "errors",
    **dict.fromkeys(
        (
            "Choice",
            "FieldHelp",
            "SetupSpec",
            "all_choices",
            "choices",
            "field_help",
            "parse_spec",
            "schema_bundle",
            "slugify",
            "spec_fields",
            "spec_json_schema",
            "validate_partial",
        ),
        "spec",
    ),
    **dict.fromkeys(
        ("apply_template", "load_catalog", "load_presets", "load_templates", "settings_defaults"),
        "templates",
    ),
}


def __getattr__(name: str) -> Any:
    """Import the public names from their modules on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
