"""The compliance report: reproducible, faithful to the rows, the preset and the audit chain."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import typer
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from paulyops.cli import compliance as compliance_cli
from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog, SecurityConfig, StorageConfig
from paulyops.core.errors import NotFoundError
from paulyops.core.settings import load_settings, write_env_values
from paulyops.services import audit
from paulyops.services.actor import SYSTEM, record
from paulyops.services.onboarding.compliance import compliance_report, preset_bytes
from paulyops.services.onboarding.provision import provision
from paulyops.services.onboarding.templates import load_presets
from tests.conftest import fresh_secrets
from tests.services.onboarding.test_provision import body, context, spec_of
from tests.services.test_audit import bypassing_guard

INSTANCE_KEY = b"\x07" * 32
PUBLIC_KEY = audit.verifying_key(INSTANCE_KEY)


def report(db: Database, org_id: str) -> str:
    """Return the report of ``org_id`` as text."""
    return compliance_report(db, org_id, public_key=PUBLIC_KEY).decode("utf-8")


def field(text_: str, label: str) -> str:
    """Return the value after ``- <label>:`` in the report."""
    match = re.search(rf"^- {re.escape(label)}: (.+)$", text_, re.MULTILINE)
    assert match, f"{label!r} not in report"
    return match.group(1)


def control_block(text_: str, control_id: str) -> str:
    """Return the section of one control."""
    start = text_.index(f"### {control_id}")
    end = text_.find("\n### ", start + 1)
    return text_[start : end if end != -1 else text_.index("\n## ", start)]


@pytest.fixture
def org_id(db: Database, tmp_path: Path) -> str:
    """A soc2 finance organization provisioned through provision()."""
    return provision(db, spec_of(), context(tmp_path)).organization_id


def test_report_is_byte_identical_for_same_inputs(db, org_id):
    """Two reports of an unchanged organization and chain are byte-identical."""
    first = compliance_report(db, org_id, public_key=PUBLIC_KEY)
    second = compliance_report(db, org_id, public_key=PUBLIC_KEY)
    assert first == second


def test_report_lists_every_control_with_settings_values_and_evidence(db, org_id):
    """Every control of the preset appears with its settings, configured values and evidence."""
    text_ = report(db, org_id)
    preset = load_presets()["soc2"]
    assert field(text_, "Level") == "soc2"
    assert f"Controls met: {len(preset.controls)} of {len(preset.controls)}" in text_
    for control in preset.controls:
        block = control_block(text_, control.id)
        assert "Status: **MET**" in block
        for path in control.settings:
            assert f"`{path}` = " in block
        assert "Evidence: " in block
    logical = control_block(text_, "SOC2 CC6.1")
    assert "`security.rbacModel` = `granular` (ok)" in logical
    assert "`security.encryptionLevel` = `enhanced` (ok)" in logical
    backup = control_block(text_, "SOC2 A1.2")
    assert "`storage.backupStrategy` = `hybrid` (ok)" in backup
    assert "`storage.providers` = `dropbox, google-drive` (ok)" in control_block(
        text_, "SOC2 CC6.7"
    )


def test_report_embeds_input_hashes_and_chain_head(db, org_id):
    """The report carries the preset file's sha256, the config hash and the chain head."""
    text_ = report(db, org_id)
    assert field(text_, "Preset file sha256").startswith(
        f"`{hashlib.sha256(preset_bytes('soc2')).hexdigest()}`"
    )
    config_json = text_.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert field(text_, "Configuration sha256").startswith(
        f"`{hashlib.sha256(config_json.encode()).hexdigest()}`"
    )
    with db.session() as session:
        head = session.execute(
            select(AuditLog.seq, AuditLog.row_hash, AuditLog.created_at)
            .where(AuditLog.chain == org_id)
            .order_by(AuditLog.seq.desc())
            .limit(1)
        ).one()
    assert field(text_, "Head seq") == str(head.seq)
    assert field(text_, "Head row_hash") == f"`{head.row_hash}`"
    assert field(text_, "Head created_at") == audit.format_timestamp(head.created_at)
    assert field(text_, "Verify").startswith("ok (")


def test_configuration_change_changes_the_report(db, org_id):
    """Changing a configured value changes the value shown and the configuration hash."""
    before = report(db, org_id)
    with db.write_session() as session:
        session.execute(
            update(SecurityConfig)
            .where(SecurityConfig.organization_id == org_id)
            .values(require_admin_2fa=False)
        )
    after = report(db, org_id)
    assert field(after, "Configuration sha256") != field(before, "Configuration sha256")
    assert field(after, "Head seq") == field(before, "Head seq")
    assert "`security.requireAdmin2fa` = `false`" in after


def test_new_audit_row_changes_only_the_chain_head(db, org_id):
    """An audit row appended to the organization's chain moves the head, not the inputs."""
    before = report(db, org_id)
    with db.write_session() as session:
        record(session, SYSTEM, "test.touched", organization_id=org_id)
    after = report(db, org_id)
    assert int(field(after, "Head seq")) == int(field(before, "Head seq")) + 1
    assert field(after, "Configuration sha256") == field(before, "Configuration sha256")
    assert after != before


def test_broken_enforced_rule_marks_control_not_met(db, org_id):
    """A configured value that breaks a preset rule makes each control using it NOT MET."""
    with db.write_session() as session:
        session.execute(
            update(SecurityConfig)
            .where(SecurityConfig.organization_id == org_id)
            .values(audit_retention_days=30)
        )
    text_ = report(db, org_id)
    block = control_block(text_, "SOC2 CC7.2")
    assert "Status: **NOT MET**" in block
    assert "`security.dataRetention` = `30` (fails)" in block
    assert "security.dataRetention must be at least 365" in block
    assert "Status: **MET**" in control_block(text_, "SOC2 A1.2")


def test_missing_configuration_row_is_not_met(db, org_id):
    """Without storage rows, the storage settings read '(not configured)' and fail."""
    with db.write_session() as session:
        session.execute(
            text("DELETE FROM storage_configs WHERE organization_id = :o"), {"o": org_id}
        )
    text_ = report(db, org_id)
    block = control_block(text_, "SOC2 A1.2")
    assert "`storage.backupStrategy` = `(not configured)` (fails)" in block
    assert "Status: **NOT MET**" in block


def test_tampered_chain_is_reported_and_fails_audit_controls(db, org_id):
    """An edited audit row shows as broken, and controls whose evidence is the log fail."""
    with bypassing_guard(db) as conn:
        conn.execute(
            text("UPDATE audit_logs SET action = 'forged' WHERE chain = :c AND seq = 2"),
            {"c": org_id},
        )
    text_ = report(db, org_id)
    assert field(text_, "Verify").startswith("broken")
    assert "seq 2" in field(text_, "Verify problem")
    assert "Status: **NOT MET**" in control_block(text_, "SOC2 CC6.2")
    # Evidence outside the audit log is unaffected.
    assert "Status: **MET**" in control_block(text_, "SOC2 A1.2")


def test_checkpoint_is_shown_when_signed(db, org_id):
    """A signed head checkpoint of the chain is named with its seq and key id."""
    cp = audit.checkpoint(db, INSTANCE_KEY, org_id)
    text_ = report(db, org_id)
    assert f"head at seq {cp.seq}" in field(text_, "Latest signed checkpoint")
    assert cp.key_id in text_
    assert "1 checkpoints checked" in field(text_, "Verify")


def test_enterprise_report_uses_enterprise_controls(db, tmp_path):
    """An enterprise organization is reported against the enterprise preset's controls."""
    raw = body("Big Health")
    raw["organization"] = {"name": "Big Health", "industry": "healthcare"}
    raw["organization"]["complianceLevel"] = "enterprise"
    from paulyops.services.onboarding.spec import parse_spec

    org = provision(db, parse_spec(raw), context(tmp_path)).organization_id
    text_ = report(db, org)
    assert field(text_, "Level") == "enterprise"
    for control in load_presets()["enterprise"].controls:
        assert f"### {control.id}" in text_


def test_report_escapes_markdown_in_names(db, tmp_path):
    """An organization name with Markdown syntax is shown literally, not as markup."""
    spec = spec_of("Evil *Corp* | #1", email="owner@evil.example.com")
    org = provision(db, spec, context(tmp_path)).organization_id
    text_ = report(db, org)
    assert text_.startswith("# Compliance report: Evil \\*Corp\\* \\| \\#1\n")


def test_report_never_contains_credentials(db, tmp_path):
    """Stored credentials are reported only as 'stored encrypted' or 'none stored'."""
    org = provision(db, spec_of(), context(tmp_path)).organization_id
    with db.write_session() as session:
        session.execute(
            update(StorageConfig)
            .where(StorageConfig.organization_id == org)
            .values(credentials=b"ciphertext-bytes")
        )
    text_ = report(db, org)
    assert "ciphertext-bytes" not in text_
    assert "credentials stored encrypted" in text_


def test_unknown_organization_is_not_found(db):
    """A report of an organization that does not exist is a NotFoundError."""
    with pytest.raises(NotFoundError):
        compliance_report(db, "org_01JNOPE000000000000000000", public_key=PUBLIC_KEY)


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def instance_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance root with test secrets in .env.local, on the test database."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    write_env_values(tmp_path / ".env.local", fresh_secrets())
    return tmp_path


def cli() -> typer.Typer:
    """Return a root app with the compliance group, as main.py wires it."""
    root = typer.Typer()
    root.add_typer(compliance_cli.app, name="compliance")

    @root.command()
    def version() -> None:  # a second command keeps Typer from collapsing the group
        """Print nothing."""

    return root


def test_cli_report_writes_the_same_bytes_by_slug_or_id(instance_root, db, tmp_path):
    """`compliance report --org SLUG --output FILE` writes the service's report; ids work too."""
    org = provision(db, spec_of(), context(tmp_path)).organization_id
    out = tmp_path / "report.md"
    result = CliRunner().invoke(
        cli(), ["compliance", "report", "--org", "acme-corp", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    key = audit.verifying_key(load_settings(root=instance_root))
    assert out.read_bytes() == compliance_report(db, org, public_key=key)
    by_id = CliRunner().invoke(cli(), ["compliance", "report", "--org", org])
    assert by_id.exit_code == 0, by_id.output
    assert by_id.stdout_bytes == out.read_bytes()


def test_cli_unknown_org_exits_not_found(instance_root, db):
    """An unknown --org exits 5 (not found) naming the option."""
    result = CliRunner().invoke(cli(), ["compliance", "report", "--org", "nope"])
    assert result.exit_code == 5
    assert "--org" in result.output
