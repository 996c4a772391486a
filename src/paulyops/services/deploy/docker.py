"""``docker compose`` for the bundled ``compose.yaml``: server, PostgreSQL, Redis.

The compose project lives in a directory holding ``compose.yaml`` and ``Dockerfile`` (a
checkout of PaulyOps). Its secrets are in ``.env.local`` beside them, created once by
:func:`ensure_env_file` (mode 600, never overwritten): a generated PostgreSQL password and
the server's ``DATABASE_URL`` and ``REDIS_URL`` built from it. The server's own secrets are
generated inside its volume at its first start, as on any other install.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from paulyops.core.atomic import write_atomic
from paulyops.core.errors import ConfigError, ExternalServiceError

COMPOSE_FILE = "compose.yaml"
ENV_FILE = ".env.local"
INSTALL_HINT = (
    "install Docker Engine with the Compose plugin "
    "(https://docs.docker.com/engine/install/), see docs/operators/docker.md"
)


def find_project(start: Path | None = None) -> Path:
    """Return the directory holding ``compose.yaml``: ``start`` or the source checkout.

    Raises:
        ConfigError: neither holds one (an install from a wheel: use a checkout).
    """
    candidates = [start] if start is not None else [Path.cwd(), Path(__file__).parents[4]]
    for candidate in candidates:
        if (candidate / COMPOSE_FILE).is_file():
            return candidate.resolve()
    shown = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"no {COMPOSE_FILE} in {shown}: run this in a PaulyOps checkout, or pass --project-dir DIR"
    )


def ensure_env_file(project: Path) -> bool:
    """Create ``project/.env.local`` with a generated database password, if missing.

    Returns whether the file was created. An existing file is kept as it is.
    """
    path = project / ENV_FILE
    if path.exists():
        return False
    password = secrets.token_urlsafe(32)
    text = "\n".join(
        [
            "# Written by `paulyops docker up` for compose.yaml; keep it secret (mode 600).",
            f"POSTGRES_PASSWORD={password}",
            f"DATABASE_URL=postgresql://paulyops:{password}@postgres:5432/paulyops",
            "REDIS_URL=redis://redis:6379/0",
            "",
        ]
    )
    write_atomic(path, text, mode=0o600)
    return True


def compose_base() -> list[str]:
    """The compose program: ``docker compose`` (the plugin) or ``docker-compose``.

    Raises:
        ConfigError: neither is installed (with the install hint).
    """
    docker = shutil.which("docker")
    if docker:
        try:
            probe = subprocess.run(  # noqa: S603  # fixed argv, the docker found on PATH
                [docker, "compose", "version"], capture_output=True, check=False, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    found = "docker is installed but its Compose plugin is not" if docker else "no docker"
    raise ConfigError(f"{found}: {INSTALL_HINT}")


ACTIONS: dict[str, list[str]] = {
    # Build the image, start everything, wait until the health checks pass.
    "up": ["up", "--detach", "--build", "--wait"],
    # Stop and remove the containers; the volumes (all data) are kept.
    "down": ["down"],
    "restart": ["restart"],
    "logs": ["logs", "--tail", "200"],
}


def compose_command(base: list[str], project: Path, action: str, extra: list[str]) -> list[str]:
    """Return the full command line for ``action`` (a key of :data:`ACTIONS`)."""
    return [
        *base,
        "--project-directory",
        str(project),
        "--file",
        str(project / COMPOSE_FILE),
        "--env-file",
        str(project / ENV_FILE),
        *ACTIONS[action],
        *extra,
    ]


def run_compose(command: list[str]) -> int:
    """Run ``command`` attached to this terminal; return its exit code."""
    try:
        # argv built by compose_command from fixed actions; no shell
        return subprocess.run(command, check=False).returncode  # noqa: S603
    except OSError as err:
        raise ExternalServiceError(f"`{' '.join(command[:2])}` could not run: {err}") from None


__all__ = [
    "ACTIONS",
    "COMPOSE_FILE",
    "ENV_FILE",
    "compose_base",
    "compose_command",
    "ensure_env_file",
    "find_project",
    "run_compose",
]
