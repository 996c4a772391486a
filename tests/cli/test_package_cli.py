"""``paulyops package``: init -> build -> keygen -> sign -> verify, as an author runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["package", *args])
    return result.exit_code, result.output


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_scaffold_builds_signs_and_verifies(workdir: Path) -> None:
    """A scaffolded agent builds deterministically, signs, and verifies against its key."""
    code, out = _run("init", "acme.hello")
    assert code == 0, out
    assert (workdir / "hello" / "manifest.toml").is_file()
    code, out = _run("build", "hello")
    assert code == 0, out
    package = workdir / "acme.hello-0.1.0.pauly"
    first = package.read_bytes()
    assert _run("build", "hello", "-o", "again.pauly")[0] == 0
    assert (workdir / "again.pauly").read_bytes() == first
    code, out = _run("verify", str(package))
    assert code == 3
    assert "unsigned packages are refused" in out
    assert _run("verify", str(package), "--allow-unsigned")[0] == 0
    code, out = _run("keygen", "--out", "acme.key", "--publisher", "acme")
    assert code == 0, out
    assert (workdir / "acme.key").stat().st_mode & 0o777 == 0o600
    assert _run("sign", str(package), "--key", "acme.key")[0] == 0
    code, out = _run("verify", str(package), "--trust", "acme.key.pub", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "archive",
        "checksums",
        "manifest",
        "signature",
        "compatibility",
        "dependencies",
    ]


def test_verify_rejects_a_key_trusted_for_another_publisher(workdir: Path) -> None:
    """`--trust other=KEY` does not vouch for an acme package; the reason is printed."""
    _run("init", "acme.hello")
    _run("keygen", "--out", "k")
    _run("build", "hello", "--key", "k", "-o", "p.pauly")
    code, out = _run("verify", "p.pauly", "--trust", "other=k.pub", "--json")
    assert code == 3
    failed = [c for c in json.loads(out)["checks"] if c["status"] == "failed"]
    assert "trusted only for other.*, not for acme.hello" in failed[0]["message"]
    code, out = _run("verify", "p.pauly", "--trust", "k.pub")
    assert code == 4
    assert "names no publisher" in out


def test_a_tampered_package_fails_verify_with_the_file_named(workdir: Path) -> None:
    """Changing one file after signing makes verify fail and name what broke."""
    _run("init", "acme.hello")
    _run("keygen", "--out", "k", "--publisher", "acme")
    _run("build", "hello", "--key", "k", "-o", "p.pauly")
    data = bytearray((workdir / "p.pauly").read_bytes())
    at = data.index(b"return Result")
    data[at : at + 6] = b"raise "
    (workdir / "p.pauly").write_bytes(bytes(data))
    code, out = _run("verify", "p.pauly", "--trust", "k.pub")
    assert code == 3
    assert "agent.py" in out


def test_init_refuses_bad_ids_and_existing_folders(workdir: Path) -> None:
    """A non-`publisher.name` id, the reserved prefix and a non-empty folder are refused."""
    assert _run("init", "Hello")[0] == 3
    code, out = _run("init", "paulyops.hello")
    assert code == 3
    assert "reserved" in out
    (workdir / "hello").mkdir()
    (workdir / "hello" / "x").write_text("x")
    assert _run("init", "acme.hello")[0] == 7


def test_keygen_never_overwrites(workdir: Path) -> None:
    """A second keygen to the same file fails and keeps the first key."""
    assert _run("keygen", "--out", "k")[0] == 0
    before = (workdir / "k").read_bytes()
    assert _run("keygen", "--out", "k")[0] != 0
    assert (workdir / "k").read_bytes() == before


def test_schema_prints_the_manifest_json_schema() -> None:
    """`package schema` prints JSON Schema with the manifest's fields."""
    code, out = _run("schema")
    assert code == 0
    assert "entrypoint" in json.loads(out)["properties"]


@pytest.mark.slow
def test_the_scaffolds_own_test_passes(workdir: Path) -> None:
    """`package init` writes an agent whose own test passes as written."""
    _run("init", "acme.hello")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=workdir / "hello",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
