"""The form plan: what both setup wizards show for one step of a draft, derived once.

The terminal wizard (``cli/setup.py``) and the web wizard (``web/pages/setup.py``) render
the same plan: for each answer of a step its kind of input, bounds, choices (disabled
when the compliance preset refuses them), the value to show and where it came from, and
a lock when the preset leaves one value. Everything comes from the SetupSpec's JSON
Schema (kinds and bounds), :mod:`.presentation` (labels and titles) and the chosen
preset's rules, evaluated generically through :meth:`Rule.is_met` — so every operator
(``eq``, ``ne``, ``gte``, ``lte``, ``in``, ``not_in``) reaches both wizards, and no
interface switches on an operator.

What a form cannot express (a number that must not be one value) is still refused by
:func:`~.spec.validate_partial`, which both wizards call on every answer.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from paulyops.services.onboarding.models import SECTION_MODELS, InstanceDefaults, Step
from paulyops.services.onboarding.presentation import (
    AGENTS_FIELD,
    CHOICE_FIELDS,
    QUESTIONS,
    STEP_TEXTS,
    FieldHelp,
    choices,
    spec_fields,
)
from paulyops.services.onboarding.templates import (
    CompliancePreset,
    IndustryTemplate,
    Rule,
    apply_layers,
)
from paulyops.services.storage.providers import PROVIDER_MODELS, SECRET_FIELDS

FieldKind = Literal["text", "email", "number", "select", "radio", "multi", "bool", "providers"]
# Past this many choices a drop-down reads better than a row of radio buttons.
RADIO_MAX_CHOICES: Final = 5
PROVIDERS_FIELD: Final = "storage.providers"
# Unset, the industry template suggests the compliance level: a form offers that choice.
SUGGESTED_LEVEL_FIELD: Final = "organization.complianceLevel"
ANSWER_STEPS: Final[tuple[Step, ...]] = tuple(STEP_TEXTS)


@dataclass(frozen=True, slots=True)
class ChoicePlan:
    """One choice of a field; ``disabled`` when the preset refuses it."""

    value: str
    label: str
    description: str | None = None
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSettingPlan:
    """One setting of a storage provider (secrets are password inputs, never shown again)."""

    key: str
    title: str
    description: str
    secret: bool


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """One storage provider the storage step offers, with its settings."""

    type: str
    label: str
    description: str
    settings: tuple[ProviderSettingPlan, ...]
    checked: bool = False
    saved: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """One answer of a step as a form shows and checks it.

    Args:
        path: the wire path (``security.dataRetention``).
        key: the field's wire name within its section.
        title: the label; ``question`` is what a terminal asks for a yes/no answer.
        kind: the kind of input.
        value: what to show: the admin's answer, else what a template, the instance or
            the preset filled in, else the model's default (the locked value if locked).
        is_own: the admin answered it (a form shows no "from template" note then).
        filled_from: the layer that filled the value (``finance template``), if any.
        minimum, maximum, step: number bounds, from the JSON Schema and the preset.
        excluded: values the preset refuses that the input cannot express.
        locked: the preset leaves only ``value``.
        lock_reason: why the preset limits the field (its rules' reasons).
        note: a suggestion of the industry template for this answer.
        unset_choice: a choice that leaves the answer to the template (``""``).
    """

    path: str
    key: str
    title: str
    description: str
    question: str
    kind: FieldKind
    required: bool
    optional: bool
    default: Any
    value: Any
    is_own: bool = False
    filled_from: str | None = None
    choices: tuple[ChoicePlan, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: str | None = None
    is_integer: bool = False
    excluded: tuple[Any, ...] = ()
    locked: bool = False
    lock_reason: str | None = None
    note: str | None = None
    unset_choice: ChoicePlan | None = None
    rules: tuple[Rule, ...] = ()

    @property
    def id(self) -> str:
        """An HTML id for the input (``security-dataRetention``)."""
        return self.path.replace(".", "-")

    @property
    def enabled_values(self) -> list[str]:
        """The values of the choices the preset allows."""
        return [choice.value for choice in self.choices if not choice.disabled]


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One wizard step: its title and lead, fields in form order, and the preset in force."""

    name: Step
    title: str
    lead: str
    fields: tuple[FieldPlan, ...]
    preset: CompliancePreset | None = None
    template: IndustryTemplate | None = None
    providers: tuple[ProviderPlan, ...] = ()

    def field(self, path: str) -> FieldPlan:
        """Return the field at wire ``path``.

        Raises:
            KeyError: the step has no such field.
        """
        for item in self.fields:
            if item.path == path:
                return item
        raise KeyError(path)


def plan_step(
    step: Step, draft: Mapping[str, object], *, instance_defaults: InstanceDefaults | None = None
) -> StepPlan:
    """Return the form plan of ``step`` for the answers in ``draft`` (wire form).

    The draft's other steps pick the industry template and the compliance preset, so the
    plan of the security step follows the level chosen on the organization step.
    """
    applied = apply_layers(draft, instance_defaults=instance_defaults)
    section = applied.data.get(step)
    filled: Mapping[str, Any] = section if isinstance(section, Mapping) else {}
    own_section = draft.get(step)
    own: Mapping[str, Any] = own_section if isinstance(own_section, Mapping) else {}
    preset = applied.preset
    helps = {item.path: item for item in spec_fields(step)}
    fields = tuple(
        _plan_field(
            path,
            schema,
            help_=helps[path],
            required=key in required,
            filled=filled,
            own=own,
            source=applied.sources.get(path),
            preset=preset,
            template=applied.template,
        )
        for key, schema, path, required in _properties(step)
    )
    text = STEP_TEXTS.get(step)
    providers = (
        _provider_plans(filled.get("providers") or helps[PROVIDERS_FIELD].default)
        if step == "storage"
        else ()
    )
    return StepPlan(
        name=step,
        title=text.title if text else step.title(),
        lead=text.lead if text else "",
        fields=fields,
        preset=preset,
        template=applied.template,
        providers=providers,
    )


def provider_plans() -> tuple[ProviderPlan, ...]:
    """Return every storage provider with its settings, none checked."""
    return _provider_plans(None)


# --- internals ---------------------------------------------------------------------------


@functools.cache
def _section_schema(step: str) -> dict[str, Any]:
    schema: dict[str, Any] = SECTION_MODELS[step].model_json_schema(
        by_alias=True, mode="validation"
    )
    return schema


def _properties(step: str) -> list[tuple[str, dict[str, Any], str, set[str]]]:
    schema = _section_schema(step)
    required = set(schema.get("required", []))
    return [
        (key, prop, f"{step}.{key}", required) for key, prop in schema.get("properties", {}).items()
    ]


def _plan_field(
    path: str,
    schema: Mapping[str, Any],
    *,
    help_: FieldHelp,
    required: bool,
    filled: Mapping[str, Any],
    own: Mapping[str, Any],
    source: str | None,
    preset: CompliancePreset | None,
    template: IndustryTemplate | None,
) -> FieldPlan:
    key = path.partition(".")[2]
    kind, optional = _kind(path, schema)
    default = help_.default
    rules = tuple(rule for rule in (preset.enforced if preset else []) if rule.field == path)
    value = filled.get(key, default)
    choice_list = tuple(
        ChoicePlan(c.value, c.label, c.description, disabled=not _allows(rules, c.value))
        for c in (choices(path) if path in (*CHOICE_FIELDS, AGENTS_FIELD) else [])
    )
    plain = _plain_schema(schema)
    minimum, maximum = plain.get("minimum"), plain.get("maximum")
    excluded: list[Any] = []
    locked_value: Any = None
    is_locked = False
    for rule in rules:
        bound = rule.value
        if kind == "number" and isinstance(bound, int | float) and not isinstance(bound, bool):
            if rule.operator == "gte":
                minimum = bound if minimum is None else max(minimum, bound)
            elif rule.operator == "lte":
                maximum = bound if maximum is None else min(maximum, bound)
            elif rule.operator == "eq":
                is_locked, locked_value = True, bound
            elif rule.operator == "ne":
                excluded.append(bound)
        elif kind not in {"bool", "radio", "select", "multi"}:
            if rule.operator == "eq":
                is_locked, locked_value = True, bound
            elif rule.operator in {"ne", "not_in"}:
                excluded.extend(bound if isinstance(bound, list) else [bound])
    if kind == "bool" and rules:
        allowed = [flag for flag in (True, False) if _allows(rules, flag)]
        if len(allowed) == 1:
            is_locked, locked_value = True, allowed[0]
    if kind in {"radio", "select"} and rules:
        enabled = [c.value for c in choice_list if not c.disabled]
        if len(enabled) == 1:
            is_locked, locked_value = True, enabled[0]
    if is_locked:
        value = locked_value
    is_own = key in own
    unset_choice = None
    if path == SUGGESTED_LEVEL_FIELD:
        unset_choice = ChoicePlan(
            "", "Suggested for my industry", "e.g. SOC 2 for finance, enterprise for healthcare"
        )
    return FieldPlan(
        path=path,
        key=key,
        title=help_.title,
        description=help_.description,
        question=QUESTIONS.get(path) or help_.title,
        kind=kind,
        required=required,
        optional=optional,
        default=default,
        value=value,
        is_own=is_own,
        filled_from=source if source and not is_own and "default" not in source else None,
        choices=choice_list,
        minimum=None if minimum is None else float(minimum),
        maximum=None if maximum is None else float(maximum),
        step="0.01" if plain.get("type") == "number" else None,
        is_integer=plain.get("type") == "integer",
        excluded=tuple(excluded),
        locked=is_locked,
        lock_reason=_lock_reason(preset, rules),
        note=_template_note(path, template),
        unset_choice=unset_choice,
        rules=rules,
    )


def _kind(path: str, schema: Mapping[str, Any]) -> tuple[FieldKind, bool]:
    """Return the input kind of a field and whether it may be left empty."""
    optional = any(option.get("type") == "null" for option in schema.get("anyOf", []))
    if path == PROVIDERS_FIELD:
        return "providers", False
    if path == AGENTS_FIELD:
        return "multi", False
    if path in CHOICE_FIELDS:
        many = len(CHOICE_FIELDS[path]) > RADIO_MAX_CHOICES
        return ("select" if many else "radio"), optional
    plain = _plain_schema(schema)
    kind = plain.get("type")
    if kind == "boolean":
        return "bool", optional
    if kind in {"integer", "number"}:
        return "number", optional
    if plain.get("format") == "email":
        return "email", optional
    return "text", optional


def _plain_schema(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the non-null branch of an optional field's schema (or the schema itself)."""
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    return options[0] if len(options) == 1 else schema


def _allows(rules: tuple[Rule, ...], value: object) -> bool:
    return all(rule.is_met(value) for rule in rules)


def _lock_reason(preset: CompliancePreset | None, rules: tuple[Rule, ...]) -> str | None:
    if preset is None or not rules:
        return None
    reasons = "; ".join(dict.fromkeys(rule.reason for rule in rules))
    return f"Required by the {preset.level} preset: {reasons}"


def _template_note(path: str, template: IndustryTemplate | None) -> str | None:
    if template is None:
        return None
    if path == SUGGESTED_LEVEL_FIELD:
        return f"the {template.industry} template suggests {template.suggested_compliance_level}"
    if path == PROVIDERS_FIELD:
        return (
            f"the {template.industry} template suggests {', '.join(template.suggested_providers)}"
        )
    return None


def _provider_plans(chosen_raw: object) -> tuple[ProviderPlan, ...]:
    chosen: dict[str, Mapping[str, Any]] = {}
    for entry in chosen_raw if isinstance(chosen_raw, list) else []:
        if isinstance(entry, str):
            chosen[entry] = {"type": entry}
        elif isinstance(entry, Mapping) and isinstance(entry.get("type"), str):
            chosen[entry["type"]] = entry
    labels = {c.value: c for c in choices(PROVIDERS_FIELD)}
    out = []
    for kind, model in PROVIDER_MODELS.items():
        settings = tuple(
            ProviderSettingPlan(
                key=info.alias or name,
                title=info.title or name,
                description=info.description or "",
                secret=name in SECRET_FIELDS,
            )
            for name, info in model.model_fields.items()
            if name not in {"type", "name"}
        )
        label = labels[kind].label if kind in labels else kind
        out.append(
            ProviderPlan(
                type=kind,
                label=label,
                description=(model.__doc__ or "").strip(),
                settings=settings,
                checked=kind in chosen,
                saved=dict(chosen.get(kind, {})),
            )
        )
    return tuple(out)


def number_text(value: float) -> str:
    """Return a bound as a form shows it (``365``, not ``365.0``)."""
    return str(int(value)) if math.isfinite(value) and value == int(value) else str(value)


__all__ = [
    "ANSWER_STEPS",
    "PROVIDERS_FIELD",
    "ChoicePlan",
    "FieldKind",
    "FieldPlan",
    "ProviderPlan",
    "ProviderSettingPlan",
    "StepPlan",
    "number_text",
    "plan_step",
    "provider_plans",
]
