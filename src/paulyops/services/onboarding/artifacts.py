"""The files ``paulyops setup`` writes into an instance root, and config backups.

An instance root (see DESIGN "Instance layout") holds::

    .env.local               instance settings and secrets (mode 0600)
    configs/organization.json
    configs/storage.json     connections, and which still need credentials (no secrets)
    configs/security.json    the security answers and what the compliance preset enforces
    configs/agents.json      default agents and routing
    configs/setup.json       the complete applied SetupSpec (wire form, no secrets)
    start-paulyops.sh        starts the server for this instance
    README.md                what was set up and what to do next

:func:`write_artifacts` is all-or-nothing: every changed file is written to a temporary
name first and only then renamed into place. ``.env.local`` only ever grows: existing
values (and above all existing secrets) are kept; missing secrets and the instance
defaults for new organizations are appended.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from paulyops.core import atomic
from paulyops.core.atomic import StagedFile
from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.core.files import make_private_dir
from paulyops.core.settings import (
    ENV_FILE_NAME,
    SECRET_GENERATORS,
    SECRET_VAR_FIELDS,
    Settings,
    read_env_file,
)
from paulyops.services.onboarding.provision import ProvisionResult
from paulyops.services.onboarding.spec import SetupSpec
from paulyops.services.onboarding.templates import load_catalog

CONFIGS_DIR: Final = "configs"
START_SCRIPT: Final = "start-paulyops.sh"
README_FILE: Final = "README.md"
SETUP_JSON: Final = f"{CONFIGS_DIR}/setup.json"

# Every file write_artifacts manages, in the order they are reported.
ARTIFACT_FILES: Final = (
    ENV_FILE_NAME,
    f"{CONFIGS_DIR}/organization.json",
    f"{CONFIGS_DIR}/storage.json",
    f"{CONFIGS_DIR}/security.json",
    f"{CONFIGS_DIR}/agents.json",
    SETUP_JSON,
    START_SCRIPT,
    README_FILE,
)
# What ``backup config`` archives; .env.local only on request (it holds the secrets).
BACKUP_FILES: Final = tuple(name for name in ARTIFACT_FILES if name != ENV_FILE_NAME)

Status = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file of the instance root and what writing it did."""

    path: str
    status: Status


@dataclass
class ArtifactReport:
    """What :func:`write_artifacts` did, file by file."""

    root: Path
    files: list[ArtifactFile] = field(default_factory=list)
    generated_secrets: list[str] = field(default_factory=list)
    added_settings: list[str] = field(default_factory=list)

    def status_of(self, path: str) -> Status:
        """Return the status of the file at ``path`` (relative to the root).

        Raises:
            KeyError: the file is not one of the artifacts.
        """
        for item in self.files:
            if item.path == path:
                return item.status
        raise KeyError(path)

    @property
    def changed(self) -> list[str]:
        """The files created or updated."""
        return [item.path for item in self.files if item.status != "unchanged"]


def check_root(root: Path, *, force: bool = False) -> None:
    """Refuse an instance root that is the root of a git checkout (unless ``force``).

    Setup would replace the checkout's own README.md; the project's Quick start uses a
    git-ignored instance folder inside the checkout instead.

    Raises:
        ConflictError: ``root`` holds a ``.git`` directory (or worktree file).
    """
    if force or not (root / ".git").exists():
        return
    raise ConflictError(
        f"{root} is the root of a git checkout: setup would overwrite its README.md. "
        "Use an instance folder instead (e.g. `paulyops setup --dir ./instance`), "
        "or pass --force to write here anyway"
    )


def planned_files(root: Path) -> list[tuple[str, Status]]:
    """Return each artifact with whether it would be created or updated (for ``--dry-run``)."""
    return [(name, "updated" if (root / name).exists() else "created") for name in ARTIFACT_FILES]


def write_artifacts(
    root: Path,
    spec: SetupSpec,
    result: ProvisionResult | None,
    *,
    settings: Settings,
    force: bool = False,
    env_values: Mapping[str, str] | None = None,
) -> ArtifactReport:
    """Write the instance's generated files, all or nothing.

    Args:
        root: the instance root.
        spec: the applied setup spec.
        result: what provisioning returned (organization id, next steps), if it ran.
        settings: the instance settings (URLs, data dir).
        force: write into the root of a git checkout.
        env_values: settings the admin chose during setup (``DATABASE_URL``,
            ``REDIS_URL``); added to ``.env.local`` when it does not set them yet.

    Existing secrets in ``.env.local`` are never replaced, not even with ``force``:
    losing ``ENCRYPTION_KEY`` would lose every stored secret.

    Raises:
        ConflictError: ``root`` is a git checkout and ``force`` is false.
        OSError: a file could not be written (nothing was changed).
    """
    check_root(root, force=force)
    root = root.resolve()
    report = ArtifactReport(root=root)
    env_text, generated, added = _env_file(root, spec, settings, env_values or {})
    report.generated_secrets = generated
    report.added_settings = added
    contents: dict[str, tuple[str, int]] = {ENV_FILE_NAME: (env_text, 0o600)}
    for name, data in _config_files(spec, result).items():
        contents[name] = (_json(data), 0o600)  # configs/: the organization's settings
    contents[START_SCRIPT] = (_start_script(root, settings), 0o755)
    contents[README_FILE] = (_readme(root, spec, result, settings), 0o644)

    remove_stale_temps(root)
    # Every file is complete on disk (unnamed, see core/atomic) before the first one is
    # put in place, so a failure changes nothing and a kill leaves no copy of a secret.
    pending: list[StagedFile] = []
    try:
        for name in ARTIFACT_FILES:
            text, mode = contents[name]
            target = root / name
            old = _read(target)
            if old == text:
                report.files.append(ArtifactFile(name, "unchanged"))
                continue
            report.files.append(ArtifactFile(name, "created" if old is None else "updated"))
            pending.append(StagedFile(target, text, mode=mode))
        for staged in pending:
            staged.commit()
    finally:
        for staged in pending:
            staged.discard()
    env_path = root / ENV_FILE_NAME
    if env_path.exists() and env_path.stat().st_mode & 0o077:
        env_path.chmod(0o600)
    return report


# --- .env.local -------------------------------------------------------------------------


def instance_defaults_env(spec: SetupSpec) -> dict[str, str]:
    """Return the brief's instance-default variables for ``spec`` (``.env.local`` form)."""
    types = list(dict.fromkeys(provider.type for provider in spec.storage.providers))
    return {
        "STORAGE_PROVIDERS": ",".join(types),
        "BACKUP_STRATEGY": spec.storage.backup_strategy.value,
        "RETENTION_DAYS": str(spec.storage.retention_days),
        "COMPLIANCE_LEVEL": spec.organization.compliance_level.value,
        "AUDIT_LOGGING": _bool(spec.security.audit_logging),
        "AUDIT_RETENTION_DAYS": str(spec.security.data_retention),
        "ENCRYPTION_LEVEL": spec.security.encryption_level.value,
        "DEFAULT_AGENTS": ",".join(spec.agents.default_agents),
        "AUTO_ROUTING": _bool(spec.agents.auto_routing),
        "CONFIDENCE_THRESHOLD": str(spec.agents.confidence_threshold),
        "MONITORING_ENABLED": _bool(spec.agents.monitoring_enabled),
    }


def _env_file(
    root: Path, spec: SetupSpec, settings: Settings, chosen: Mapping[str, str]
) -> tuple[str, list[str], list[str]]:
    """Return the new ``.env.local`` text, the secrets generated and the settings added.

    A secret the settings already have from the process environment is not generated:
    a second, different value in the file would only take effect (and break every stored
    secret) the day the environment stops setting it.
    """
    path = root / ENV_FILE_NAME
    old = _read(path) or ""
    existing = {key.upper() for key in read_env_file(path)} if path.is_file() else set()
    secrets_: dict[str, str] = {
        name: make()
        for name, make in SECRET_GENERATORS.items()
        if name not in existing and getattr(settings, SECRET_VAR_FIELDS[name]) is None
    }
    settings_: dict[str, str] = {
        key: value for key, value in chosen.items() if value and key.upper() not in existing
    }
    defaults = {
        key: value
        for key, value in instance_defaults_env(spec).items()
        if key not in existing and key not in settings_
    }
    blocks: list[str] = []
    if secrets_:
        blocks.append(
            "# Instance secrets, generated by `paulyops setup`. Keep a copy somewhere safe:\n"
            "# losing ENCRYPTION_KEY loses every stored secret.\n"
            + "".join(f"{key}={value}\n" for key, value in secrets_.items())
        )
    if settings_:
        blocks.append(
            "# Services chosen during setup.\n"
            + "".join(f"{key}={value}\n" for key, value in settings_.items())
        )
    if defaults:
        blocks.append(
            "# Defaults for new organizations (an organization's own settings win).\n"
            + "".join(f"{key}={value}\n" for key, value in defaults.items())
        )
    if not blocks:
        return old, [], []
    if old and not old.endswith("\n"):
        old += "\n"
    text = old + ("\n" if old else "") + "\n".join(blocks)
    return text, sorted(secrets_), [*settings_, *defaults]


# --- configs/*.json ----------------------------------------------------------------------


def _config_files(spec: SetupSpec, result: ProvisionResult | None) -> dict[str, Any]:
    wire = spec.to_wire()
    org_id = result.organization_id if result is not None else None
    template = spec.template
    preset = spec.preset
    organization = {
        "id": org_id,
        "slug": spec.slug,
        **wire["organization"],
        "owner": wire.get("owner"),
        "folders": list(template.folders) if template else ["inbox", "archive"],
        "specHash": spec.canonical_hash(),
    }
    storage = {
        "organizationId": org_id,
        "backupStrategy": wire["storage"]["backupStrategy"],
        "retentionDays": wire["storage"]["retentionDays"],
        "providers": [
            {
                **item,
                "status": "needs_settings" if provider.missing_settings() else "configured",
                "missingSettings": provider.missing_settings(),
            }
            for provider, item in zip(
                spec.storage.providers, wire["storage"]["providers"], strict=True
            )
        ],
        "note": "Credentials are stored encrypted in the database, never in this file.",
    }
    security = {
        "organizationId": org_id,
        **wire["security"],
        "complianceLevel": preset.level,
        "frameworks": list(preset.frameworks),
        "enforced": [
            {"field": rule.field, "expects": rule.expectation(), "reason": rule.reason}
            for rule in preset.enforced
        ],
        "controls": [control.model_dump(mode="json", by_alias=True) for control in preset.controls],
    }
    catalog = load_catalog()
    agents = {
        "organizationId": org_id,
        **wire["agents"],
        "packages": [
            {
                "name": agent.name,
                "id": agent.id,
                "title": agent.title,
                "status": "available" if agent.available else "unavailable",
            }
            for name in spec.agents.default_agents
            if (agent := catalog.get(name)) is not None
        ],
        "routingHints": [
            hint.model_dump(mode="json", by_alias=True, exclude_none=True)
            for hint in (template.routing_hints if template else [])
        ],
    }
    return {
        f"{CONFIGS_DIR}/organization.json": organization,
        f"{CONFIGS_DIR}/storage.json": storage,
        f"{CONFIGS_DIR}/security.json": security,
        f"{CONFIGS_DIR}/agents.json": agents,
        SETUP_JSON: wire,
    }


# --- start script and README ----------------------------------------------------------


def paulyops_command() -> list[str]:
    """Return the absolute command that runs this installation's ``paulyops``."""
    beside = Path(sys.executable).parent / "paulyops"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("paulyops")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "paulyops.cli.main"]


def _start_script(root: Path, settings: Settings) -> str:
    command = " ".join(shlex.quote(part) for part in paulyops_command())
    worker = (
        "# REDIS_URL is set: agent jobs could also run in separate worker processes.\n"
        "# There is no `paulyops worker` command yet; until there is, the server runs\n"
        "# agent jobs in its own worker threads.\n"
        if settings.redis_url
        else "# Agent jobs run in worker threads inside the server (the embedded default).\n"
    )
    return (
        "#!/bin/sh\n"
        "# Starts PaulyOps for the instance in this folder. Generated by `paulyops setup`.\n"
        "# Extra arguments go to `paulyops serve` (e.g. --port 8080).\n"
        "set -eu\n"
        f"cd {shlex.quote(str(root))}\n"
        f"export PAULYOPS_HOME={shlex.quote(str(root))}\n"
        f"{worker}"
        f'exec {command} serve "$@"\n'
    )


def _readme(root: Path, spec: SetupSpec, result: ProvisionResult | None, settings: Settings) -> str:
    org = spec.organization
    lines = [
        f"# PaulyOps instance: {org.name}",
        "",
        "Generated by `paulyops setup`. Re-running setup with the same answers changes nothing.",
        "",
        "## Organization",
        "",
        f"- Name: {org.name} (slug `{spec.slug}`)",
    ]
    if result is not None:
        lines.append(f"- Id: `{result.organization_id}`")
    lines += [
        f"- Industry: {org.industry.value}; compliance level: {org.compliance_level.value}",
        f"- Roles model: {spec.security.rbac_model.value}; "
        f"encryption: {spec.security.encryption_level.value}",
        f"- Default agents: {', '.join(spec.agents.default_agents) or 'none'}",
        "",
        "## Start",
        "",
        "```sh",
        f"{shlex.quote(str(root / START_SCRIPT))}",
        "```",
        "",
        f"Then open {settings.effective_public_url}.",
        "",
        "## Where things live",
        "",
        f"- `{ENV_FILE_NAME}`: instance settings and secrets (readable by you only)",
        f"- `{CONFIGS_DIR}/`: what was set up; `{SETUP_JSON}` re-creates the same "
        f"organization elsewhere with `paulyops setup --config {SETUP_JSON}`",
        f"- Data (database, setup token, local storage, logs): `{settings.data_dir}`",
        f"- Database: {_database_label(settings)}",
        "",
        "## Next steps",
        "",
    ]
    steps = ["Run `paulyops setup` to finish"]
    if result is not None:
        # The first run's password step is one-time; the README must not change on re-runs.
        steps = result.next_steps[1:] if result.owner_password_link else list(result.next_steps)
        if spec.owner is not None:
            steps.insert(
                0,
                f"{spec.owner.name} sets a password with the one-time link `paulyops setup` "
                "printed (valid 7 days; a platform admin can send a new one)",
            )
    lines += [f"{number}. {step}" for number, step in enumerate(steps, 1)]
    lines += [
        "",
        "## Keep a copy of `.env.local` somewhere safe",
        "",
        "Keep a copy of .env.local somewhere safe: losing ENCRYPTION_KEY loses every stored "
        "secret. `paulyops backup config --include-secrets` packs it with the configs.",
        "",
        "Useful commands: `paulyops validate env`, `paulyops validate config`, "
        "`paulyops backup config`, `paulyops health`.",
        "",
    ]
    return "\n".join(lines)


def _database_label(settings: Settings) -> str:
    if settings.database_url:
        return "PostgreSQL (DATABASE_URL)"
    return f"embedded SQLite at `{settings.data_dir / 'paulyops.db'}`"


# --- backups ----------------------------------------------------------------------------


def backup_config(root: Path, output: Path, *, include_secrets: bool = False) -> Path:
    """Pack the instance's generated files into a timestamped ``.tar.gz`` in ``output``.

    Only regular files are archived (links are skipped), with their owner names cleared.
    With ``include_secrets`` the archive also holds ``.env.local``. The archive is created
    with mode 0600 either way (it holds the organization's configuration).

    Raises:
        NotFoundError: none of the files exist (setup has not run in ``root``).
    """
    root = root.resolve()
    names: Iterable[str] = (*BACKUP_FILES, ENV_FILE_NAME) if include_secrets else BACKUP_FILES
    present = [name for name in names if _regular_file(root / name)]
    if not present:
        raise NotFoundError(f"nothing to back up in {root}: run `paulyops setup` there first")
    make_private_dir(output)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    mode = 0o600  # a backup holds the organization's configuration, secrets or not
    target, fd = _create_exclusive(output, f"paulyops-config-{stamp}", mode)
    try:
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
            for name in present:
                tar.add(root / name, arcname=name, recursive=False, filter=_anonymous)
        os.chmod(target, mode)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _regular_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _create_exclusive(output: Path, stem: str, mode: int) -> tuple[Path, int]:
    for number in range(100):
        suffix = f"-{number}" if number else ""
        target = output / f"{stem}{suffix}.tar.gz"
        try:
            return target, os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
    raise ConflictError(f"too many backups named {stem}*.tar.gz in {output}")


# --- helpers ----------------------------------------------------------------------------


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def remove_stale_temps(root: Path) -> list[Path]:
    """Delete the temporary files interrupted runs of setup (or key rotation) left in ``root``.

    Only temporaries of the files setup writes (``.env.local`` among them, which holds
    every secret) and of the setup token; nothing else in the folder is touched.
    """
    removed: list[Path] = []
    for name in ARTIFACT_FILES:
        removed += atomic.remove_stale_temps(root / name)
    return removed


__all__ = [
    "ARTIFACT_FILES",
    "BACKUP_FILES",
    "SETUP_JSON",
    "ArtifactFile",
    "ArtifactReport",
    "backup_config",
    "check_root",
    "instance_defaults_env",
    "paulyops_command",
    "planned_files",
    "remove_stale_temps",
    "write_artifacts",
]
