"""The agent sandbox: every agent run is a child process behind these layers.

With bubblewrap (the normal case, as root): the run drops to a slot uid with setpriv (no
capabilities, no new privileges), takes rlimits with prlimit, and bubblewrap gives it new
namespaces (``--unshare-all --disable-userns``, a clean environment, ``--die-with-parent``,
``--new-session``) with a read-only view of ``/usr``, a few ``/etc`` files, the runtime
(bootstrap + ``paulyops.sdk``), the package and the staged inputs, plus one writable
scratch and the outputs folder; a seccomp filter (``_seccomp.py``) sits on top. Network
only with the ``network`` capability, through slirp4netns with host loopback disabled.
A wall-clock timeout kills the whole process group.

Without bubblewrap, as root: the fallback (slot uid, rlimits, Landlock, seccomp denying
inet sockets), bundled and trusted agents only. Without root and bubblewrap: refused,
unless ``PAULYOPS_SANDBOX_INSECURE=1`` (logged at every run). ``docs/agents/sandbox.md``
describes the layers, modes, limits and settings.

Public entries: :func:`run_batch` (the :class:`~paulyops.services.agents.runtime.BatchRunner`
the job layer calls), :func:`sandbox_status` (mode and layers, probed once per process),
:func:`sandbox_check` (the healthz check) and :func:`configure`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from paulyops.core.errors import SandboxError
from paulyops.core.health import CheckResult, HealthRegistry
from paulyops.services.agents.runtime import RunOutcome, RunRequest
from paulyops.services.agents.sandbox._config import (
    DEFAULT_LIMITS,
    INSTANCE_MAXIMUM,
    Limits,
    SandboxConfig,
    config_from_settings,
    resolve_limits,
)
from paulyops.services.agents.sandbox._probe import HostFacts, SandboxStatus, probe_host, status_of
from paulyops.services.agents.sandbox._runner import run as _run
from paulyops.services.agents.sandbox._seccomp import BLOCKED_CALLS, build_filter
from paulyops.services.agents.sandbox._staging import check_traversable

_lock = threading.Lock()
_config: SandboxConfig | None = None


def configure(config: SandboxConfig) -> None:
    """Set the configuration :func:`run_batch` uses when it is given none (at start-up)."""
    global _config
    with _lock:
        _config = config


def current_config() -> SandboxConfig:
    """Return the configured sandbox, or the one of the process's settings."""
    global _config
    with _lock:
        if _config is None:
            from paulyops.core.settings import load_settings

            _config = config_from_settings(load_settings())
        return _config


def sandbox_status(config: SandboxConfig | None = None) -> SandboxStatus:
    """Return the mode and layers runs get (the host is probed once per process)."""
    config = config or current_config()
    facts = probe_host(config.python, config.uid_range[0])
    return status_of(facts, config)


def run_batch(request: RunRequest, *, config: SandboxConfig | None = None) -> RunOutcome:
    """Run one batch of one installation in the sandbox; never raises for the agent's faults.

    Every item gets an outcome, in order. A failure of the whole batch (refused, timeout,
    a limit, a protocol violation) is ``RunOutcome.error`` and the reason of every item it
    left unfinished.

    Raises:
        SandboxError: the host could not stage or start the run (e.g. every slot uid busy,
            a sandbox root other uids cannot traverse).
    """
    config = config or current_config()
    return _run(request, config, sandbox_status(config))


def sandbox_check(config: SandboxConfig) -> Callable[[], CheckResult]:
    """Return the healthz check: the mode and layers; degraded with the reason in
    fallback or insecure mode, unhealthy when runs are refused."""

    def check() -> CheckResult:
        status = sandbox_status(config)
        details = status.details()
        if status.mode == "refused":
            return CheckResult("unhealthy", details)
        if "slot-uid" in status.layers:
            problem = root_problem(config.root, config.uid_range[0])
            if problem:
                details["reason"] = problem
                return CheckResult("unhealthy", details)
        return CheckResult("degraded" if status.is_degraded else "healthy", details)

    return check


def root_problem(root: Path, uid: int) -> str | None:
    """Return why slot uids could not reach ``root`` (its nearest existing folder), or None."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        check_traversable(existing, uid)
    except SandboxError as err:
        return err.message
    return None


def register_health_check(registry: HealthRegistry, config: SandboxConfig) -> None:
    """Register the ``sandbox`` check (non-critical) once on an instance's registry."""
    if "sandbox" not in registry.names:
        registry.register("sandbox", sandbox_check(config), critical=False)


__all__ = [
    "BLOCKED_CALLS",
    "DEFAULT_LIMITS",
    "INSTANCE_MAXIMUM",
    "HostFacts",
    "Limits",
    "SandboxConfig",
    "SandboxStatus",
    "build_filter",
    "config_from_settings",
    "configure",
    "current_config",
    "register_health_check",
    "resolve_limits",
    "root_problem",
    "run_batch",
    "sandbox_check",
    "sandbox_status",
]
