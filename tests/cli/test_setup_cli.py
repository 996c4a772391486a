"""``paulyops setup``, ``setup token``, ``validate env|config`` and ``backup config``."""

from __future__ import annotations

import json
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog, Organization
from paulyops.core.settings import read_env_file
from paulyops.services.onboarding.spec import parse_spec

OWNER = ("--owner-email", "owner@acme.example", "--owner-name", "Olga Owner")
FINANCE = {
    "organization": {"name": "Acme Finance", "industry": "finance", "size": "11-50"},
    "storage": {"providers": ["local", {"type": "s3", "bucket": "acme-docs"}]},
    "agents": {"confidenceThreshold": 0.97},
    "owner": {"email": "owner@acme.example", "name": "Olga Owner"},
}


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty instance root (not the tmp_path itself: the SQLite test DB lives there)."""
    path = tmp_path / "instance"
    path.mkdir()
    return path


@pytest.fixture
def on_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """Point DATABASE_URL at the test database (SQLite and PostgreSQL)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    database = Database(db_url)
    yield database
    database.close()


def run(*args: str):
    """Invoke ``paulyops ARGS``."""
    return CliRunner().invoke(app, list(args))


def orgs(db: Database) -> list[Organization]:
    """Every organization in ``db``."""
    with db.session() as session:
        return list(session.scalars(select(Organization)))


def audit_rows(db: Database) -> int:
    """The number of audit rows in ``db``."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(AuditLog)) or 0)


def write_config(path: Path, data: object) -> Path:
    """Write ``data`` as JSON or YAML by the file's suffix."""
    text = yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data)
    path.write_text(text, encoding="utf-8")
    return path


def test_schema_prints_the_setupspec_json_schema():
    """--schema prints a JSON Schema naming every section, and nothing else."""
    result = run("setup", "--schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"organization", "storage", "security", "agents", "owner"} <= set(schema["properties"])


def test_quick_creates_the_org_and_every_artifact(root, on_db):
    """--quick writes every file (.env.local 0600), the org exists, setup.json round-trips."""
    result = run("setup", "--quick", "--org-name", "Acme Corp", "--dir", str(root), *OWNER)
    assert result.exit_code == 0, result.output
    for name in (
        "configs/organization.json",
        "configs/storage.json",
        "configs/security.json",
        "configs/agents.json",
        "configs/setup.json",
        "start-paulyops.sh",
        "README.md",
    ):
        assert (root / name).is_file(), name
    assert stat.S_IMODE((root / ".env.local").stat().st_mode) == 0o600
    [org] = orgs(on_db)
    assert org.slug == "acme-corp"
    spec = parse_spec(json.loads((root / "configs/setup.json").read_text()))
    assert spec.canonical_hash() == org.spec_hash
    assert "/set-password?token=" in result.stdout
    assert "losing ENCRYPTION_KEY loses every stored secret" in result.stdout


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_sets_up_without_prompts(root, on_db, tmp_path, suffix):
    """--config reads JSON or YAML; template values fill the rest; S3 needs credentials."""
    config = write_config(tmp_path / f"acme{suffix}", FINANCE)
    result = run("setup", "--config", str(config), "--dir", str(root))
    assert result.exit_code == 0, result.output
    [org] = orgs(on_db)
    assert (org.industry, org.compliance_level, org.size) == ("finance", "soc2", "11-50")
    storage = json.loads((root / "configs/storage.json").read_text())
    s3 = next(p for p in storage["providers"] if p["type"] == "s3")
    assert s3["missingSettings"] == ["accessKeyId", "secretAccessKey"]
    agents = json.loads((root / "configs/agents.json").read_text())
    assert agents["confidenceThreshold"] == 0.97


def test_bad_config_names_the_field_and_suggestion(root, tmp_path):
    """A misspelt industry exits 3, naming organization.industry and suggesting 'finance'."""
    bad = {**FINANCE, "organization": {"name": "Acme", "industry": "fiannce"}}
    config = write_config(tmp_path / "bad.json", bad)
    result = run("setup", "--config", str(config), "--dir", str(root))
    assert result.exit_code == 3, result.output
    assert "organization.industry" in result.output
    assert "did you mean 'finance'?" in result.output
    assert list(root.iterdir()) == []


def test_malformed_config_file_is_a_config_error(root, tmp_path):
    """A file that is not JSON exits 4 and names the file and line."""
    config = tmp_path / "broken.json"
    config.write_text('{"organization": {\n  "name": "Acme",\n}\n')
    result = run("setup", "--config", str(config), "--dir", str(root))
    assert result.exit_code == 4, result.output
    assert "broken.json:3" in result.output


def test_dry_run_writes_nothing(root, tmp_path):
    """--dry-run shows the plan and the file list and leaves the root empty."""
    config = write_config(tmp_path / "acme.json", FINANCE)
    result = run("setup", "--config", str(config), "--dir", str(root), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "acme-finance" in result.output
    assert "would create  configs/setup.json" in result.output
    assert "accessKeyId" in result.output
    assert list(root.iterdir()) == []


def test_same_config_twice_is_idempotent_and_keeps_secrets(root, on_db, tmp_path):
    """A second identical run keeps the org id, adds no audit rows and no secret changes."""
    (root / ".env.local").write_text("SESSION_SECRET=" + "s" * 48 + "\n")
    config = write_config(tmp_path / "acme.json", FINANCE)
    first = run("setup", "--config", str(config), "--dir", str(root))
    assert first.exit_code == 0, first.output
    [org] = orgs(on_db)
    rows = audit_rows(on_db)
    env_before = read_env_file(root / ".env.local")
    assert env_before["SESSION_SECRET"] == "s" * 48
    second = run("setup", "--config", str(config), "--dir", str(root))
    assert second.exit_code == 0, second.output
    assert "nothing changed" in second.output
    assert [o.id for o in orgs(on_db)] == [org.id]
    assert audit_rows(on_db) == rows
    assert read_env_file(root / ".env.local") == env_before
    assert "(updated)" not in second.output


def test_git_checkout_root_needs_force(root, on_db):
    """A .git folder in the root refuses setup (exit 7, nothing written) unless --force."""
    (root / ".git").mkdir()
    args = ("setup", "--quick", "--org-name", "Acme", "--dir", str(root), *OWNER)
    refused = run(*args)
    assert refused.exit_code == 7, refused.output
    assert "git checkout" in refused.output
    assert "--force" in refused.output
    assert sorted(p.name for p in root.iterdir()) == [".git"]
    assert orgs(on_db) == []
    forced = run(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert (root / "README.md").is_file()


def test_setup_json_reproduces_the_org_in_a_fresh_instance(tmp_path):
    """configs/setup.json from one instance sets up the same org (slug, hash) elsewhere."""
    first, second = tmp_path / "one", tmp_path / "two"
    config = write_config(tmp_path / "acme.yaml", FINANCE)
    assert run("setup", "--config", str(config), "--dir", str(first)).exit_code == 0
    copied = first / "configs" / "setup.json"
    result = run("setup", "--config", str(copied), "--dir", str(second))
    assert result.exit_code == 0, result.output
    found = []
    for instance in (first, second):
        database = Database(f"sqlite:///{instance / 'data' / 'paulyops.db'}")
        found += orgs(database)
        database.close()
    [a, b] = found
    assert (a.slug, a.spec_hash) == (b.slug, b.spec_hash)
    assert a.id != b.id


def test_quick_without_terminal_needs_name_and_owner(root):
    """Non-interactive --quick names the missing --org-name, then the missing --owner-email."""
    no_name = run("setup", "--quick", "--dir", str(root))
    assert no_name.exit_code == 4
    assert "--org-name" in no_name.output
    no_owner = run("setup", "--quick", "--org-name", "Acme", "--dir", str(root))
    assert no_owner.exit_code == 3
    assert "--owner-email" in no_owner.output
    assert list(root.iterdir()) == []


def test_wizard_without_terminal_points_at_quick_and_config(root):
    """Plain `setup` without a terminal explains --quick and --config instead of hanging."""
    result = run("setup", "--dir", str(root))
    assert result.exit_code == 4
    assert "--quick" in result.output
    assert "--config" in result.output


def test_setup_token_reissues_until_an_org_exists(root, on_db):
    """`setup token` prints a fresh token while unset; once an org exists it exits 7."""
    issued = run("setup", "token", "--dir", str(root))
    assert issued.exit_code == 0, issued.output
    secret = issued.stdout.strip().splitlines()[-1]
    assert (root / "data" / "setup-token").read_text().strip() == secret
    again = run("setup", "token", "--dir", str(root))
    assert again.stdout.strip().splitlines()[-1] != secret
    assert run("setup", "--quick", "--org-name", "Acme", "--dir", str(root), *OWNER).exit_code == 0
    refused = run("setup", "token", "--dir", str(root))
    assert refused.exit_code == 7
    assert "already set up" in refused.output


def test_validate_env_names_each_problem(root):
    """validate env passes on generated secrets and names a weak JWT_SECRET (exit 4)."""
    assert run("setup", "--quick", "--org-name", "Acme", "--dir", str(root), *OWNER).exit_code == 0
    ok = run("validate", "env", "--dir", str(root))
    assert ok.exit_code == 0, ok.output
    text = (root / ".env.local").read_text()
    jwt = read_env_file(root / ".env.local")["JWT_SECRET"]
    (root / ".env.local").write_text(text.replace(jwt, "changeme"))
    weak = run("validate", "env", "--dir", str(root))
    assert weak.exit_code == 4
    assert "JWT_SECRET" in weak.output
    (root / ".env.local").write_text(text + "PORT=notaport\n")
    malformed = run("validate", "env", "--dir", str(root))
    assert malformed.exit_code == 4
    assert "PORT" in malformed.output


def test_validate_config_reparses_setup_json(root):
    """validate config accepts the generated setup.json and names a broken field."""
    assert run("setup", "--quick", "--org-name", "Acme", "--dir", str(root), *OWNER).exit_code == 0
    ok = run("validate", "config", "--dir", str(root))
    assert ok.exit_code == 0, ok.output
    assert "acme" in ok.output
    path = root / "configs" / "setup.json"
    data = json.loads(path.read_text())
    data["security"]["encryptionLevel"] = "fipz"
    path.write_text(json.dumps(data))
    bad = run("validate", "config", "--dir", str(root))
    assert bad.exit_code == 3
    assert "security.encryptionLevel" in bad.output
    assert "'fips'" in bad.output


def test_validate_config_without_setup(root):
    """validate config in a folder setup never ran in says to run setup (exit 4)."""
    result = run("validate", "config", "--dir", str(root))
    assert result.exit_code == 4
    assert "paulyops setup" in result.output


def test_backup_config_archives_configs_and_secrets_on_request(root, tmp_path):
    """backup config packs configs without .env.local; --include-secrets adds it at 0600."""
    assert run("setup", "--quick", "--org-name", "Acme", "--dir", str(root), *OWNER).exit_code == 0
    out = tmp_path / "backups"
    plain = run("backup", "config", "--dir", str(root), "--output", str(out))
    assert plain.exit_code == 0, plain.output
    [archive] = list(out.glob("paulyops-config-*.tar.gz"))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "configs/setup.json" in names
    assert ".env.local" not in names
    secret = run("backup", "config", "--dir", str(root), "--output", str(out), "--include-secrets")
    assert secret.exit_code == 0, secret.output
    [with_secrets] = [p for p in out.glob("*.tar.gz") if p != archive]
    assert stat.S_IMODE(with_secrets.stat().st_mode) == 0o600
    with tarfile.open(with_secrets) as tar:
        assert ".env.local" in tar.getnames()


def _bomb() -> str:
    """A YAML 'billion laughs': nine levels of nine aliases each (387 million strings)."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "content", "exit_code", "needle"),
    [
        ("deep.json", "[" * 50_000 + "]" * 50_000, 4, "nested deeper than the allowed 32"),
        ("deep.yaml", "[" * 50_000 + "]" * 50_000, 4, "deep.yaml:1"),
        (
            "block.yaml",
            "".join(f"{'  ' * i}k:\n" for i in range(40)),
            4,
            "block.yaml:33: YAML is nested deeper than the allowed 32",
        ),
        ("bomb.yaml", _bomb(), 4, "bomb.yaml:2: YAML aliases (*a) are not accepted"),
        (
            "big.json",
            '{"organization": {"name": "Acme", "size": 1' + "0" * 5000 + "}}",
            3,
            "organization.size: expected a number of at most 4300 digits, got 5001",
        ),
        ("big.yaml", "organization:\n  size: 1" + "0" * 5000 + "\n", 4, "big.yaml:2: expected"),
        ("tagged.yaml", 'size: !!int "1' + "0" * 5000 + '"\n', 4, "tagged.yaml:1: expected"),
        ("huge.json", '{"x": "' + "a" * (1024 * 1024) + '"}', 4, "larger than 1048576 bytes"),
    ],
)
def test_hostile_config_files_are_refused_quickly_with_a_clear_message(
    root, tmp_path, name, content, exit_code, needle
):
    """Deep nesting, alias bombs, giant integers and oversized files get one message and
    an exit code within a second or two, never a traceback, and nothing is written."""
    import time

    config = tmp_path / name
    config.write_text(content)
    started = time.monotonic()
    result = run("setup", "--config", str(config), "--dir", str(root))
    elapsed = time.monotonic() - started
    assert result.exit_code == exit_code, result.output
    assert needle in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert elapsed < 5, f"took {elapsed:.1f}s"
    assert list(root.iterdir()) == []


def test_setup_creates_data_storage_configs_and_the_database_private(root):
    """Under the usual umask 022, setup on the embedded SQLite database leaves the data
    folder, the stored files' folder and configs/ at 0700, and the database file, its
    -wal/-shm and every configs/ file at 0600 (0755/0644 before)."""
    import os

    from sqlalchemy import text

    old_umask = os.umask(0o022)
    try:
        result = run("setup", "--quick", "--org-name", "Acme Corp", "--dir", str(root), *OWNER)
        assert result.exit_code == 0, result.output
        database = root / "data" / "paulyops.db"
        db = Database(f"sqlite:///{database}")
        with db.engine.connect() as conn:  # WAL creates -wal and -shm beside the file
            conn.execute(text("PRAGMA journal_mode=WAL"))
            conn.execute(text("CREATE TABLE IF NOT EXISTS t_mode (x INTEGER)"))
            conn.commit()
            companions = [database.with_name(database.name + s) for s in ("-wal", "-shm")]
            present = [p for p in companions if p.exists()]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in present}
        db.close()
    finally:
        os.umask(old_umask)
    assert present, "WAL mode should have created -wal/-shm"
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    folders = [root / "data", root / "configs"]
    if (root / "data" / "storage").exists():
        folders += [p for p in (root / "data" / "storage").rglob("*") if p.is_dir()]
        folders.append(root / "data" / "storage")
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for config in (root / "configs").iterdir():
        assert stat.S_IMODE(config.stat().st_mode) == 0o600, config


def test_validate_config_applies_the_setup_file_caps(root):
    """validate config re-reads configs/setup.json within the caps of setup --config:
    a deeply nested file is refused with a message, not a RecursionError."""
    assert run("setup", "--quick", "--org-name", "Acme", "--dir", str(root), *OWNER).exit_code == 0
    (root / "configs" / "setup.json").write_text("[" * 50_000 + "]" * 50_000)
    result = run("validate", "config", "--dir", str(root))
    assert result.exit_code == 4, result.output
    assert "nested deeper than the allowed 32 levels" in result.output
