"""``paulyops package run``: an author runs a built package in the real sandbox."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.services.agents.sandbox import SandboxConfig, sandbox_status
from tests.conftest import fresh_secrets

runner = CliRunner()

AGENT = """\
from paulyops.sdk import Context, Item, Result


def handle(ctx: Context, item: Item) -> Result:
    if item.name == "bad.txt":
        raise ValueError("cannot read this one")
    return Result(data={"chars": len(item.read_text()), "greeting": ctx.settings["greeting"]})
"""
MANIFEST = """\
format = 1
id = "acme.counter"
name = "Counter"
version = "0.1.0"
description = "Counts characters."
publisher = "acme"
license = "MIT"
entrypoint = "agent:handle"

[compatibility]
paulyops = ">=0.1,<1"
python = ">=3.11"
platforms = ["linux"]

[settings]
type = "object"

[settings.properties.greeting]
type = "string"
default = "hello"
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A built package, a sandbox root slot uids can traverse, and two inputs."""
    sandbox = Path("/var/tmp") / f"paulyops-cli-sandbox-{tmp_path.name}"
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_SANDBOX_ROOT", str(sandbox))
    monkeypatch.setenv("PAULYOPS_SANDBOX_UIDS", "62100-62107")
    monkeypatch.chdir(tmp_path)
    status = sandbox_status(SandboxConfig(root=sandbox, uid_range=(62100, 62107)))
    if status.mode != "bubblewrap":
        pytest.skip(f"needs bubblewrap (./scripts/ensure-test-deps): {status.reason}")
    src = tmp_path / "counter"
    src.mkdir()
    (src / "manifest.toml").write_text(MANIFEST)
    (src / "agent.py").write_text(AGENT)
    result = runner.invoke(app, ["package", "build", str(src), "-o", "counter.pauly"])
    assert result.exit_code == 0, result.output
    (tmp_path / "good.txt").write_text("four")
    (tmp_path / "bad.txt").write_text("x")
    yield tmp_path / "counter.pauly"
    shutil.rmtree(sandbox, ignore_errors=True)


def test_package_run_prints_each_result(package: Path) -> None:
    """Two inputs, one sandbox start: one result, one failure with its reason, exit 1."""
    result = runner.invoke(
        app,
        [
            "package",
            "run",
            str(package),
            "--input",
            "good.txt",
            "--input",
            "bad.txt",
            "--setting",
            "greeting=hi",
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout)
    assert body["mode"] == "bubblewrap"
    good, bad = body["items"]
    assert good["ok"] is True
    assert good["result"]["data"] == {"chars": 4, "greeting": "hi"}
    assert bad == {**bad, "ok": False, "error": "ValueError: cannot read this one"}


def test_package_run_applies_setting_defaults(package: Path) -> None:
    """Without --setting the schema's default is given; success exits 0."""
    result = runner.invoke(app, ["package", "run", str(package), "--input", "good.txt"])
    assert result.exit_code == 0, result.output
    assert '"greeting": "hello"' in result.stdout


def test_package_run_refuses_a_grant_not_requested(package: Path) -> None:
    """Granting a capability the manifest does not request is an error, not a silent grant."""
    result = runner.invoke(
        app, ["package", "run", str(package), "--input", "good.txt", "--grant", "network"]
    )
    assert result.exit_code != 0
    assert "does not request it" in result.output


def test_health_reports_the_sandbox(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`paulyops health --json` has a sandbox check naming its mode and layers."""
    for name, value in {"PAULYOPS_ENV": "test", **fresh_secrets()}.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["health", "--json"])
    body = json.loads(result.stdout)
    sandbox = body["checks"]["sandbox"]
    assert sandbox["details"]["mode"] == "bubblewrap"
    assert "seccomp" in sandbox["details"]["layers"]


def test_package_run_checks_settings_against_the_schema(package: Path) -> None:
    """A setting of the wrong type is refused with the field's name before any run."""
    result = runner.invoke(
        app, ["package", "run", str(package), "--input", "good.txt", "--setting", "greeting=3"]
    )
    assert result.exit_code != 0
    assert "greeting" in result.output
