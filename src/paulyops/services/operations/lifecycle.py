"""Upgrade and reset an instance, each behind a fresh backup.

:func:`upgrade` re-checks the settings and the setup configuration, backs up, migrates the
schema to the newest revision and reports every migration it ran; when a migration fails
it restores the backup and says so. :func:`reset` backs up, recreates the schema empty and
removes what setup generated, so the instance starts over at first run with a new setup
token; the customers' files in ``<data>/storage`` stay unless asked. Neither touches
anything outside the instance root and the data directory.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from paulyops.core.db import migrate
from paulyops.core.db.engine import Database
from paulyops.core.errors import ConfigError, PaulyOpsError
from paulyops.core.settings import Settings, weak_secrets
from paulyops.services.actor import Actor
from paulyops.services.backups import instance as backups


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration that ran: its revision id and what it does (its docstring's line)."""

    revision: str
    summary: str


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    """What an upgrade did."""

    before: str | None
    after: str | None
    migrations: list[Migration]
    backup: backups.BackupInfo | None
    config_checked: bool


class UpgradeFailedError(PaulyOpsError):
    """A migration failed; the database was restored from the backup taken just before."""


def _check_configuration(settings: Settings) -> bool:
    """Re-validate the settings and ``configs/setup.json`` (if setup wrote one)."""
    if settings.is_production and weak_secrets(settings):
        raise ConfigError(
            f"missing or weak secrets: {', '.join(weak_secrets(settings))} "
            "(run `paulyops validate env`); nothing was changed"
        )
    from paulyops.services.onboarding.artifacts import SETUP_JSON
    from paulyops.services.onboarding.spec import parse_spec

    path = settings.root / SETUP_JSON
    if not path.is_file():
        return False
    from paulyops.core.security.jsonlimits import MAX_JSON_DEPTH, parse_json_document

    raw = path.read_bytes()
    parse_spec(parse_json_document(raw, source=str(path), max_depth=MAX_JSON_DEPTH))
    return True


def pending_migrations(db: Database) -> list[Migration]:
    """The migrations between the database's revision and the newest, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config(db))
    current = migrate.current_revision(db)
    head = scripts.get_current_head()
    if current == head:
        return []
    steps = list(scripts.iterate_revisions(head, current or "base"))
    return [
        Migration(script.revision, (script.doc or "").strip().splitlines()[0] if script.doc else "")
        for script in reversed(steps)
    ]


def upgrade(settings: Settings, db: Database) -> UpgradeReport:
    """Back up, migrate to the newest schema, report; restore the backup if a step fails.

    Raises:
        ConfigError: the settings or ``configs/setup.json`` are invalid (nothing changed).
        UpgradeFailedError: a migration failed; the database is as it was before.
    """
    checked = _check_configuration(settings)
    before = migrate.current_revision(db)
    steps = pending_migrations(db)
    if not steps:
        return UpgradeReport(before, before, [], None, checked)
    backup = backups.create(settings, db, reason="upgrade", revision=before)
    try:
        migrate.upgrade(db)
    except Exception as err:
        cause = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        restored = Database(settings.effective_database_url)
        try:
            backups.restore(settings, restored, backup.path, config=False)
        finally:
            restored.close()
        raise UpgradeFailedError(
            f"the upgrade failed ({cause}); the database was restored from "
            f"{backup.path} and is back at revision {before or 'empty'}"
        ) from err
    return UpgradeReport(before, migrate.current_revision(db), steps, backup, checked)


@dataclass(frozen=True, slots=True)
class ResetReport:
    """What a reset removed, the backup taken first, and the new setup token."""

    backup: backups.BackupInfo
    removed: list[Path] = field(default_factory=list)
    setup_token: str | None = None


def _inside(path: Path, folder: Path) -> bool:
    resolved = path.resolve()
    return resolved == folder.resolve() or folder.resolve() in resolved.parents


def reset(settings: Settings, db: Database, *, include_files: bool, actor: Actor) -> ResetReport:
    """Return the instance to first run, after a backup.

    The schema is dropped and recreated (every organization, user, audit row — all in the
    backup), the files setup generated are removed, the setup token file is replaced by a
    new token; ``<data>/storage`` is emptied only with ``include_files``.
    """
    from paulyops.services.onboarding.artifacts import planned_files
    from paulyops.services.onboarding.firstrun import ensure_setup_token

    backup = backups.create(settings, db, reason="reset", revision=migrate.current_revision(db))
    migrate.downgrade(db, "base")
    migrate.upgrade(db)
    removed: list[Path] = []
    for relative, _status in planned_files(settings.root):
        path = settings.root / relative
        if relative == ".env.local" or not path.is_file() or not _inside(path, settings.root):
            continue  # the instance's own secrets stay: the backup key is among them
        path.unlink()
        removed.append(path)
    storage = settings.data_dir / "storage"
    if include_files and storage.is_dir() and _inside(storage, settings.data_dir):
        shutil.rmtree(storage)
        removed.append(storage)
    token = ensure_setup_token(db, settings.data_dir, actor=actor, force=True)
    return ResetReport(backup, removed, token)


__all__ = [
    "Migration",
    "ResetReport",
    "UpgradeFailedError",
    "UpgradeReport",
    "pending_migrations",
    "reset",
    "upgrade",
]
