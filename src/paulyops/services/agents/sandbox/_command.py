"""The command lines of a run: privilege drop, resource limits and the bubblewrap view."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from paulyops.services.agents.sandbox._config import MIB, Limits

# Where the agent sees things inside bubblewrap.
INSIDE = Path("/run/paulyops")
LIB, PACKAGE, INPUTS = INSIDE / "lib", INSIDE / "package", INSIDE / "inputs"
SCRATCH, OUTPUTS = INSIDE / "scratch", INSIDE / "outputs"

SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/fonts")
NETWORK_ETC = ("/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates")
BLAS_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
)
SLIRP_DNS = "10.0.2.3"


def agent_env(scratch: Path) -> dict[str, str]:
    """Return the whole environment an agent gets (nothing of the host's)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(dict.fromkeys(BLAS_VARS, "1"))
    return env


def drop_privileges(setpriv: str, uid: int) -> list[str]:
    """Return the setpriv prefix that becomes ``uid`` for real (``bwrap --uid`` as root
    stays root on the host), with no capabilities and no new privileges."""
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def rlimit_prefix(prlimit: str, limits: Limits) -> list[str]:
    """Return the prlimit prefix: the limits hold from the first exec on, and the CPU
    hard limit sits a second above the soft one so SIGXCPU names the cause."""
    return [
        prlimit,
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
        f"--as={limits.memory_mb * MIB}",
        f"--nproc={limits.processes}",
        f"--nofile={limits.open_files}",
        f"--fsize={limits.file_size_mb * MIB}",
        "--core=0",
        "--",
    ]


def _interpreter_binds(python: Path) -> list[str]:
    real = python.resolve()
    if real.is_relative_to("/usr"):
        return []
    prefix = real.parent.parent  # <prefix>/bin/python3 -> <prefix>
    return ["--ro-bind", str(prefix), str(prefix)]


def base_bwrap_args(python: Path) -> list[str]:
    """Return the namespaces and the read-only system view every run starts from."""
    args = [
        "--die-with-parent",
        "--clearenv",
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--new-session",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for path in SYSTEM_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", *_interpreter_binds(python)]
    return args


def bwrap_args(
    *,
    python: Path,
    lib: Path,
    package: Path,
    run_dir: Path,
    env: Mapping[str, str],
    seccomp_fd: int | None,
    network: bool,
    info_fd: int | None = None,
    block_fd: int | None = None,
) -> list[str]:
    """Return bubblewrap's arguments for one run (without the command)."""
    args = base_bwrap_args(python)
    args += [
        "--ro-bind",
        str(lib),
        str(LIB),
        "--ro-bind",
        str(package),
        str(PACKAGE),
        "--ro-bind",
        str(run_dir / "inputs"),
        str(INPUTS),
        "--bind",
        str(run_dir / "scratch"),
        str(SCRATCH),
        "--bind",
        str(run_dir / "outputs"),
        str(OUTPUTS),
        "--symlink",
        str(SCRATCH),
        "/tmp",  # noqa: S108  # inside the sandbox: a link to its own scratch
        "--chdir",
        str(SCRATCH),
    ]
    if network:
        args += ["--ro-bind", str(run_dir / "etc" / "resolv.conf"), "/etc/resolv.conf"]
        args += ["--ro-bind", str(run_dir / "etc" / "hosts"), "/etc/hosts"]
        for path in NETWORK_ETC:
            args += ["--ro-bind-try", path, path]
    # The root is bubblewrap's own tmpfs: make it (and every folder made on it) read-only.
    args += ["--remount-ro", "/"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--add-seccomp-fd", str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    if block_fd is not None:
        args += ["--block-fd", str(block_fd)]
    return args
