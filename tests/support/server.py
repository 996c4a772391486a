"""Run PaulyOps as a real server subprocess on a free port, and stop it like an operator.

:func:`running_server` starts ``paulyops serve`` (or the app with an extra slow route,
see :mod:`tests.support.slow_app`) in a temporary instance root, waits until
``/api/livez`` answers, and on exit sends SIGTERM and waits for the process. Output goes
to a file (never a pipe that could fill up and block the server); logs are JSON lines so
tests can look for events such as ``db_closed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]

Launcher = Literal["serve", "slow-serve", "slow-factory"]

# Variables of the developer's shell that must not reach a test server.
_LEAKY = (
    "DATABASE_URL",
    "REDIS_URL",
    "PAULYOPS_HOME",
    "PAULYOPS_DATA_DIR",
    "PAULYOPS_ENV",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEYS_PREVIOUS",
    "SESSION_SECRET",
    "JWT_SECRET",
    "PAULYOPS_INSTANCE_KEY",
    "STRIPE_SECRET_KEY",
    "PORT",
)


# A server on an idle machine is live within a couple of seconds; the deadline is scaled
# to how long this machine takes right now to import the server's stack, so a loaded
# machine (CI on 2 cores, other suites beside it) waits longer instead of failing.
_STARTUP_FACTOR = 20.0
_STARTUP_FLOOR = 30.0
_STARTUP_CAP = 240.0
_measured_import: float | None = None


def startup_budget() -> float:
    """Return seconds a server may take to become live here, scaled to the machine now.

    Measured once per test process: a fresh interpreter importing the web app (what every
    server start pays first), times a generous factor, within a floor and a cap. A server
    that exits is reported at once by :meth:`ServerProcess.wait_for`, whatever the budget.
    """
    global _measured_import
    if _measured_import is None:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", "import paulyops.web.app"],
            check=True,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        _measured_import = time.monotonic() - started
    return min(_STARTUP_CAP, max(_STARTUP_FLOOR, _STARTUP_FACTOR * _measured_import))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(root: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for a server rooted at ``root``, listening on ``port``."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    pythonpath = [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env.update(
        PAULYOPS_HOME=str(root),
        PAULYOPS_ENV="test",
        PAULYOPS_HOST="127.0.0.1",
        PAULYOPS_LOG_FORMAT="json",
        PAULYOPS_LOG_LEVEL="INFO",
        PORT=str(port),
        PYTHONPATH=os.pathsep.join(pythonpath),
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    env.update(extra or {})
    return env


def server_command(launcher: Launcher, port: int) -> list[str]:
    """Return the command line that starts the server."""
    py = sys.executable
    if launcher == "serve":
        return [py, "-m", "paulyops.cli.main", "serve", "--port", str(port)]
    if launcher == "slow-serve":
        return [py, "-m", "tests.support.slow_app", "serve", "--port", str(port)]
    return [
        py,
        "-m",
        "uvicorn",
        "tests.support.slow_app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        "30",
        "--no-access-log",
    ]


class ServerProcess:
    """A PaulyOps server running in a subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.returncode: int | None = None

    @property
    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far, in order."""
        found = []
        for line in self.output.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def event_names(self) -> list[str]:
        """The ``event`` of every JSON log line so far, in order."""
        return [str(e.get("event")) for e in self.events()]

    def get(self, path: str, *, timeout: float = 10.0) -> httpx.Response:
        """GET ``path`` from the server."""
        return httpx.get(self.url + path, timeout=timeout)

    def wait_for(
        self, predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
    ) -> None:
        """Poll ``predicate`` until true; fail with the server's output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) while waiting for {what}:\n"
                    + self.output
                )
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.output}")

    def wait_live(self, *, timeout: float | None = None) -> None:
        """Wait until ``/api/livez`` answers 200 (by default within :func:`startup_budget`)."""

        def live() -> bool:
            try:
                return self.get("/api/livez", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        budget = startup_budget() if timeout is None else timeout
        self.wait_for(live, timeout=budget, what="/api/livez", interval=0.05)

    def terminate(self, *, timeout: float = 40.0) -> int:
        """Send SIGTERM, wait for the process to exit and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"server ignored SIGTERM for {timeout}s:\n{self.output}") from None
        return self.returncode

    def kill(self) -> None:
        """Kill the process if it still runs (cleanup after a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_server(
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    launcher: Launcher = "serve",
    live_timeout: float | None = None,
) -> ServerProcess:
    """Start a server in instance root ``root`` and wait until ``/api/livez`` answers.

    Args:
        root: the instance root (``PAULYOPS_HOME``); output goes to ``root/server.log``.
        env: extra environment (``DATABASE_URL``, ``REDIS_URL``, secrets...).
        launcher: ``serve`` (the real command), ``slow-serve`` (the real command plus
            ``/test/slow``) or ``slow-factory`` (uvicorn with the app factory plus
            ``/test/slow``).
        live_timeout: seconds to wait for ``/api/livez`` (default :func:`startup_budget`).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = root / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            server_command(launcher, port),
            cwd=root,
            env=server_env(root, port, env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, port, log_path)
    try:
        server.wait_live(timeout=live_timeout)
    except BaseException:
        server.kill()
        raise
    return server


@contextlib.contextmanager
def running_server(
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    launcher: Launcher = "serve",
) -> Iterator[ServerProcess]:
    """Run a server for the duration of the block; SIGTERM it (then kill) afterwards."""
    server = start_server(root, env=env, launcher=launcher)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                server.terminate(timeout=15)
        server.kill()


__all__ = [
    "REPO_ROOT",
    "ServerProcess",
    "free_port",
    "running_server",
    "server_command",
    "server_env",
    "start_server",
    "startup_budget",
]
