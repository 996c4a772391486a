"""What the sandbox is configured with: its root, slot uids and the limits of a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paulyops.core.settings import Settings

AGENT_PYTHON = Path("/usr/bin/python3")
"""Debian's interpreter: readable by a slot uid, unlike a pyenv build under /root (0700)."""
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The resource limits of one run (DESIGN.md, "The sandbox": the defaults)."""

    cpu_seconds: int = 60
    memory_mb: int = 2048
    wall_seconds: int = 300
    processes: int = 64
    open_files: int = 256
    file_size_mb: int = 256

    def rlimits(self) -> dict[str, int]:
        """Return the bootstrap's ``limits`` (rlimit name -> value)."""
        return {
            "cpu": self.cpu_seconds,
            "as": self.memory_mb * MIB,
            "nproc": self.processes,
            "nofile": self.open_files,
            "fsize": self.file_size_mb * MIB,
            "core": 0,
        }

    def as_dict(self) -> dict[str, int]:
        """Return the limits in the manifest's camelCase names."""
        return {
            "cpuSeconds": self.cpu_seconds,
            "memoryMb": self.memory_mb,
            "wallSeconds": self.wall_seconds,
            "processes": self.processes,
            "openFiles": self.open_files,
            "fileSizeMb": self.file_size_mb,
        }


DEFAULT_LIMITS = Limits()
INSTANCE_MAXIMUM = Limits(
    cpu_seconds=600,
    memory_mb=8192,
    wall_seconds=3600,
    processes=256,
    open_files=1024,
    file_size_mb=1024,
)
_FIELDS = {
    "cpuSeconds": "cpu_seconds",
    "memoryMb": "memory_mb",
    "wallSeconds": "wall_seconds",
    "processes": "processes",
    "openFiles": "open_files",
    "fileSizeMb": "file_size_mb",
}


def resolve_limits(resources: Mapping[str, int], maximum: Limits = INSTANCE_MAXIMUM) -> Limits:
    """Return the defaults with a manifest's ``resources`` applied, each capped by ``maximum``.

    Unknown keys are ignored (the manifest validator already refuses them); a request
    below the default is honoured (a test or a cautious author may ask for less).
    """
    values = {name: getattr(DEFAULT_LIMITS, name) for name in _FIELDS.values()}
    for key, value in resources.items():
        name = _FIELDS.get(key)
        if name is not None and isinstance(value, int) and value >= 1:
            values[name] = value
    for name in values:
        values[name] = min(values[name], getattr(maximum, name))
    return Limits(**values)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Where runs are staged, which uids they take and how far a manifest may raise limits.

    Args:
        root: ``PAULYOPS_SANDBOX_ROOT``; holds run folders, slot locks and the runtime
            files (the bootstrap and ``paulyops.sdk``), never a secret.
        insecure: ``PAULYOPS_SANDBOX_INSECURE``.
        uid_range: ``PAULYOPS_SANDBOX_UIDS`` as (first, last).
        maximum: the instance maximum of every limit.
        python: the agents' interpreter.
        slot_wait_s: how long a run waits for a free slot uid.
    """

    root: Path
    insecure: bool = False
    uid_range: tuple[int, int] = (61000, 61063)
    maximum: Limits = field(default=INSTANCE_MAXIMUM)
    python: Path = AGENT_PYTHON
    slot_wait_s: float = 60.0


def config_from_settings(settings: Settings) -> SandboxConfig:
    """Return the sandbox configuration of an instance's settings."""
    return SandboxConfig(
        root=settings.sandbox_root,
        insecure=settings.sandbox_insecure,
        uid_range=settings.sandbox_uid_range,
        maximum=Limits(
            cpu_seconds=settings.sandbox_max_cpu_seconds,
            memory_mb=settings.sandbox_max_memory_mb,
            wall_seconds=settings.sandbox_max_wall_seconds,
            processes=settings.sandbox_max_processes,
            open_files=INSTANCE_MAXIMUM.open_files,
            file_size_mb=settings.sandbox_max_file_size_mb,
        ),
    )
