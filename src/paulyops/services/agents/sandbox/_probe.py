"""What the host offers (probed once per process) and the isolation that follows from it."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paulyops.services.agents.runtime import SandboxMode
from paulyops.services.agents.sandbox._config import SandboxConfig
from paulyops.services.agents.sandbox._seccomp import (
    SeccompUnavailableError,
    build_filter,
    libseccomp_version,
)

PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The host's sandboxing tools, as found by :func:`probe_host`."""

    is_root: bool
    bwrap: str | None
    bwrap_error: str | None
    setpriv: str | None
    prlimit: str | None
    slirp4netns: str | None
    landlock_abi: int
    libseccomp: str | None
    seccomp_error: str | None


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """The isolation agent runs get on this host, with this configuration.

    ``layers`` names what is in force (``bubblewrap``, ``seccomp``, ``slot-uid``,
    ``no-new-privs``, ``landlock``, ``rlimits``, ``wall-clock``); ``reason`` says why the
    mode is less than bubblewrap with a slot uid (None when it is not); ``network`` says
    whether a run granted ``network`` can be served (slirp4netns).
    """

    mode: SandboxMode
    layers: tuple[str, ...]
    reason: str | None
    network: bool
    facts: HostFacts = field(repr=False)

    @property
    def is_degraded(self) -> bool:
        """Whether healthz should report the sandbox as degraded."""
        return self.mode != "bubblewrap" or self.reason is not None

    def details(self) -> dict[str, Any]:
        """Return the healthz ``details`` of the sandbox check."""
        return {
            "mode": self.mode,
            "layers": list(self.layers),
            "reason": self.reason,
            "network": "slirp4netns" if self.network else None,
            "landlockAbi": self.facts.landlock_abi or None,
            "libseccomp": self.facts.libseccomp,
        }


def _landlock_abi() -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(0, int(abi))


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _try_bwrap(bwrap: str, setpriv: str | None, python: Path, uid: int | None) -> str | None:
    """Start the interpreter the way runs do; return None when it worked, else why not."""
    from paulyops.services.agents.sandbox._command import base_bwrap_args, drop_privileges

    cmd = drop_privileges(setpriv, uid) if uid is not None and setpriv else []
    cmd += [bwrap, *base_bwrap_args(python), "--", str(python), "-I", "-c", "pass"]
    try:
        proc = subprocess.run(  # noqa: S603  # fixed argv of found tools
            cmd,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap did not start: {type(err).__name__}: {err}"
    if proc.returncode != 0:
        return f"bubblewrap failed (exit {proc.returncode}): {_first_line(proc.stderr)}"
    return None


@functools.cache
def probe_host(python: Path, probe_uid: int) -> HostFacts:
    """Find the host's tools and try bubblewrap once (cached for the process).

    Args:
        python: the agents' interpreter.
        probe_uid: the slot uid the trial run drops to (as root).
    """
    is_root = os.geteuid() == 0
    setpriv = shutil.which("setpriv")
    bwrap = shutil.which("bwrap")
    bwrap_error: str | None = None
    if bwrap is None:
        bwrap_error = "bubblewrap (bwrap) is not installed"
    elif is_root and setpriv is None:
        bwrap_error = "setpriv (util-linux) is missing: cannot drop to a slot uid"
    else:
        bwrap_error = _try_bwrap(bwrap, setpriv, python, probe_uid if is_root else None)
    seccomp_error: str | None = None
    try:
        build_filter(deny_inet=False)
        build_filter(deny_inet=True)
    except SeccompUnavailableError as err:
        seccomp_error = str(err)
    return HostFacts(
        is_root=is_root,
        bwrap=bwrap,
        bwrap_error=bwrap_error,
        setpriv=setpriv,
        prlimit=shutil.which("prlimit"),
        slirp4netns=shutil.which("slirp4netns"),
        landlock_abi=_landlock_abi(),
        libseccomp=libseccomp_version(),
        seccomp_error=seccomp_error,
    )


def status_of(facts: HostFacts, config: SandboxConfig) -> SandboxStatus:
    """Derive the mode and layers from the host's facts and the configuration."""
    seccomp = facts.seccomp_error is None
    if facts.bwrap_error is None:
        layers = ["bubblewrap", "no-new-privs", "rlimits", "wall-clock"]
        if seccomp:
            layers.insert(1, "seccomp")
        reasons = []
        if facts.is_root:
            layers.insert(1, "slot-uid")
        else:
            reasons.append(
                "not running as root: agents run as the server's uid inside a user "
                "namespace (no slot uid)"
            )
        if not seccomp:
            reasons.append(f"no seccomp filter: {facts.seccomp_error}")
        return SandboxStatus(
            mode="bubblewrap",
            layers=tuple(layers),
            reason="; ".join(reasons) or None,
            network=facts.slirp4netns is not None,
            facts=facts,
        )
    reason = facts.bwrap_error or "bubblewrap is unavailable"
    extra = ["rlimits", "wall-clock"]
    if seccomp:
        extra.append("seccomp")
    if facts.landlock_abi:
        extra.append("landlock")
    if facts.is_root and facts.setpriv and seccomp:
        return SandboxStatus(
            mode="fallback",
            layers=("slot-uid", "no-new-privs", *extra),
            reason=f"{reason}: fallback sandbox (bundled and trusted agents only)"
            + ("" if facts.landlock_abi else "; Landlock is not available"),
            network=False,
            facts=facts,
        )
    if not facts.is_root:
        reason += "; not running as root (no slot uid)"
    elif not seccomp:
        reason += f"; {facts.seccomp_error}"
    if config.insecure:
        return SandboxStatus(
            mode="insecure",
            layers=tuple(extra),
            reason=f"{reason}: PAULYOPS_SANDBOX_INSECURE=1 runs agents without isolation",
            network=False,
            facts=facts,
        )
    return SandboxStatus(
        mode="refused",
        layers=(),
        reason=f"{reason}: agent runs are refused (set PAULYOPS_SANDBOX_INSECURE=1 to allow "
        "them without isolation, or install bubblewrap)",
        network=False,
        facts=facts,
    )
