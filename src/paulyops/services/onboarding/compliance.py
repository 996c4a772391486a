"""The compliance report: an organization's preset controls against its configuration.

:func:`compliance_report` renders, as Markdown, for one organization:

* its facts (id, slug, name, industry, size, compliance level, when it was set up);
* per named control of its compliance preset (``data/presets/<level>.yaml``): the settings
  the control maps to, the value configured in the organization's ``security_configs``,
  ``agent_configs`` and ``storage_configs`` rows, whether the control is met, and where
  an auditor finds the evidence;
* the sha256 of its inputs (the canonical JSON of those configuration rows, and the
  preset file's bytes) and the head of the organization's audit chain (latest ``seq``,
  ``row_hash`` and ``created_at``) with the result of :func:`~paulyops.services.audit.verify`.

The report is reproducible: it contains no current time, no random value and no secret,
so the same configuration, preset file and audit chain (rows and checkpoints) give
byte-identical output. Anyone holding the report can recompute the configuration hash
from the rows and compare the chain head with ``paulyops audit verify``.

A control is **met** when every setting it maps to is configured and meets every rule the
preset enforces on it, and — for a control whose evidence is the audit log — the
organization's audit chain verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.engine import Database
from paulyops.core.db.models import (
    AgentConfig,
    AuditCheckpoint,
    AuditLog,
    Organization,
    SecurityConfig,
    StorageConfig,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConfigError, NotFoundError
from paulyops.services import audit
from paulyops.services.onboarding.templates import (
    DATA_DIR,
    DATA_PACKAGE,
    CompliancePreset,
    Control,
    load_presets,
)

REPORT_FORMAT: Final = "paulyops-compliance-report-v1"
NOT_CONFIGURED: Final = "(not configured)"
# Evidence that lives in the audit log is only as good as the chain's integrity.
_AUDIT_EVIDENCE: Final = ("audit_logs", "audit verify", "audit_checkpoints")
_MARKDOWN_SPECIALS: Final = "\\`*_[]<>|#"


class _Unset:
    """The value of a setting whose configuration row does not exist."""

    def __repr__(self) -> str:
        return NOT_CONFIGURED


UNSET: Final = _Unset()


class Several(list[object]):
    """Different values of one setting across several rows (e.g. storage connections)."""


@dataclass(frozen=True, slots=True)
class SettingCheck:
    """One setting of a control: its value and the preset's verdict on it."""

    path: str
    value: object
    met: bool
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ControlResult:
    """One named control: its settings, whether it is met, and where the evidence is."""

    control: Control
    settings: tuple[SettingCheck, ...]
    met: bool
    problems: tuple[str, ...]


# --- inputs ------------------------------------------------------------------------------


def _first(scope: OrgScope, model: Any) -> Any:
    stmt = scope.select(model).order_by(model.created_at, model.id).limit(1)
    return scope.session.scalars(stmt).first()


def _configuration(session: Session, org: Organization) -> dict[str, Any]:
    """Return the organization's configuration rows as canonical, JSON-ready values.

    Timestamps are left out (touching a row without changing it is no new configuration),
    and so are credentials: only whether they are stored, never the ciphertext.
    """
    scope = OrgScope(session, org.id)
    security: SecurityConfig | None = _first(scope, SecurityConfig)
    agents: AgentConfig | None = _first(scope, AgentConfig)
    storage = session.scalars(
        scope.select(StorageConfig).order_by(StorageConfig.name, StorageConfig.id)
    ).all()
    return {
        "organization": {
            "id": org.id,
            "slug": org.slug,
            "name": org.name,
            "industry": org.industry,
            "complianceLevel": org.compliance_level,
            "size": org.size,
            "rbacModel": org.rbac_model,
            "specHash": org.spec_hash,
            "settings": org.settings,
        },
        "security": None
        if security is None
        else {
            "id": security.id,
            "rbacModel": org.rbac_model,
            "auditLogging": security.audit_logging,
            "dataRetention": security.audit_retention_days,
            "encryptionLevel": security.encryption_level,
            "requireAdmin2fa": security.require_admin_2fa,
            "sessionIdleMinutes": security.session_idle_minutes,
            "sessionAbsoluteHours": security.session_absolute_hours,
            "allowUnsignedAgents": security.allow_unsigned_agents,
            "settings": security.settings,
        },
        "agents": None
        if agents is None
        else {
            "id": agents.id,
            "defaultAgents": list(agents.default_agents),
            "autoRouting": agents.auto_routing,
            "confidenceThreshold": agents.confidence_threshold,
            "monitoringEnabled": agents.monitoring_enabled,
            "routingHints": agents.routing_hints,
        },
        "storage": [
            {
                "id": row.id,
                "name": row.name,
                "provider": row.provider,
                "settings": row.settings,
                "credentialsStored": row.credentials is not None,
                "backupStrategy": row.backup_strategy,
                "retentionDays": row.retention_days,
                "status": row.status,
            }
            for row in storage
        ],
    }


def canonical_json(value: object) -> bytes:
    """Return ``value`` as canonical JSON bytes: keys sorted, no spaces, UTF-8."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def preset_bytes(level: str) -> bytes:
    """Return the bytes of the packaged preset file for ``level``.

    Raises:
        ConfigError: there is no such preset file.
    """
    if level not in load_presets():
        raise ConfigError(f"no compliance preset {level!r} in {DATA_DIR}/presets")
    return files(DATA_PACKAGE).joinpath(DATA_DIR, "presets", f"{level}.yaml").read_bytes()


# --- settings ----------------------------------------------------------------------------


def _single(values: Sequence[object]) -> object:
    """Return the one distinct value of ``values``, :class:`Several` of them, or UNSET."""
    distinct: list[object] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    if not distinct:
        return UNSET
    if len(distinct) == 1:
        return distinct[0]
    return Several(sorted(distinct, key=str))


def setting_lookup(config: Mapping[str, Any]) -> Callable[[str], object]:
    """Return a function giving the configured value at a setting's wire path (or UNSET)."""
    org = config["organization"]
    security = config["security"]
    agents = config["agents"]
    storage: list[dict[str, Any]] = config["storage"]

    def lookup(path: str) -> object:
        section, _, key = path.partition(".")
        if section == "organization":
            return org.get(key, org["settings"].get(key, UNSET))
        if section == "security":
            return UNSET if security is None else security.get(key, UNSET)
        if section == "agents":
            return UNSET if agents is None else agents.get(key, UNSET)
        if section == "storage":
            if key == "providers":
                return [row["provider"] for row in storage] or UNSET
            if key in {"backupStrategy", "retentionDays"}:
                return _single([row[key] for row in storage])
        return UNSET

    return lookup


def _check_setting(preset: CompliancePreset, path: str, value: object) -> SettingCheck:
    if value is UNSET:
        return SettingCheck(path, value, False, (f"{path} is not configured",))
    problems = tuple(
        f"{path} must be {rule.expectation()} ({rule.reason})"
        for rule in preset.enforced
        if rule.field == path and not _meets(rule.is_met, value)
    )
    return SettingCheck(path, value, not problems, problems)


def _meets(is_met: Callable[[object], bool], value: object) -> bool:
    # Several storage rows with different values: each must meet the rule.
    if isinstance(value, Several):
        return all(is_met(item) for item in value)
    return is_met(value)


def _uses_audit_evidence(control: Control) -> bool:
    return any(marker in control.evidence for marker in _AUDIT_EVIDENCE)


def evaluate(
    preset: CompliancePreset, config: Mapping[str, Any], *, chain_ok: bool
) -> list[ControlResult]:
    """Return each control of ``preset`` checked against the configuration rows.

    Args:
        preset: the organization's compliance preset.
        config: the rows as :func:`compliance_report` reads them.
        chain_ok: whether the organization's audit chain verifies.
    """
    lookup = setting_lookup(config)
    results: list[ControlResult] = []
    for control in preset.controls:
        checks = tuple(_check_setting(preset, path, lookup(path)) for path in control.settings)
        problems = [problem for check in checks for problem in check.problems]
        if _uses_audit_evidence(control) and not chain_ok:
            problems.append("the audit chain does not verify (see Audit chain)")
        results.append(ControlResult(control, checks, not problems, tuple(problems)))
    return results


# --- rendering ---------------------------------------------------------------------------


def _text(value: object) -> str:
    """Render a configured value in wire form (``true``, ``365``, ``a, b``)."""
    if value is UNSET:
        return NOT_CONFIGURED
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value) if value else "(none)"
    if isinstance(value, dict):
        return canonical_json(value).decode("utf-8")
    return str(value)


def _md(value: object) -> str:
    """Escape text from the database so it renders literally in Markdown."""
    text = _text(value).replace("\r", " ").replace("\n", " ")
    return "".join(f"\\{char}" if char in _MARKDOWN_SPECIALS else char for char in text)


def _code(value: object) -> str:
    return "`" + _text(value).replace("`", "'") + "`"


@dataclass(frozen=True, slots=True)
class _ChainHead:
    seq: int | None
    row_hash: str | None
    created_at: str | None
    checkpoint: AuditCheckpoint | None


def _chain_head(session: Session, chain: str) -> _ChainHead:
    row = session.execute(
        select(AuditLog.seq, AuditLog.row_hash, AuditLog.created_at)
        .where(AuditLog.chain == chain)
        .order_by(AuditLog.seq.desc())
        .limit(1)
    ).first()
    cp = session.scalars(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.chain == chain)
        .order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.created_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return _ChainHead(None, None, None, cp)
    return _ChainHead(row.seq, row.row_hash, audit.format_timestamp(row.created_at), cp)


def compliance_report(
    db: Database,
    organization_id: str,
    *,
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
) -> bytes:
    """Return the organization's compliance report as UTF-8 Markdown.

    Args:
        db: the database.
        organization_id: the organization's id.
        public_key: the instance's audit verifying key(s), see
            :func:`~paulyops.services.audit.verifying_key`.

    Raises:
        NotFoundError: no organization has this id.
        ConfigError: the organization's compliance level has no preset file.
    """
    with db.session() as session:
        org = session.get(Organization, organization_id)
        if org is None:
            raise NotFoundError(f"organization {organization_id!r} not found")
        config = _configuration(session, org)
        org_created = audit.format_timestamp(org.created_at)
        head = _chain_head(session, org.id)
    level = str(config["organization"]["complianceLevel"])
    presets = load_presets()
    if level not in presets:
        raise ConfigError(
            f"organization {organization_id!r} has unknown compliance level {level!r}"
        )
    preset = presets[level]
    preset_raw = preset_bytes(level)
    config_bytes = canonical_json(config)
    config_sha = hashlib.sha256(config_bytes).hexdigest()
    preset_sha = hashlib.sha256(preset_raw).hexdigest()
    inputs_sha = hashlib.sha256(config_bytes + b"\n" + preset_raw).hexdigest()

    verified = audit.verify(db, public_key, chain=organization_id)
    chain = verified.chains[0] if verified.chains else None
    chain_ok = chain is not None and chain.status == "ok"
    results = evaluate(preset, config, chain_ok=chain_ok)
    met = sum(1 for result in results if result.met)

    info = config["organization"]
    lines = [
        f"# Compliance report: {_md(info['name'])}",
        "",
        f"Format: {REPORT_FORMAT}",
        "",
        "## Organization",
        "",
        f"- Id: {_code(info['id'])}",
        f"- Slug: {_code(info['slug'])}",
        f"- Name: {_md(info['name'])}",
        f"- Industry: {_md(info['industry'])}",
        f"- Size: {_md(info['size'])}",
        f"- Set up: {org_created}",
        "",
        "## Compliance preset",
        "",
        f"- Level: {_md(preset.level)}",
        f"- Frameworks: {_md(preset.frameworks)}",
        f"- Description: {_md(preset.description.strip())}",
        f"- Controls met: {met} of {len(results)}",
        "",
        "## Controls",
        "",
    ]
    for result in results:
        control = result.control
        verdict = "MET" if result.met else "NOT MET"
        lines += [f"### {_md(control.id)}: {_md(control.name)}", "", f"- Status: **{verdict}**"]
        lines.append("- Settings:")
        for check in result.settings:
            mark = "ok" if check.met else "fails"
            lines.append(f"  - {_code(check.path)} = {_code(check.value)} ({mark})")
        for problem in result.problems:
            lines.append(f"- Problem: {_md(problem)}")
        lines += [f"- Evidence: {_md(control.evidence)}", ""]

    lines += ["## Storage connections", ""]
    if not config["storage"]:
        lines.append("- (none)")
    for row in config["storage"]:
        credentials = "stored encrypted" if row["credentialsStored"] else "none stored"
        lines.append(
            f"- {_code(row['name'])} ({_md(row['provider'])}): status {_md(row['status'])}, "
            f"backup {_md(row['backupStrategy'])}, retention {row['retentionDays']} days, "
            f"credentials {credentials}"
        )
    lines += ["", "## Audit chain", "", f"- Chain: {_code(organization_id)}"]
    if head.seq is None:
        lines.append("- Head: (no rows)")
    else:
        lines += [
            f"- Head seq: {head.seq}",
            f"- Head row_hash: {_code(head.row_hash)}",
            f"- Head created_at: {head.created_at}",
        ]
    if head.checkpoint is not None:
        cp = head.checkpoint
        lines.append(
            f"- Latest signed checkpoint: {cp.kind} at seq {cp.seq}, "
            f"{audit.format_timestamp(cp.created_at)}, key {_code(cp.key_id)}"
        )
    else:
        lines.append("- Latest signed checkpoint: (none)")
    if chain is None:
        lines.append("- Verify: no rows to verify")
    else:
        lines.append(
            f"- Verify: {chain.status} ({chain.rows_checked} rows, "
            f"{chain.checkpoints_checked} checkpoints checked)"
        )
        if chain.problem is not None:
            lines.append(f"- Verify problem: {_md(chain.problem.message)}")
    lines += [
        "",
        "## Inputs",
        "",
        f"- Configuration sha256: {_code(config_sha)} (canonical JSON of the rows below)",
        f"- Preset file sha256: {_code(preset_sha)} ({DATA_DIR}/presets/{preset.level}.yaml)",
        f"- Inputs sha256: {_code(inputs_sha)} (configuration JSON, newline, preset bytes)",
        "",
        "```json",
        config_bytes.decode("utf-8"),
        "```",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


__all__ = [
    "NOT_CONFIGURED",
    "REPORT_FORMAT",
    "UNSET",
    "ControlResult",
    "SettingCheck",
    "Several",
    "canonical_json",
    "compliance_report",
    "evaluate",
    "preset_bytes",
    "setting_lookup",
]
