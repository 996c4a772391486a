"""write_artifacts and backup_config: the files an instance root holds, written all or nothing."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.core.settings import Settings, load_settings, read_env_file
from paulyops.services.onboarding.artifacts import (
    ARTIFACT_FILES,
    backup_config,
    write_artifacts,
)
from paulyops.services.onboarding.provision import ProvisionResult
from paulyops.services.onboarding.spec import SetupSpec, parse_spec

SECRETS = ("JWT_SECRET", "SESSION_SECRET", "ENCRYPTION_KEY", "PAULYOPS_INSTANCE_KEY")


def finance_spec() -> SetupSpec:
    """A finance organization with an S3 connection that still lacks credentials."""
    return parse_spec(
        {
            "organization": {"name": "Acme Finance", "industry": "finance"},
            "storage": {"providers": ["local", {"type": "s3", "bucket": "acme-docs"}]},
            "owner": {"email": "owner@acme.example", "name": "Olga Owner"},
        }
    )


def result_for(org_id: str = "org_01TEST", *, link: str | None = None) -> ProvisionResult:
    """A provision result as the first run returns it."""
    steps = ["Set the owner's password with the one-time link (valid 7 days)"] if link else []
    return ProvisionResult(
        success=True,
        organization_id=org_id,
        message="Organization setup completed successfully",
        next_steps=[*steps, "Access your PaulyOps dashboard at http://127.0.0.1:8000"],
        created=True,
        owner_password_link=link,
    )


def bare_settings(root: Path, **env: str) -> Settings:
    """Settings with no secrets anywhere (so write_artifacts generates them)."""
    return load_settings(root=root, environ={"PAULYOPS_ENV": "test", **env})


def test_writes_every_file_with_safe_modes(tmp_path):
    """Every artifact is created; .env.local is 0600 and the start script executable."""
    report = write_artifacts(
        tmp_path, finance_spec(), result_for(), settings=bare_settings(tmp_path)
    )
    assert [item.path for item in report.files] == list(ARTIFACT_FILES)
    assert {item.status for item in report.files} == {"created"}
    assert stat.S_IMODE((tmp_path / ".env.local").stat().st_mode) == 0o600
    assert os.access(tmp_path / "start-paulyops.sh", os.X_OK)
    assert sorted(report.generated_secrets) == sorted(SECRETS)
    env = read_env_file(tmp_path / ".env.local")
    assert env["COMPLIANCE_LEVEL"] == "soc2"
    assert env["STORAGE_PROVIDERS"] == "local,s3"
    assert env["RETENTION_DAYS"] == "2555"
    assert env["AUDIT_LOGGING"] == "true"
    assert env["DEFAULT_AGENTS"].startswith("file-processor,")
    assert not list(tmp_path.rglob("*.tmp"))


def test_configs_hold_no_secrets_and_name_missing_credentials(tmp_path):
    """storage.json says which settings S3 still needs; no config holds a credential."""
    spec = parse_spec(
        {
            "organization": {"name": "Acme", "industry": "other"},
            "storage": {
                "providers": [
                    {"type": "s3", "bucket": "acme-docs", "secretAccessKey": "s3cr3t-v4lue"}
                ]
            },
        }
    )
    write_artifacts(tmp_path, spec, result_for(), settings=bare_settings(tmp_path))
    storage = json.loads((tmp_path / "configs/storage.json").read_text())
    assert storage["providers"][0]["missingSettings"] == ["accessKeyId"]
    assert storage["providers"][0]["status"] == "needs_settings"
    for path in (tmp_path / "configs").iterdir():
        assert "s3cr3t-v4lue" not in path.read_text()
    assert json.loads((tmp_path / "configs/setup.json").read_text()) == spec.to_wire()


def test_start_script_and_readme_name_the_instance(tmp_path):
    """The start script exports PAULYOPS_HOME and execs an absolute paulyops; README warns."""
    write_artifacts(tmp_path, finance_spec(), result_for(), settings=bare_settings(tmp_path))
    script = (tmp_path / "start-paulyops.sh").read_text()
    assert script.startswith("#!/bin/sh\n")
    assert f"export PAULYOPS_HOME={tmp_path}" in script
    exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
    assert exec_line.split()[1].startswith("/")
    assert " serve " in exec_line
    readme = (tmp_path / "README.md").read_text()
    assert "Acme Finance" in readme
    assert "losing ENCRYPTION_KEY loses every stored secret" in readme


def test_second_write_changes_nothing_and_keeps_secrets(tmp_path):
    """Re-running reports every file unchanged; existing secrets are never replaced."""
    settings = bare_settings(tmp_path)
    write_artifacts(tmp_path, finance_spec(), result_for(link="http://x/set"), settings=settings)
    before = read_env_file(tmp_path / ".env.local")
    again = write_artifacts(tmp_path, finance_spec(), result_for(), settings=settings, force=True)
    assert {item.status for item in again.files} == {"unchanged"}
    assert again.generated_secrets == []
    assert read_env_file(tmp_path / ".env.local") == before


def test_existing_values_kept_and_edited_config_updated(tmp_path):
    """A hand-set secret and setting survive; an edited config file is reported updated."""
    (tmp_path / ".env.local").write_text(
        "JWT_SECRET=my-own-very-long-jwt-secret-value-000000\nPORT=9000\n"
    )
    settings = bare_settings(tmp_path)
    write_artifacts(tmp_path, finance_spec(), result_for(), settings=settings)
    env = read_env_file(tmp_path / ".env.local")
    assert env["JWT_SECRET"] == "my-own-very-long-jwt-secret-value-000000"
    assert env["PORT"] == "9000"
    (tmp_path / "configs/agents.json").write_text("{}\n")
    report = write_artifacts(tmp_path, finance_spec(), result_for(), settings=settings)
    assert report.status_of("configs/agents.json") == "updated"
    assert report.status_of("configs/security.json") == "unchanged"


def test_secret_from_environment_is_not_duplicated_into_file(tmp_path, settings):
    """A secret the environment already sets is not generated into .env.local."""
    report = write_artifacts(tmp_path, finance_spec(), result_for(), settings=settings)
    assert report.generated_secrets == []
    env = read_env_file(tmp_path / ".env.local")
    assert not set(SECRETS) & set(env)


def test_chosen_services_are_recorded(tmp_path):
    """DATABASE_URL and REDIS_URL chosen during setup land in .env.local."""
    write_artifacts(
        tmp_path,
        finance_spec(),
        result_for(),
        settings=bare_settings(tmp_path),
        env_values={"REDIS_URL": "redis://127.0.0.1:6379/0"},
    )
    assert read_env_file(tmp_path / ".env.local")["REDIS_URL"] == "redis://127.0.0.1:6379/0"


def test_git_checkout_root_is_refused_without_force(tmp_path):
    """A .git directory in the root stops the write with a clear message; force allows it."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "README.md").write_text("# the project\n")
    with pytest.raises(ConflictError, match="git checkout"):
        write_artifacts(tmp_path, finance_spec(), result_for(), settings=bare_settings(tmp_path))
    assert (tmp_path / "README.md").read_text() == "# the project\n"
    assert not (tmp_path / ".env.local").exists()
    write_artifacts(
        tmp_path, finance_spec(), result_for(), settings=bare_settings(tmp_path), force=True
    )
    assert "Acme Finance" in (tmp_path / "README.md").read_text()


def test_failure_writes_nothing_and_leaves_no_temp_files(tmp_path):
    """If one file cannot be written, no file changes and no temporary file is left."""
    (tmp_path / ".env.local").write_text("PORT=9000\n")
    (tmp_path / "configs").write_text("not a folder")  # configs/*.json cannot be written
    with pytest.raises((FileExistsError, NotADirectoryError)):
        write_artifacts(tmp_path, finance_spec(), result_for(), settings=bare_settings(tmp_path))
    assert (tmp_path / ".env.local").read_text() == "PORT=9000\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env.local", "configs"]


def test_backup_leaves_secrets_out_unless_asked(tmp_path):
    """The archive holds configs, script and README; .env.local only with include_secrets."""
    root = tmp_path / "inst"
    root.mkdir()
    write_artifacts(root, finance_spec(), result_for(), settings=bare_settings(root))
    (root / "configs" / "linked.json").symlink_to(root / ".env.local")
    plain = backup_config(root, tmp_path / "out")
    assert plain.name.startswith("paulyops-config-")
    assert plain.name.endswith(".tar.gz")
    with tarfile.open(plain) as tar:
        names = tar.getnames()
        assert all(member.isfile() and member.uid == 0 for member in tar.getmembers())
    assert ".env.local" not in names
    assert "configs/setup.json" in names
    assert "start-paulyops.sh" in names
    assert "configs/linked.json" not in names
    secret = backup_config(root, tmp_path / "out", include_secrets=True)
    assert secret != plain
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with tarfile.open(secret) as tar:
        assert ".env.local" in tar.getnames()


def test_backup_of_an_empty_root_is_refused(tmp_path):
    """Backing up a folder setup never ran in says so instead of writing an empty archive."""
    with pytest.raises(NotFoundError, match="paulyops setup"):
        backup_config(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_agents_json_says_which_default_agents_are_unavailable(tmp_path):
    """configs/agents.json marks a default agent with no package as unavailable."""
    spec = parse_spec(
        {
            "organization": {"name": "Acme", "industry": "other"},
            "agents": {"defaultAgents": ["file-processor", "invoice-extractor"]},
        }
    )
    write_artifacts(tmp_path, spec, result_for(), settings=bare_settings(tmp_path))
    agents = json.loads((tmp_path / "configs/agents.json").read_text())
    assert [(p["id"], p["status"]) for p in agents["packages"]] == [
        ("paulyops.file-processor", "available"),
        ("paulyops.invoice-extractor", "unavailable"),
    ]
