"""systemd units: hardened, verified by systemd itself, installed without root into --unit-dir."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.errors import ExternalServiceError, SpecValidationError
from paulyops.services.deploy import systemd

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictSUIDSGID": "yes",
    "UMask": "0077",
    "Restart": "on-failure",
}


def _directives(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, value)
    return out


def _plan(tmp_path: Path, **kwargs: object) -> systemd.UnitPlan:
    root = tmp_path / "srv"
    defaults: dict[str, object] = {
        "executable": Path(sys.executable),
        "root": root,
        "data_dir": root / "data",
    }
    defaults.update(kwargs)
    return systemd.render_units(**defaults)  # type: ignore[arg-type]  # test kwargs


def test_server_unit_is_hardened_and_writes_only_the_instance(tmp_path):
    """The unit runs as the dedicated user and may write only the root and data dir."""
    unit = _plan(tmp_path, user="pauly").units[systemd.SERVER_UNIT]
    values = _directives(unit)
    for key, expected in HARDENING.items():
        assert values[key] == expected, key
    assert values["User"] == values["Group"] == "pauly"
    assert values["ReadWritePaths"].split() == [str(tmp_path / "srv"), str(tmp_path / "srv/data")]
    assert values["ExecStart"].startswith(f'"{sys.executable}" serve --host 127.0.0.1')
    assert "user" in values["RestrictNamespaces"].split()  # the sandbox needs userns


def test_worker_unit_comes_with_a_broker_and_waits_for_running_jobs(tmp_path):
    """With a broker the worker gets its own hardened unit; SIGTERM reaches only its main
    process, and systemd waits the grace period plus a margin."""
    plan = _plan(tmp_path, user="pauly", worker=True, worker_grace_s=40)
    assert set(plan.units) == {systemd.SERVER_UNIT, systemd.WORKER_UNIT}
    values = _directives(plan.units[systemd.WORKER_UNIT])
    for key, expected in HARDENING.items():
        assert values[key] == expected, key
    assert values["ExecStart"] == f'"{sys.executable}" worker'
    assert values["KillMode"] == "mixed"
    assert values["TimeoutStopSec"] == str(40 + systemd.WORKER_STOP_MARGIN_S)
    assert values["ReadWritePaths"].split() == [str(tmp_path / "srv"), str(tmp_path / "srv/data")]
    assert systemd.SERVER_UNIT in values["After"]
    alone = _plan(tmp_path)
    assert set(alone.units) == {systemd.SERVER_UNIT}
    assert any("CELERY_BROKER_URL" in note for note in alone.notes)


def test_instance_in_tmp_keeps_a_shared_tmp(tmp_path):
    """PrivateTmp would hide an instance that lives in /tmp; it is off for those only."""
    assert "PrivateTmp=no" in _plan(tmp_path).units[systemd.SERVER_UNIT]
    elsewhere = _plan(tmp_path, root=Path("/srv/acme"), data_dir=Path("/srv/acme/data"))
    assert "PrivateTmp=yes" in elsewhere.units[systemd.SERVER_UNIT]


def test_unreadable_interpreter_is_named_in_a_note(tmp_path):
    """Code the service user cannot read (under /root) is reported, not found at start."""
    secret = tmp_path / "private"
    secret.mkdir(mode=0o700)
    python = secret / "python3"
    python.write_text("")
    plan = _plan(tmp_path, interpreter=python)
    assert any(str(python) in note and "/opt" in note for note in plan.notes)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user": "Root User"}, "user"),
        ({"root": Path("relative")}, "root"),
        ({"data_dir": Path("/srv/with space")}, "dataDir"),
        ({"executable": Path("paulyops")}, "executable"),
    ],
)
def test_bad_inputs_name_the_field(tmp_path, kwargs, field):
    """A bad user name or path is refused naming the field; nothing is rendered."""
    with pytest.raises(SpecValidationError) as caught:
        _plan(tmp_path, **kwargs)
    assert caught.value.errors[0].field == field


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit_without_a_warning(tmp_path):
    """`systemd-analyze verify` knows every directive (a typo would be a warning)."""
    root = tmp_path / "srv"
    (root / "data").mkdir(parents=True)
    paths = systemd.install_units(_plan(tmp_path, worker=True), tmp_path / "units")
    assert len(paths) == 2
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert paths[0].stat().st_mode & 0o777 == 0o644


def test_host_preparation_reports_the_failing_command(tmp_path):
    """A failing useradd/chown/systemctl names the command and its last error line."""

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "chown: invalid user\n")

    with pytest.raises(ExternalServiceError, match=r"`chown -R .*` failed \(exit 1\): chown"):
        systemd.prepare_host("root", [tmp_path], run=run)


def test_cli_install_into_unit_dir_and_refusal_without_root(tmp_path, monkeypatch):
    """--unit-dir writes the unit as any user; the system-wide install needs root."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["service", "install", "--unit-dir", str(tmp_path / "u")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "u" / systemd.SERVER_UNIT).is_file()
    assert not (tmp_path / "u" / systemd.WORKER_UNIT).exists()  # no broker configured
    shown = runner.invoke(app, ["service", "show"])
    assert "ProtectSystem=strict" in shown.output
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
    both = runner.invoke(app, ["service", "install", "--unit-dir", str(tmp_path / "u2")])
    assert both.exit_code == 0, both.output
    assert (tmp_path / "u2" / systemd.WORKER_UNIT).is_file()
    monkeypatch.delenv("CELERY_BROKER_URL")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    refused = runner.invoke(app, ["service", "install"])
    assert refused.exit_code == 6
    assert "sudo paulyops service install" in refused.output
