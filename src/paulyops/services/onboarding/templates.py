"""Industry templates, compliance presets and the agent catalog: data applied before validation.

The files live in the package (``paulyops/data/templates/<industry>.yaml``,
``paulyops/data/presets/<level>.yaml``, ``paulyops/data/catalog.yaml``) and each is
validated by a model here. They are applied to the raw wire answers *before* the
:class:`~paulyops.services.onboarding.spec.SetupSpec` validates them, in layers that only
fill answers left unset (absent or null); an explicit answer always wins:

1. ``organization.complianceLevel``: explicit, else the industry template's suggestion,
   else the instance default, else ``basic``. This picks the preset.
2. Every other unset answer: the industry template's ``defaults``, then the instance
   defaults, then the preset's ``defaults``.

A filled-in value that would break one of the chosen preset's ``enforced`` rules is
skipped (the next layer fills it), so a template can never cause an error on a field the
admin did not touch. An explicit value that breaks a rule is an error, never changed.
Rules are evaluated generically from the data: no code branches on a level or industry.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib.resources import files
from typing import Final, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from paulyops.core import vocabulary
from paulyops.core.errors import ConfigError, FieldError
from paulyops.core.settings import Settings
from paulyops.services.onboarding.errors import show

DATA_PACKAGE: Final = "paulyops"
DATA_DIR: Final = "data"
# The preset that applies when neither the admin, a template nor the instance picks one.
DEFAULT_COMPLIANCE_LEVEL: Final = vocabulary.DEFAULT_COMPLIANCE_LEVEL.value
# Sections a template may fill; the organization's name, industry and size are the admin's.
TEMPLATE_SECTIONS: Final = ("storage", "security", "agents")
SPEC_SECTIONS: Final = ("organization", "storage", "security", "agents")

AGENT_NAME_PATTERN: Final = vocabulary.AGENT_NAME_PATTERN
AGENT_ID_PREFIX: Final = "paulyops."
MEDIA_TYPE_PATTERN: Final = r"^(\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*))$"
DOCUMENT_CLASS_PATTERN: Final = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
FOLDER_PATTERN: Final = r"^[a-z0-9][a-z0-9-]*(/[a-z0-9][a-z0-9-]*)*$"
WIRE_PATH_PATTERN: Final = r"^(organization|storage|security|agents)\.[a-z][A-Za-z0-9]*$"

# Settings fields that are defaults for new organizations, and the answer each one fills.
SETTINGS_ANSWERS: Final[Mapping[str, tuple[str, str]]] = {
    "compliance_level": ("organization", "complianceLevel"),
    "storage_providers": ("storage", "providers"),
    "backup_strategy": ("storage", "backupStrategy"),
    "retention_days": ("storage", "retentionDays"),
    "audit_logging": ("security", "auditLogging"),
    "audit_retention_days": ("security", "dataRetention"),
    "encryption_level": ("security", "encryptionLevel"),
    "default_agents": ("agents", "defaultAgents"),
    "auto_routing": ("agents", "autoRouting"),
    "confidence_threshold": ("agents", "confidenceThreshold"),
    "monitoring_enabled": ("agents", "monitoringEnabled"),
}

PartialSpec = dict[str, dict[str, JsonValue]]


class Missing(Enum):
    """Marks an answer that is not there (a rule on it does not apply yet)."""

    MISSING = "missing"


MISSING: Final = Missing.MISSING


class _DataModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


# --- agent catalog -----------------------------------------------------------------------


class AgentHandles(_DataModel):
    """What an agent processes: the router matches files against these."""

    media_types: list[str] = Field(min_length=1)
    document_classes: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_patterns(self) -> AgentHandles:
        for media_type in self.media_types:
            if not re.fullmatch(MEDIA_TYPE_PATTERN, media_type):
                raise ValueError(f"expected a media type like 'text/csv', got {media_type!r}")
        for name in self.document_classes:
            if not re.fullmatch(DOCUMENT_CLASS_PATTERN, name):
                raise ValueError(f"expected a kebab-case document class, got {name!r}")
        return self


CatalogStatus = Literal["bundled", "modified", "unavailable"]


class CatalogAgent(_DataModel):
    """One first-party agent: its short name, package id and whether its package exists.

    ``handles`` is not written in ``catalog.yaml``: :func:`load_catalog` fills it from the
    agent's bundled manifest (the one source of it). ``status`` is ``unavailable`` for an
    agent with no package yet, and becomes ``modified`` when the bundled package failed
    its checks at load (never used as trusted).
    """

    name: str = Field(pattern=AGENT_NAME_PATTERN, max_length=60)
    id: str
    title: str = Field(min_length=1, max_length=60)
    description: str = Field(min_length=1, max_length=120, pattern=r"^[^\n]+$")
    status: CatalogStatus = "bundled"
    handles: AgentHandles | None = None

    @model_validator(mode="after")
    def _check_id(self) -> CatalogAgent:
        if self.id != AGENT_ID_PREFIX + self.name:
            raise ValueError(f"expected id {AGENT_ID_PREFIX + self.name!r}, got {self.id!r}")
        return self

    @property
    def available(self) -> bool:
        """Whether the agent's package exists and passed its checks."""
        return self.status == "bundled"


class Catalog(_DataModel):
    """The bundled first-party agent catalog (``data/catalog.yaml``)."""

    agents: list[CatalogAgent] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique(self) -> Catalog:
        names = [agent.name for agent in self.agents]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"agent names listed twice: {', '.join(twice)}")
        return self

    @property
    def names(self) -> list[str]:
        """The short names, in catalog order."""
        return [agent.name for agent in self.agents]

    def get(self, name: str) -> CatalogAgent | None:
        """Return the agent called ``name``, or None."""
        return next((agent for agent in self.agents if agent.name == name), None)

    def unavailable_ids(self, names: list[str]) -> list[str]:
        """Return the package ids among ``names`` whose package is not available."""
        return [agent.id for n in names if (agent := self.get(n)) and not agent.available]


# --- industry templates ------------------------------------------------------------------


class RoutingHint(_DataModel):
    """Send files of a media type and/or document class to an agent."""

    media_type: str | None = Field(None, pattern=MEDIA_TYPE_PATTERN)
    document_class: str | None = Field(None, pattern=DOCUMENT_CLASS_PATTERN)
    agent: str = Field(pattern=AGENT_NAME_PATTERN)

    @model_validator(mode="after")
    def _check_match(self) -> RoutingHint:
        if self.media_type is None and self.document_class is None:
            raise ValueError("a routing hint needs a mediaType, a documentClass or both")
        return self


class IndustryTemplate(_DataModel):
    """An industry's suggestions (``data/templates/<industry>.yaml``)."""

    industry: str = Field(pattern=r"^[a-z]+$")
    description: str = Field(min_length=1)
    suggested_compliance_level: str
    suggested_providers: list[str] = Field(min_length=1)
    folders: list[str] = Field(min_length=1)
    routing_hints: list[RoutingHint] = Field(default_factory=list)
    # Phrases per document class for the document classifier's keyword rules; the
    # classifier's bundled phrases.json is the union over all templates (a test checks).
    class_phrases: dict[str, list[str]] = Field(default_factory=dict)
    defaults: PartialSpec = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_shape(self) -> IndustryTemplate:
        for folder in self.folders:
            if not re.fullmatch(FOLDER_PATTERN, folder):
                raise ValueError(f"expected a relative kebab-case folder path, got {folder!r}")
        for name, phrases in self.class_phrases.items():
            if not re.fullmatch(DOCUMENT_CLASS_PATTERN, name) or not phrases:
                raise ValueError(f"classPhrases.{name}: expected a class with at least one phrase")
        stray = sorted(set(self.defaults) - set(TEMPLATE_SECTIONS))
        if stray:
            raise ValueError(
                f"defaults may fill {', '.join(TEMPLATE_SECTIONS)} only, got {', '.join(stray)}"
            )
        return self

    @property
    def default_agents(self) -> list[str]:
        """The agents this template enables by default."""
        agents = self.defaults.get("agents", {}).get("defaultAgents", [])
        return [str(name) for name in agents] if isinstance(agents, list) else []


# --- compliance presets ------------------------------------------------------------------

Operator = Literal["eq", "ne", "gte", "lte", "in", "not_in"]
RuleValue = bool | int | float | str | list[str]


class Rule(_DataModel):
    """One enforced rule: ``field`` ``operator`` ``value``, and why."""

    field: str = Field(pattern=WIRE_PATH_PATTERN)
    operator: Operator
    value: RuleValue
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check_operands(self) -> Rule:
        is_list = isinstance(self.value, list)
        if self.operator in {"in", "not_in"} and not is_list:
            raise ValueError(f"operator {self.operator} needs a list value")
        if self.operator in {"gte", "lte"} and not _is_number(self.value):
            raise ValueError(f"operator {self.operator} needs a number value")
        if self.operator in {"eq", "ne"} and is_list:
            raise ValueError(f"operator {self.operator} needs a single value")
        return self

    def is_met(self, value: object) -> bool:
        """Return whether ``value`` satisfies the rule (values of another type do not)."""
        bound = self.value
        if self.operator == "eq":
            return _same(value, bound)
        if self.operator == "ne":
            return not _same(value, bound)
        if self.operator in {"in", "not_in"} and isinstance(bound, list):
            inside = any(_same(value, item) for item in bound)
            return inside if self.operator == "in" else not inside
        if not (_is_number(value) and _is_number(bound)):
            return False
        if isinstance(value, int | float) and isinstance(bound, int | float):
            return value >= bound if self.operator == "gte" else value <= bound
        return False

    def expectation(self) -> str:
        """Describe what the rule expects, e.g. ``at least 365``."""
        bound = self.value
        if isinstance(bound, list):
            listed = ", ".join(bound)
            return f"one of {listed}" if self.operator == "in" else f"none of {listed}"
        words = {"eq": "", "ne": "anything but ", "gte": "at least ", "lte": "at most "}
        return words[self.operator] + _wire_text(bound)


class Control(_DataModel):
    """A named compliance control, the settings that implement it and its evidence."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    settings: list[str] = Field(min_length=1)
    evidence: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check_settings(self) -> Control:
        for path in self.settings:
            if not re.fullmatch(WIRE_PATH_PATTERN, path):
                raise ValueError(
                    f"expected a setting path like 'security.auditLogging', got {path!r}"
                )
        return self


class CompliancePreset(_DataModel):
    """A compliance level's defaults, enforced rules and controls (``data/presets/``)."""

    level: str = Field(pattern=r"^[a-z0-9]+$")
    description: str = Field(min_length=1)
    frameworks: list[str] = Field(min_length=1)
    defaults: PartialSpec = Field(default_factory=dict)
    enforced: list[Rule] = Field(default_factory=list)
    controls: list[Control] = Field(min_length=1)

    def allows(self, path: str, value: object) -> bool:
        """Return whether ``value`` at wire ``path`` meets every rule on that path."""
        return all(rule.is_met(value) for rule in self.enforced if rule.field == path)

    def violations(self, lookup: Callable[[str], object]) -> list[tuple[Rule, object]]:
        """Return each broken rule with the value that breaks it.

        Args:
            lookup: returns the (validated) value at a wire path, or :data:`MISSING`;
                a rule on a missing value does not apply yet.
        """
        broken: list[tuple[Rule, object]] = []
        for rule in self.enforced:
            value = lookup(rule.field)
            if value is not MISSING and not rule.is_met(value):
                broken.append((rule, value))
        return broken

    def rule_error(self, rule: Rule, value: object, *, origin: str | None = None) -> FieldError:
        """Return the field error for ``value`` breaking ``rule``.

        Args:
            rule: the broken rule.
            value: the value received.
            origin: where the compliance level came from, when the admin did not pick it.
        """
        picked = f" (suggested by the {origin})" if origin else ""
        name = rule.field.rpartition(".")[2]
        message = (
            f"the {self.level} compliance preset{picked} requires {name} to be "
            f"{rule.expectation()}, got {show(value)} ({rule.reason})"
        )
        if origin:
            message += "; choose another organization.complianceLevel to relax it"
        allowed: list[str] | None = None
        suggestion: str | None = None
        if isinstance(rule.value, list):
            allowed = list(rule.value) if rule.operator == "in" else None
        elif rule.operator in {"eq", "gte", "lte"}:
            suggestion = _wire_text(rule.value)
            allowed = [suggestion] if rule.operator == "eq" else None
        return FieldError(rule.field, message, allowed=allowed, suggestion=suggestion)


# --- loading -----------------------------------------------------------------------------


_M = TypeVar("_M", bound=BaseModel)

# libyaml's C loader parses the packaged files about ten times faster than PyYAML's
# pure-Python one (it is most of `setup --quick`'s own work); SafeLoader is the fallback
# where PyYAML was built without libyaml. Both construct only plain data.
YAML_LOADER: Final[type[yaml.SafeLoader]] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(model: type[_M], *parts: str) -> _M:
    location = "/".join((DATA_DIR, *parts))
    try:
        text = files(DATA_PACKAGE).joinpath(DATA_DIR, *parts).read_text(encoding="utf-8")
        return model.model_validate(yaml.load(text, Loader=YAML_LOADER))  # noqa: S506  # a safe loader, see YAML_LOADER
    except (OSError, yaml.YAMLError, ValidationError) as err:
        raise ConfigError(f"packaged data file {location} is invalid: {err}") from err


# libyaml's parser when the wheel has it (much faster), else the pure-Python one.
_NESTING_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_NESTING_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
# Python's int-str conversion limit (see core/security/jsonlimits.py).
_MAX_INTEGER_DIGITS = 4300


def load_untrusted_yaml(text: str, *, source: str, max_depth: int) -> object:
    """Load YAML from outside the package (a setup file): no aliases, bounded nesting.

    One streaming pass over the parser's events refuses aliases (``*name``: an alias bomb
    expands a few lines into billions of nodes), nesting deeper than ``max_depth`` and
    integers too long to convert, in time linear in the text; only then is the document
    built, with the safe loader.

    Raises:
        ConfigError: any of those, or not valid YAML; the message names the line.
    """
    depth = 0
    try:
        for event in yaml.parse(text, Loader=YAML_LOADER):
            line = event.start_mark.line + 1 if event.start_mark is not None else 0
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    f"{source}:{line}: YAML aliases (*{event.anchor}) are not accepted in "
                    "a setup file; write the value out"
                )
            if isinstance(event, _NESTING_START):
                depth += 1
                if depth > max_depth:
                    raise ConfigError(
                        f"{source}:{line}: YAML is nested deeper than the allowed "
                        f"{max_depth} levels"
                    )
            elif isinstance(event, _NESTING_END):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent) and (
                event.implicit[0] or (event.tag or "").endswith(":int")
            ):  # a plain scalar, or one tagged !!int: what the int constructor converts
                digits = event.value.lstrip("+-").replace("_", "")
                if len(digits) > _MAX_INTEGER_DIGITS and digits.isdigit():
                    raise ConfigError(
                        f"{source}:{line}: expected a number of at most "
                        f"{_MAX_INTEGER_DIGITS} digits, got {len(digits)} digits"
                    )
        return yaml.load(text, Loader=YAML_LOADER)  # noqa: S506  # a safe loader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None


def _names_in(folder: str) -> list[str]:
    directory = files(DATA_PACKAGE).joinpath(DATA_DIR, folder)
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in directory.iterdir()
        if entry.is_file() and entry.name.endswith(".yaml")
    )


def _with_packages(catalog: Catalog) -> Catalog:
    """Return ``catalog`` with each agent's ``handles`` and state from its bundled package."""
    # Imported here: the marketplace's manifest model imports the onboarding vocabulary.
    from paulyops.services.marketplace.bundled import load_all

    packages = {a.manifest.id: a for a in load_all() if a.manifest is not None}
    listed = {agent.id for agent in catalog.agents}
    stray = sorted(set(packages) - listed)
    if stray:
        raise ConfigError(f"data/catalog.yaml does not list the bundled agents {', '.join(stray)}")
    agents = []
    for agent in catalog.agents:
        package = packages.get(agent.id)
        if agent.status == "unavailable":
            if package is not None:
                raise ConfigError(
                    f"data/catalog.yaml marks {agent.name} unavailable, but its bundled "
                    f"package exists: remove its 'status: unavailable'"
                )
            agents.append(agent)
            continue
        if package is None:
            raise ConfigError(
                f"data/catalog.yaml lists {agent.name} as packaged, but there is no "
                f"bundled package {agent.id}: mark it 'status: unavailable'"
            )
        if not package.is_trusted or package.manifest is None:
            agents.append(agent.model_copy(update={"status": "modified"}))
            continue
        handles = AgentHandles.model_validate(
            package.manifest.handles.model_dump(mode="json", by_alias=True)
        )
        agents.append(agent.model_copy(update={"handles": handles}))
    return Catalog(agents=agents)


@functools.cache
def load_catalog() -> Catalog:
    """Return the first-party agent catalog, with what each bundled package handles.

    Raises:
        ConfigError: the packaged file is missing or malformed, or it disagrees with the
            bundled packages (an agent marked unavailable has a package, or one not
            marked has none).
    """
    return _with_packages(_load(Catalog, "catalog.yaml"))


@functools.cache
def load_templates() -> dict[str, IndustryTemplate]:
    """Return every industry template by industry.

    Raises:
        ConfigError: a file is malformed, misnamed or names an agent not in the catalog.
    """
    catalog = set(load_catalog().names)
    templates: dict[str, IndustryTemplate] = {}
    for name in _names_in("templates"):
        template = _load(IndustryTemplate, "templates", f"{name}.yaml")
        if template.industry != name:
            raise ConfigError(f"data/templates/{name}.yaml declares industry {template.industry!r}")
        agents = {*template.default_agents, *(hint.agent for hint in template.routing_hints)}
        unknown = sorted(agents - catalog)
        if unknown:
            raise ConfigError(
                f"data/templates/{name}.yaml names agents not in the catalog: {', '.join(unknown)}"
            )
        templates[name] = template
    return templates


@functools.cache
def load_presets() -> dict[str, CompliancePreset]:
    """Return every compliance preset by level.

    Raises:
        ConfigError: a file is malformed or misnamed.
    """
    presets: dict[str, CompliancePreset] = {}
    for name in _names_in("presets"):
        preset = _load(CompliancePreset, "presets", f"{name}.yaml")
        if preset.level != name:
            raise ConfigError(f"data/presets/{name}.yaml declares level {preset.level!r}")
        presets[name] = preset
    return presets


def normalize_choice(value: object) -> object:
    """Return a choice as the spec compares it: trimmed and lower-case (other types as is)."""
    return value.strip().lower() if isinstance(value, str) else value


def template_for(industry: object) -> IndustryTemplate | None:
    """Return the template for an industry answer, or None (``other``, unknown, not text)."""
    key = normalize_choice(industry)
    return load_templates().get(key) if isinstance(key, str) else None


def preset_for(level: object) -> CompliancePreset | None:
    """Return the preset for a compliance level answer, or None when it is not one."""
    key = normalize_choice(level)
    return load_presets().get(key) if isinstance(key, str) else None


def settings_defaults(settings: Settings) -> PartialSpec:
    """Return the instance's defaults for new organizations that the operator actually set.

    Only variables present in the environment or ``.env.local`` count; the settings'
    built-in defaults do not override templates or presets.
    """
    out: PartialSpec = {}
    for name, (section, key) in SETTINGS_ANSWERS.items():
        if name in settings.model_fields_set:
            value = _plain(getattr(settings, name))
            out.setdefault(section, {})[key] = value
    return out


# --- applying ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedSpec:
    """Raw answers after templates and presets filled the unset ones.

    Args:
        data: the answers, in wire form, still unvalidated.
        sources: which layer filled each wire path (e.g. ``"finance template"``).
        template: the industry template applied, if any.
        preset: the compliance preset chosen, if the level is a known one.
    """

    data: dict[str, object]
    sources: dict[str, str] = field(default_factory=dict)
    template: IndustryTemplate | None = None
    preset: CompliancePreset | None = None


def apply_layers(
    raw: Mapping[str, object],
    *,
    instance_defaults: Mapping[str, Mapping[str, object]] | None = None,
) -> AppliedSpec:
    """Fill unset answers from the industry template, instance defaults and preset.

    Args:
        raw: the answers in wire form (camelCase); never modified.
        instance_defaults: defaults for new organizations, see :func:`settings_defaults`.
    """
    data = _thaw(raw)
    sources: dict[str, str] = {}
    org = _section(data, "organization")
    template = template_for(org.get("industry")) if org is not None else None
    instance = instance_defaults or {}

    if org is not None and org.get("complianceLevel") is None:
        choices = [
            (f"{template.industry} template" if template else "", _level_of(template)),
            ("instance defaults", instance.get("organization", {}).get("complianceLevel")),
            ("default", DEFAULT_COMPLIANCE_LEVEL),
        ]
        source, level = next((s, lv) for s, lv in choices if lv is not None)
        org["complianceLevel"] = level
        sources["organization.complianceLevel"] = source
    preset = preset_for(org.get("complianceLevel") if org is not None else DEFAULT_COMPLIANCE_LEVEL)

    layers: list[tuple[str, Mapping[str, Mapping[str, object]]]] = []
    if template is not None:
        layers.append((f"{template.industry} template", template.defaults))
    layers.append(("instance defaults", instance))
    if preset is not None:
        layers.append((f"{preset.level} preset", preset.defaults))
    for source, partial in layers:
        for section_name, answers in partial.items():
            section = _section(data, section_name)
            if section is None:
                continue
            for key, value in answers.items():
                path = f"{section_name}.{key}"
                if section.get(key) is not None:
                    continue
                if preset is not None and not preset.allows(path, value):
                    continue
                section[key] = copy.deepcopy(value)
                sources[path] = source
    return AppliedSpec(data=data, sources=sources, template=template, preset=preset)


def apply_template(
    raw: Mapping[str, object],
    *,
    instance_defaults: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, object]:
    """Return ``raw`` with unset answers filled by template, instance defaults and preset.

    An explicit answer is never changed, even when it breaks the preset: validation
    reports that. See :func:`apply_layers` for where each value came from.
    """
    return apply_layers(raw, instance_defaults=instance_defaults).data


def _plain(value: object) -> JsonValue:
    """Return a settings value as plain JSON data (enum members as their values)."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value  # type: ignore[no-any-return]  # every vocabulary enum is a StrEnum
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _level_of(template: IndustryTemplate | None) -> str | None:
    return template.suggested_compliance_level if template is not None else None


def _section(data: dict[str, object], name: str) -> dict[str, object] | None:
    """Return ``data[name]``, created when absent or null; None when it is not an object."""
    section = data.get(name)
    if section is None:
        section = data[name] = {}
    return section if isinstance(section, dict) else None


def _thaw(value: object) -> dict[str, object]:
    copied = _copy(value)
    return copied if isinstance(copied, dict) else {}


def _copy(value: object) -> object:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(left: object, right: object) -> bool:
    # ``True == 1`` in Python; a rule on a boolean must not accept the number 1.
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return left == right


def _wire_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = [
    "DEFAULT_COMPLIANCE_LEVEL",
    "MISSING",
    "AgentHandles",
    "AppliedSpec",
    "Catalog",
    "CatalogAgent",
    "CompliancePreset",
    "Control",
    "IndustryTemplate",
    "Missing",
    "RoutingHint",
    "Rule",
    "apply_layers",
    "apply_template",
    "load_catalog",
    "load_presets",
    "load_templates",
    "load_untrusted_yaml",
    "normalize_choice",
    "preset_for",
    "settings_defaults",
    "template_for",
]
