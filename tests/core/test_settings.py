"""Settings: the brief's variable names, clear errors, secrets kept out of sight."""

from __future__ import annotations

import os
import stat

import pytest

from paulyops.core.errors import ConfigError
from paulyops.core.settings import (
    Environment,
    ensure_secrets,
    load_settings,
    new_encryption_key,
    read_env_file,
)
from tests.conftest import fresh_secrets


def test_reads_brief_variable_names(tmp_path):
    """PORT, DATABASE_URL, REDIS_URL and the organization defaults use the brief's names."""
    settings = load_settings(
        root=tmp_path,
        environ={
            "PORT": "9001",
            "DATABASE_URL": "postgres://u:p@db/x",
            "REDIS_URL": "redis://cache:6379/1",
            "STORAGE_PROVIDERS": "google-drive, dropbox,s3",
            "DEFAULT_AGENTS": "file-processor,data-analyzer",
            "CONFIDENCE_THRESHOLD": "0.75",
            "AUDIT_RETENTION_DAYS": "2555",
            "PAULYOPS_ENV": "production",
        },
    )
    assert settings.port == 9001
    assert settings.database_url == "postgresql://u:p@db/x"
    assert settings.storage_providers == ["google-drive", "dropbox", "s3"]
    assert settings.default_agents == ["file-processor", "data-analyzer"]
    assert settings.confidence_threshold == 0.75
    assert settings.env is Environment.PRODUCTION


def test_env_file_is_read_and_environment_wins(tmp_path):
    """Values come from <root>/.env.local, and the process environment overrides them."""
    (tmp_path / ".env.local").write_text("PORT=8100\nPAULYOPS_HOST='0.0.0.0'\n# comment\n")
    settings = load_settings(root=tmp_path, environ={"PORT": "8200"})
    assert settings.port == 8200
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PORT": "eighty"}, "PORT:"),
        ({"PORT": "70000"}, "PORT:"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: expected a sqlite:/// or postgresql://"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL: expected a redis://"),
        ({"CONFIDENCE_THRESHOLD": "2"}, "CONFIDENCE_THRESHOLD:"),
        ({"PAULYOPS_ENV": "staging"}, "PAULYOPS_ENV:"),
        ({"PAULYOPS_LOG_LEVEL": "loud"}, "PAULYOPS_LOG_LEVEL: expected one of"),
    ],
)
def test_bad_value_names_the_variable(tmp_path, env, needle):
    """A malformed value fails with a message naming the variable and what is expected."""
    with pytest.raises(ConfigError) as info:
        load_settings(root=tmp_path, environ=env)
    assert needle in info.value.message


def test_bad_secret_is_never_echoed(tmp_path):
    """A malformed ENCRYPTION_KEY is reported by name without showing its value."""
    with pytest.raises(ConfigError) as info:
        load_settings(root=tmp_path, environ={"ENCRYPTION_KEY": "hunter2-not-a-key"})
    assert "ENCRYPTION_KEY" in info.value.message
    assert "hunter2" not in info.value.message


def test_secrets_hidden_from_repr(tmp_path):
    """repr() and str() of the settings never contain a secret value."""
    secrets = fresh_secrets()
    settings = load_settings(root=tmp_path, environ=secrets)
    text = repr(settings) + str(settings) + str(settings.model_dump())
    for value in secrets.values():
        assert value not in text


def test_production_refuses_missing_or_weak_secrets(tmp_path):
    """In production, missing or placeholder secrets refuse to start, naming them."""
    settings = load_settings(
        root=tmp_path,
        environ={"PAULYOPS_ENV": "production", "JWT_SECRET": "your-jwt-secret"},
    )
    with pytest.raises(ConfigError) as info:
        ensure_secrets(settings)
    assert "JWT_SECRET" in info.value.message
    assert "SESSION_SECRET" in info.value.message
    assert not (tmp_path / ".env.local").exists()


def test_development_generates_secrets_once(tmp_path):
    """In development, missing secrets are generated once into .env.local (mode 0600)."""
    (tmp_path / ".env.local").write_text("PORT=8123\n")
    settings = load_settings(root=tmp_path, environ={})
    settings, generated = ensure_secrets(settings)
    assert sorted(generated) == [
        "ENCRYPTION_KEY",
        "JWT_SECRET",
        "PAULYOPS_INSTANCE_KEY",
        "SESSION_SECRET",
    ]
    env_file = tmp_path / ".env.local"
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    first = read_env_file(env_file)
    assert first["PORT"] == "8123"
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == first["ENCRYPTION_KEY"]

    again, generated_again = ensure_secrets(load_settings(root=tmp_path, environ={}))
    assert generated_again == []
    assert read_env_file(env_file) == first
    assert again.session_secret is not None


def test_existing_secret_is_never_overwritten(tmp_path):
    """A secret already in .env.local is kept; only the missing ones are added."""
    key = new_encryption_key()
    (tmp_path / ".env.local").write_text(f"ENCRYPTION_KEY={key}\n")
    _, generated = ensure_secrets(load_settings(root=tmp_path, environ={}))
    assert "ENCRYPTION_KEY" not in generated
    assert read_env_file(tmp_path / ".env.local")["ENCRYPTION_KEY"] == key


def test_data_dir_defaults_under_root(tmp_path):
    """The data directory is <root>/data unless PAULYOPS_DATA_DIR says otherwise."""
    assert load_settings(root=tmp_path, environ={}).data_dir == tmp_path.resolve() / "data"
    other = tmp_path / "elsewhere"
    settings = load_settings(root=tmp_path, environ={"PAULYOPS_DATA_DIR": str(other)})
    assert settings.data_dir == other.resolve()
    assert settings.effective_database_url == f"sqlite:///{other.resolve() / 'paulyops.db'}"


def test_malformed_env_file_line_is_named(tmp_path):
    """A line that is not KEY=value names the file and line number."""
    (tmp_path / ".env.local").write_text("PORT=1\nthis is not valid\n")
    with pytest.raises(ConfigError, match=r"\.env\.local:2: expected KEY=value"):
        load_settings(root=tmp_path, environ={})


def test_rotating_signing_secrets_keeps_old_tokens_valid(tmp_path):
    """After rotation, links signed with the old JWT_SECRET still verify; new ones use the new."""
    from itsdangerous import URLSafeTimedSerializer

    from paulyops.core.settings import rotate_signing_secrets

    secrets = fresh_secrets()
    env = tmp_path / ".env.local"
    env.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()) + "PORT=8111\n")
    old_token = URLSafeTimedSerializer(secrets["JWT_SECRET"], salt="s").dumps({"u": 1})
    changed = rotate_signing_secrets(env)
    assert changed["JWT_SECRET"] != secrets["JWT_SECRET"]
    settings = load_settings(root=tmp_path, environ={})
    assert settings.port == 8111
    keys = settings.jwt_secret_keys
    assert keys[-1] == changed["JWT_SECRET"]
    assert URLSafeTimedSerializer(keys, salt="s").loads(old_token) == {"u": 1}
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o600
    assert settings.session_secret_keys[0] == secrets["SESSION_SECRET"]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PAULYOPS_RATE_LIMITS": "signin=lots"}, "PAULYOPS_RATE_LIMITS: signin: expected one"),
        ({"PAULYOPS_RATE_LIMITS": "sign in=5/minute"}, "PAULYOPS_RATE_LIMITS: 'sign in'"),
        ({"PAULYOPS_ENCRYPTION_GRACE_DAYS": "soon"}, "PAULYOPS_ENCRYPTION_GRACE_DAYS: expected"),
        ({"PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT": "x"}, "PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT"),
    ],
)
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["validate", "env"]])
def test_bad_settings_stop_serve_and_validate_before_anything_is_written(
    tmp_path, monkeypatch, env, needle, command
):
    """A malformed rate limit or key-rotation value is named by `validate env` and by
    `serve`, with no traceback, before a generated secret is written to .env.local."""
    from typer.testing import CliRunner

    from paulyops.cli.main import app

    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, command)
    assert result.exit_code != 0
    assert needle in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / ".env.local").exists(), "nothing may be written before validation"
    assert not (tmp_path / "data").exists()
