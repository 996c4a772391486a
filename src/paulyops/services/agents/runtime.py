"""The seam between jobs and the sandbox: what one sandbox start is given, and what comes back.

One run carries a batch of up to :data:`MAX_BATCH` jobs of one installation, so the
start-up cost is paid once per batch. The job layer (``services/agents/jobs.py``) builds a
:class:`RunRequest` from claimed Job rows and an unpacked, checksum-verified package; the
sandbox (``services/agents/sandbox/``) stages the inputs read-only, runs the agent under
protocol v1 (``docs/agents/protocol.md``) and returns a :class:`RunOutcome` with exactly one
:class:`ItemOutcome` per item, in order. Nothing here touches the database: the job layer
records outcomes, the sandbox only runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

MAX_BATCH = 20

SandboxMode = Literal["bubblewrap", "fallback", "insecure", "refused"]
"""Which isolation a run had: bubblewrap namespaces + seccomp + rlimits + slot uid; the
fallback (slot uid, rlimits, Landlock, seccomp denying inet); ``insecure`` (rlimits only,
``PAULYOPS_SANDBOX_INSECURE=1``); ``refused`` (no run happened)."""


@dataclass(frozen=True, slots=True)
class RunItem:
    """One job's input. The sandbox stages a 0444 copy of ``source`` for the agent."""

    job_id: str
    attempt: int
    source: Path
    name: str
    media_type: str
    size: int
    document_class: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One sandbox start: a batch of jobs of one installation.

    ``settings`` holds only what the run may see (secret fields only with their
    ``secrets:<field>`` grant); ``context`` holds earlier results (protocol v1
    ``PriorResult`` dicts) only with ``results:read``. ``resources`` are the manifest's
    requests (``cpuSeconds``, ``memoryMb``, ...), capped by the instance maximum.
    ``trusted`` is true for bundled and verified-publisher packages: the fallback
    sandbox runs only those.
    """

    organization_id: str
    installation_id: str
    agent_id: str
    version: str
    package_dir: Path
    entrypoint: str
    items: Sequence[RunItem]
    capabilities: frozenset[str] = frozenset()
    settings: Mapping[str, Any] = field(default_factory=dict)
    context: Sequence[Mapping[str, Any]] = ()
    resources: Mapping[str, int] = field(default_factory=dict)
    trusted: bool = False
    correlation_id: str | None = None
    # The secret settings' values, replaced by [secret] in the agent's log lines.
    secret_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """What became of one item: a validated protocol v1 result, or the reason it failed.

    ``files`` are the files the agent wrote under ``outputs/`` for this item, read back
    (capped) before the run directory is removed; empty without ``outputs:write``.
    """

    job_id: str
    ok: bool
    result: Mapping[str, Any] | None = None
    error: str | None = None
    duration_ms: float = 0.0
    files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentLogLine:
    """One stderr line of a run: its job (``None``: not tagged, the whole batch's), when,
    level, logger and message (clipped; the run's secret settings already replaced)."""

    job_id: str | None
    at: datetime
    level: str
    logger: str
    message: str


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one sandbox start gave: one outcome per item, in the request's order.

    ``error`` names a failure of the whole batch (timeout, memory, killed, protocol
    violation, refused); the items it left unfinished carry that reason too.
    """

    items: Sequence[ItemOutcome]
    mode: SandboxMode
    error: str | None = None
    exit_code: int | None = None
    duration_ms: float = 0.0
    logs: Sequence[AgentLogLine] = ()
    dropped_logs: int = 0


class BatchRunner(Protocol):
    """Runs one batch; ``services.agents.sandbox.run_batch`` is the real one."""

    def __call__(self, request: RunRequest) -> RunOutcome: ...


__all__ = [
    "MAX_BATCH",
    "AgentLogLine",
    "BatchRunner",
    "ItemOutcome",
    "RunItem",
    "RunOutcome",
    "RunRequest",
    "SandboxMode",
]
