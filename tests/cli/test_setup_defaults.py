"""The instance's defaults for new organizations are checked when settings are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.errors import ConfigError
from paulyops.core.settings import load_settings
from paulyops.core.vocabulary import (
    DEFAULT_AUDIT_RETENTION_DAYS,
    BackupStrategy,
    ComplianceLevel,
    EncryptionLevel,
    ProviderType,
)
from paulyops.services.onboarding.models import SecuritySpec, StorageSpec
from paulyops.services.onboarding.spec import parse_spec
from paulyops.services.onboarding.templates import settings_defaults


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("COMPLIANCE_LEVEL", "bogus", "'basic', 'soc2' or 'enterprise'"),
        ("ENCRYPTION_LEVEL", "nope", "'standard', 'enhanced' or 'fips'"),
        ("STORAGE_PROVIDERS", "local,ftp", "'local', 's3', 'google-drive' or 'dropbox'"),
        ("BACKUP_STRATEGY", "tape", "'local', 'cloud' or 'hybrid'"),
        ("DEFAULT_AGENTS", "File Processor", "short agent names"),
        ("AUDIT_RETENTION_DAYS", "0", "greater than or equal to 1"),
    ],
)
def test_bad_organization_default_fails_validate_env_and_serve_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
):
    """A default outside the SetupSpec's vocabulary stops `validate env` and `serve` (exit 4).

    The message names the variable, what it expects and the value received; no
    traceback is printed.
    """
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv(variable, value)
    for args in (["validate", "env", "--dir", str(tmp_path)], ["serve"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 4, (args, result.output)
        assert f"{variable}:" in result.output
        assert expected in result.output
        assert "Traceback" not in result.output


def test_two_bad_defaults_are_both_named(tmp_path: Path):
    """COMPLIANCE_LEVEL=bogus ENCRYPTION_LEVEL=nope names both variables at once."""
    with pytest.raises(ConfigError) as caught:
        load_settings(
            root=tmp_path, environ={"COMPLIANCE_LEVEL": "bogus", "ENCRYPTION_LEVEL": "nope"}
        )
    assert "COMPLIANCE_LEVEL:" in caught.value.message
    assert "ENCRYPTION_LEVEL:" in caught.value.message
    assert "got 'bogus'" in caught.value.message


def test_defaults_are_folded_like_setup_answers(tmp_path: Path):
    """`SOC2`, ` Local, S3 ` load as the spec's values and fill a new organization's answers."""
    settings = load_settings(
        root=tmp_path,
        environ={"COMPLIANCE_LEVEL": " SOC2 ", "STORAGE_PROVIDERS": "Local, S3"},
    )
    assert settings.compliance_level is ComplianceLevel.SOC2
    assert settings.storage_providers == [ProviderType.LOCAL, ProviderType.S3]
    assert settings_defaults(settings) == {
        "organization": {"complianceLevel": "soc2"},
        "storage": {"providers": ["local", "s3"]},
    }
    spec = parse_spec(
        {"organization": {"name": "Acme", "industry": "other"}},
        instance_defaults=settings_defaults(settings),
    )
    assert spec.organization.compliance_level is ComplianceLevel.SOC2
    assert [p.type for p in spec.storage.providers] == ["local", "s3"]


def test_settings_and_setupspec_share_one_default_per_answer(tmp_path: Path):
    """Each organization default of the settings equals the SetupSpec's model default.

    Unset variables add nothing (the template or preset decides: 2555 audit days under
    soc2), so the settings' default may never differ from the spec's own.
    """
    settings = load_settings(root=tmp_path, environ={})
    assert settings.audit_retention_days == SecuritySpec().data_retention
    assert settings.audit_retention_days == DEFAULT_AUDIT_RETENTION_DAYS
    assert settings.retention_days == StorageSpec().retention_days
    assert settings.encryption_level is SecuritySpec().encryption_level is EncryptionLevel.STANDARD
    assert settings.backup_strategy is StorageSpec().backup_strategy is BackupStrategy.LOCAL
    assert settings_defaults(settings) == {}
    soc2 = parse_spec(
        {"organization": {"name": "Acme", "industry": "other", "complianceLevel": "soc2"}}
    )
    assert soc2.security.data_retention == 2555
