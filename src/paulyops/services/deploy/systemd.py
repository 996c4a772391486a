"""systemd units for a PaulyOps instance: hardened, one per long-running process.

:func:`render_units` turns an instance's paths into unit files; :func:`install_units`
writes them (atomically, mode 644) into a unit directory. The server unit runs
``paulyops serve`` as a dedicated system user that can write only the instance root and
its data directory:

* ``ProtectSystem=strict`` makes the whole file system read-only except
  ``ReadWritePaths``; ``ProtectHome`` hides home directories unless the instance lives in
  one (then read-only, with the instance root writable);
* ``NoNewPrivileges``, an empty capability set, no SUID/SGID, private ``/tmp`` and
  devices, protected kernel tunables, modules, logs and control groups, native system
  calls only, ``UMask=0077``;
* user, mount, PID, network, IPC and UTS namespaces stay allowed: the agent sandbox
  (bubblewrap) needs them, unprivileged and under ``NoNewPrivileges``;
* ``Restart=on-failure`` with a back-off, and ``TimeoutStopSec`` long enough for the
  server's graceful shutdown (in-flight requests finish, the audit anchor signs).

When a broker is configured (``CELERY_BROKER_URL``), a worker unit runs ``paulyops
worker`` the same way, stopped with SIGTERM to its main process only (``KillMode=mixed``)
and given the worker's grace period plus a margin before SIGKILL, so running agent jobs
finish or are handed back.
"""

from __future__ import annotations

import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paulyops.core.atomic import write_atomic
from paulyops.core.errors import ExternalServiceError, FieldError, SpecValidationError

Runner = Callable[..., "subprocess.CompletedProcess[Any]"]

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_USER = "paulyops"
SERVER_UNIT = "paulyops.service"
WORKER_UNIT = "paulyops-worker.service"
# Seconds systemd waits beyond the worker's grace period before SIGKILL.
WORKER_STOP_MARGIN_S = 15
# Home-like trees that ProtectHome=yes would hide.
_HOME_TREES = (Path("/home"), Path("/root"), Path("/run/user"))
_TMP_TREES = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108  # paths compared, not used
# What systemd accepts as a user or group name (and what useradd creates).
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Seconds between SIGTERM and SIGKILL: the server drains requests for up to 20 s.
STOP_TIMEOUT_S = 30


@dataclass(frozen=True, slots=True)
class UnitPlan:
    """What to install: each unit file's name and text, and what was left out and why."""

    units: dict[str, str]
    notes: list[str]


def _quote(value: str) -> str:
    """Quote ``value`` for an ExecStart/Environment line (systemd's C-like quoting)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _under(path: Path, trees: tuple[Path, ...]) -> bool:
    return any(path == tree or tree in path.parents for tree in trees)


def _readable_by_all(path: Path) -> bool:
    """Whether any user may run ``path``: every parent searchable, the file readable."""
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)
    except OSError:
        return False


def _check(user: str, executable: Path, root: Path, data_dir: Path) -> None:
    errors = []
    if not _NAME.match(user):
        errors.append(
            FieldError("user", f"expected a system user name like {DEFAULT_USER!r}, got {user!r}")
        )
    if not executable.is_absolute():
        errors.append(FieldError("executable", f"expected an absolute path, got {executable}"))
    for name, path in (("root", root), ("dataDir", data_dir)):
        if not path.is_absolute():
            errors.append(FieldError(name, f"expected an absolute path, got {path}"))
        elif any(c in str(path) for c in "\n\r\"'\\ "):
            errors.append(
                FieldError(name, f"{path}: systemd paths here may not hold spaces or quotes")
            )
    if errors:
        raise SpecValidationError(errors[0].message, errors)


def render_units(
    *,
    executable: Path,
    root: Path,
    data_dir: Path,
    interpreter: Path | None = None,
    user: str = DEFAULT_USER,
    host: str = "127.0.0.1",
    port: int = 8000,
    worker: bool = False,
    worker_grace_s: float = 30.0,
) -> UnitPlan:
    """Return the unit files for an instance.

    Args:
        executable: the absolute path of the ``paulyops`` command to run.
        root: the instance root (``PAULYOPS_HOME``; holds ``.env.local``).
        data_dir: the data directory (database, storage, logs).
        interpreter: the Python that runs ``executable`` (checked for readability).
        user: the dedicated system user (and group) the server runs as.
        host: the bind address; keep loopback behind a reverse proxy.
        port: the port.
        worker: also write the worker unit (``paulyops worker``; a broker is configured).
        worker_grace_s: ``PAULYOPS_WORKER_GRACE_S``, so systemd waits that long at stop.

    Raises:
        SpecValidationError: a bad user name or a relative path (naming the field).
    """
    _check(user, executable, root, data_dir)
    writable = sorted({str(root), str(data_dir)})
    in_home = _under(root, _HOME_TREES) or _under(data_dir, _HOME_TREES)
    code = [executable, *([interpreter] if interpreter else [])]
    # Code that lives in a home directory (a checkout's .venv) must stay readable.
    code_in_home = any(_under(path, _HOME_TREES) for path in code)
    protect_home = "read-only" if in_home or code_in_home else "yes"
    # A private /tmp would hide an instance that lives in /tmp (a trial install).
    private_tmp = "no" if _under(root, _TMP_TREES) or _under(data_dir, _TMP_TREES) else "yes"
    notes = [
        f"{path} is not readable by other users: the {user!r} user cannot start it; "
        "install PaulyOps outside home directories, e.g. under /opt (docs/operators/service.md)"
        for path in code
        if not _readable_by_all(path)
    ]
    service = _service_lines(
        user=user,
        root=root,
        data_dir=data_dir,
        writable=writable,
        protect_home=protect_home,
        private_tmp=private_tmp,
    )
    server = "\n".join(
        [
            *_header("PaulyOps server"),
            *service,
            f"ExecStart={_quote(str(executable))} serve --host {host} --port {port}",
            # Without a worker, the server's own job threads get their grace period too.
            f"TimeoutStopSec={STOP_TIMEOUT_S + (0 if worker else int(worker_grace_s))}",
            *_footer(),
        ]
    )
    units = {SERVER_UNIT: server}
    if worker:
        units[WORKER_UNIT] = "\n".join(
            [
                *_header("PaulyOps agent job worker", after=SERVER_UNIT),
                *service,
                f"ExecStart={_quote(str(executable))} worker",
                # Running jobs get the grace period, then are handed back (docs/agents/jobs.md).
                f"TimeoutStopSec={int(worker_grace_s) + WORKER_STOP_MARGIN_S}",
                *_footer(),
            ]
        )
    else:
        notes.append(
            "no worker unit: CELERY_BROKER_URL is not set, so agent jobs run inside the server "
            "(set it to run them in `paulyops worker` processes)"
        )
    return UnitPlan(units=units, notes=notes)


def _header(description: str, *, after: str | None = None) -> list[str]:
    extra = f" {after}" if after else ""
    return [
        "# Written by `paulyops service install`; rerun it after moving the instance.",
        "# See docs/operators/service.md.",
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        f"After=network-online.target postgresql.service redis-server.service{extra}",
        "",
    ]


def _footer() -> list[str]:
    return ["", "[Install]", "WantedBy=multi-user.target", ""]


def _service_lines(
    *,
    user: str,
    root: Path,
    data_dir: Path,
    writable: list[str],
    protect_home: str,
    private_tmp: str,
) -> list[str]:
    return [
        "[Service]",
        "Type=exec",
        f"User={user}",
        f"Group={user}",
        f"Environment=PAULYOPS_HOME={_quote(str(root))}",
        f"Environment=PAULYOPS_DATA_DIR={_quote(str(data_dir))}",
        f"WorkingDirectory={root}",
        "KillSignal=SIGTERM",
        # SIGTERM to the main process only: running agent runs (its children) must live
        # through the graceful stop; whatever is left gets SIGKILL at TimeoutStopSec.
        "KillMode=mixed",
        "Restart=on-failure",
        "RestartSec=5",
        "UMask=0077",
        "LimitNOFILE=65536",
        "# Hardening: read-only system, writable instance root and data dir only.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={protect_home}",
        f"ReadWritePaths={' '.join(writable)}",
        f"PrivateTmp={private_tmp}",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "SystemCallArchitectures=native",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "# The agent sandbox (bubblewrap) needs these namespaces, unprivileged.",
        "RestrictNamespaces=user mnt pid net ipc uts",
    ]


def install_units(plan: UnitPlan, unit_dir: Path) -> list[Path]:
    """Write every unit of ``plan`` into ``unit_dir`` (atomically, mode 644)."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in plan.units.items():
        path = unit_dir / name
        write_atomic(path, text, mode=0o644)
        written.append(path)
    return written


def system_user_exists(user: str) -> bool:
    """Return whether ``user`` exists on this machine."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def prepare_host(plan_user: str, paths: list[Path], *, run: Runner = subprocess.run) -> list[str]:
    """As root: create the system user if missing and give it the instance's directories.

    Returns the commands run, for the report. Raises :class:`ExternalServiceError` naming
    the command that failed.
    """
    commands: list[list[str]] = []
    if not system_user_exists(plan_user):
        nologin = shutil.which("nologin") or "/usr/sbin/nologin"
        commands.append(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                str(paths[0]),
                "--shell",
                nologin,
                plan_user,
            ]
        )
    for path in paths:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        commands.append(["chown", "-R", f"{plan_user}:{plan_user}", str(path)])
    commands.append(["systemctl", "daemon-reload"])
    return _run_all(commands, run)


def enable_units(names: list[str], *, start: bool, run: Runner = subprocess.run) -> list[str]:
    """``systemctl enable`` (with ``--now`` when ``start``) every unit in ``names``."""
    command = ["systemctl", "enable", *(["--now"] if start else []), *names]
    return _run_all([command], run)


def _run_all(commands: list[list[str]], run: Runner) -> list[str]:
    done = []
    for command in commands:
        shown = " ".join(command)
        try:
            result = run(command, capture_output=True, text=True, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ExternalServiceError(f"`{shown}` could not run: {err}") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()[-1:] or [""]
            raise ExternalServiceError(
                f"`{shown}` failed (exit {result.returncode}): {detail[0]}".rstrip(": ")
            )
        done.append(shown)
    return done


__all__ = [
    "DEFAULT_UNIT_DIR",
    "DEFAULT_USER",
    "SERVER_UNIT",
    "WORKER_UNIT",
    "UnitPlan",
    "enable_units",
    "install_units",
    "prepare_host",
    "render_units",
    "system_user_exists",
]
