"""What the console shows of an organization's agents, and its settings form from the schema.

Read-only views built on :mod:`paulyops.services.agents.lifecycle` (the one service that
changes installations): the installed agents with their trust badge and newest version,
the default agents chosen at setup that are not installed (``unavailable`` when their
package does not exist yet), one agent's page, and the settings form generated from the
manifest's JSON Schema. :func:`parse_settings_form` turns the form's strings back into a
:class:`~paulyops.services.agents.lifecycle.ConfigureAgent`; a secret field's value is
never part of any view (only ``set`` / ``not set``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from paulyops.core.db.models import AgentConfig, AgentPackage
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import NotFoundError, SpecValidationError
from paulyops.services.agents import lifecycle
from paulyops.services.agents.installations import InstallationView
from paulyops.services.marketplace import listing
from paulyops.services.marketplace.listing import VersionView
from paulyops.services.onboarding.templates import load_catalog

# Words a field name spells in lower case that a label shows in capitals ("apiKey" -> "API key").
ACRONYMS = frozenset({"api", "url", "id", "ip", "smtp", "imap", "ftp", "sftp", "vat", "iban"})
EDITABLE_TYPES = frozenset({"string", "integer", "number", "boolean"})
# How much of a typed value a form shows again after an error.
MAX_SHOWN = 300
T = TypeVar("T")
DefaultState = Literal["unavailable", "not installed"]


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class InstalledAgent(_View):
    """One installed agent as the console lists it: the installation and its trust."""

    installation: InstallationView
    badge: str | None
    badge_label: str | None
    revoked_reason: str | None
    latest_version: str | None
    update_available: bool


class DefaultAgent(_View):
    """A default agent chosen at setup that is not installed in the organization."""

    id: str
    title: str
    description: str
    state: DefaultState


class AgentsOverview(_View):
    """The organization's agents page: what is installed, and the defaults that are not."""

    installed: list[InstalledAgent]
    defaults: list[DefaultAgent]


class SettingsField(_View):
    """One field of an agent's settings form, from its JSON Schema.

    ``value`` is the stored plain value (``None`` when unset); a secret field never has
    one, only ``secret_state``. ``editable`` is false for arrays and objects, which the
    console shows but leaves to ``paulyops agents configure``.
    """

    name: str
    label: str
    type: str
    description: str
    default: Any = None
    required: bool = False
    secret: bool = False
    secret_state: str | None = None
    enum: list[Any] | None = None
    bounds: dict[str, Any] = {}
    value: Any = None
    editable: bool = True


class AgentPage(_View):
    """One installed agent's page: the listing row, its description, settings and versions."""

    agent: InstalledAgent
    description: str
    settings: list[SettingsField]
    versions: list[VersionView]
    dependents: list[str]


def _label(name: str, prop: Mapping[str, Any]) -> str:
    title = prop.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()[:80]
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").lower().split()
    words = [w.upper() if w in ACRONYMS else w for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _manifest_of(scope: OrgScope, package_id: str | None) -> dict[str, Any]:
    row = scope.session.get(AgentPackage, package_id) if package_id else None
    return dict(row.manifest) if row is not None else {}


def _latest_versions(scope: OrgScope) -> dict[str, str]:
    return {a.id: a.latest_version for a in listing.search_agents(scope, listing.SearchAgents())}


def _installed(
    inst: InstallationView, versions: Mapping[str, VersionView], latest: Mapping[str, str]
) -> InstalledAgent:
    stored = versions.get(inst.package_id or "")
    newest = latest.get(inst.agent_id)
    return InstalledAgent(
        installation=inst,
        badge=stored.badge if stored else None,
        badge_label=stored.badge_label if stored else None,
        revoked_reason=stored.revoked_reason if stored else None,
        latest_version=newest,
        update_available=bool(
            newest and newest != inst.version and _version_key(newest) > _version_key(inst.version)
        ),
    )


def _version_key(version: str) -> tuple[int, Any]:
    """Sort key of a version string: PEP 440 versions above anything unparsable."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _defaults(scope: OrgScope, installed: set[str]) -> list[DefaultAgent]:
    config = scope.first(AgentConfig)
    if config is None:
        return []
    catalog = {agent.id: agent for agent in load_catalog().agents}
    out = []
    for agent_id in config.default_agents:
        if agent_id in installed:
            continue
        agent = catalog.get(agent_id)
        out.append(
            DefaultAgent(
                id=agent_id,
                title=agent.title if agent else agent_id,
                description=agent.description if agent else "",
                state="not installed" if agent is not None and agent.available else "unavailable",
            )
        )
    return out


def overview(scope: OrgScope) -> AgentsOverview:
    """Return the organization's installed agents and its not-installed default agents."""
    rows = lifecycle.list_installations(scope)
    versions = listing.package_versions(scope.session, [r.package_id for r in rows])
    latest = _latest_versions(scope)
    return AgentsOverview(
        installed=[_installed(r, versions, latest) for r in rows],
        defaults=_defaults(scope, {r.agent_id for r in rows}),
    )


def settings_fields(
    scope: OrgScope, inst: InstallationView, shown: Mapping[str, Any] | None = None
) -> list[SettingsField]:
    """Return the settings form of an installation, from its manifest's JSON Schema.

    Args:
        shown: values to show instead of the stored ones (a form sent back after an
            error keeps what was typed); secret fields ignore it.
    """
    schema = _manifest_of(scope, inst.package_id).get("settings", {})
    props: dict[str, Any] = dict(schema.get("properties", {})) if isinstance(schema, dict) else {}
    required = set(schema.get("required", [])) if isinstance(schema, dict) else set()
    out = []
    for name, prop in props.items():
        if not isinstance(prop, dict):
            continue
        kind = str(prop.get("type", "string"))
        secret = prop.get("secret") is True
        bounds = {
            key: prop[key]
            for key in ("minimum", "maximum", "minLength", "maxLength", "pattern")
            if key in prop
        }
        value = None
        if not secret:
            value = shown.get(name) if shown is not None else inst.settings.get(name)
        enum = prop.get("enum")
        out.append(
            SettingsField(
                name=name,
                label=_label(name, prop),
                type=kind,
                description=str(prop.get("description", ""))[:500],
                default=None if secret else prop.get("default"),
                required=name in required,
                secret=secret,
                secret_state=inst.secrets.get(name, "not set") if secret else None,
                enum=list(enum) if isinstance(enum, list) else None,
                bounds=bounds,
                value=value,
                editable=kind in EDITABLE_TYPES,
            )
        )
    return out


def agent_page(scope: OrgScope, ref: str, shown: Mapping[str, Any] | None = None) -> AgentPage:
    """Return one installed agent's page (by installation id or agent id).

    Raises:
        NotFoundError: not installed in this organization.
    """
    inst = lifecycle.show(scope, ref)
    versions = listing.package_versions(scope.session, [inst.package_id])
    try:
        detail: listing.AgentDetail | None = listing.agent_detail(scope, inst.agent_id)
    except NotFoundError:
        detail = None
    latest = {inst.agent_id: detail.latest_version} if detail else {}
    manifest = _manifest_of(scope, inst.package_id)
    return AgentPage(
        agent=_installed(inst, versions, latest),
        description=str(manifest.get("description", "")),
        settings=settings_fields(scope, inst, shown),
        versions=detail.all_versions if detail else [],
        dependents=[agent for agent, _spec in lifecycle.dependents(scope, inst.agent_id)],
    )


# --- the settings form ---------------------------------------------------------------------


def _convert(field: SettingsField, raw: str) -> Any:
    """Turn a form string into the field's JSON type; ValueError names what was expected."""
    if field.enum is not None:
        for choice in field.enum:
            if str(choice) == raw:
                return choice
        raise ValueError("choose one of the listed values")
    if field.type == "integer":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw[:40]!r}") from None
    if field.type == "number":
        try:
            number = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw[:40]!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {raw[:40]!r}")
        return int(number) if number.is_integer() and "." not in raw else number
    return raw


def parse_settings_form(
    fields: list[SettingsField],
    form: Mapping[str, str | None],
    clear: set[str],
) -> tuple[lifecycle.ConfigureAgent, dict[str, str]]:
    """Turn a settings form into a configure command, and the form's own errors by field.

    An empty plain field is unset (its default applies); an empty secret field keeps its
    stored value unless it is in ``clear``; an unchecked boolean is false. Only fields
    whose value changes are in the command.

    Args:
        fields: the form as :func:`settings_fields` built it (current values).
        form: the submitted string per field name (``None``: not sent, e.g. an unchecked box).
        clear: secret fields to remove.
    """
    settings: dict[str, Any] = {}
    unset: list[str] = []
    errors: dict[str, str] = {}
    for field in fields:
        if not field.editable:
            continue
        raw = form.get(field.name)
        if field.secret:
            if field.name in clear and field.secret_state == "set":  # noqa: S105  # a state, not a password
                unset.append(field.name)
            elif raw:
                try:
                    settings[field.name] = _convert(field, raw)
                except ValueError as err:
                    errors[field.name] = str(err)
            continue
        if field.type == "boolean":
            value: Any = raw is not None and raw.lower() in {"on", "true", "1", "yes"}
            if value != field.value:
                settings[field.name] = value
            continue
        if raw is None or raw.strip() == "":
            if field.value is not None:
                unset.append(field.name)
            continue
        try:
            value = _convert(field, raw)
        except ValueError as err:
            errors[field.name] = str(err)
            continue
        if value != field.value or type(value) is not type(field.value):
            settings[field.name] = value
    command = lifecycle.ConfigureAgent(settings=settings, unset=unset)
    return command, errors


def shown_values(fields: list[SettingsField], form: Mapping[str, str | None]) -> dict[str, Any]:
    """What a form sent back after an error shows: what was typed, never a secret."""
    out: dict[str, Any] = {}
    for field in fields:
        if field.secret or not field.editable:
            out[field.name] = field.value
            continue
        raw = form.get(field.name)
        if field.type == "boolean":
            out[field.name] = raw is not None
        else:
            out[field.name] = (raw or "")[:MAX_SHOWN] or None
    return out


def setting_errors(err: SpecValidationError) -> dict[str, str]:
    """Map a configure error's fields (``settings.apiKey``) to the form's field names."""
    out: dict[str, str] = {}
    for item in err.errors:
        name = item.field.removeprefix("settings").lstrip(".") or "form"
        out.setdefault(name, item.message)
    if not out:
        out["form"] = err.message
    return out


def attempt(scope: OrgScope, step: Callable[[], T]) -> T:
    """Run one change in a savepoint: a change refused midway leaves nothing behind.

    The console catches the refusal to show it next to the form, and the request's
    transaction then commits; without the savepoint it would commit whatever the change
    wrote before it was refused.
    """
    nested = scope.session.begin_nested()
    try:
        result = step()
    except BaseException:
        nested.rollback()
        raise
    nested.commit()
    return result


__all__ = [
    "AgentPage",
    "AgentsOverview",
    "DefaultAgent",
    "InstalledAgent",
    "SettingsField",
    "agent_page",
    "attempt",
    "overview",
    "parse_settings_form",
    "setting_errors",
    "settings_fields",
    "shown_values",
]
