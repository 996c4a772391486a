"""Fixtures for sandbox tests: real agent packages built from source text, a real sandbox.

pytest's own temporary folders (``/tmp/pytest-of-root``, 0700) are closed to slot uids,
so the sandbox root and package caches live in a 0755 folder under ``/var/tmp``. The
tests take slot uids 62000-62031, apart from an instance's default range.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from paulyops.services.agents.runtime import RunItem, RunOutcome, RunRequest
from paulyops.services.agents.sandbox import (
    SandboxConfig,
    SandboxStatus,
    run_batch,
    sandbox_status,
)
from paulyops.services.agents.sandbox._runner import run as run_with_status
from paulyops.services.agents.unpack import unpack
from paulyops.services.marketplace.build import build_package

MANIFEST = """\
format = 1
id = "acme.{name}"
name = "Test agent"
version = "0.1.0"
description = "A test agent."
publisher = "acme"
license = "MIT"
entrypoint = "agent:handle"
capabilities = {capabilities}

[compatibility]
paulyops = ">=0.1,<1"
python = ">=3.11"
platforms = ["linux"]
"""

HEADER = """\
import ctypes, errno, json, os, socket, sys, time
from paulyops.sdk import Context, Item, Result
"""


@pytest.fixture(scope="session")
def sandbox_root() -> Iterator[Path]:
    """A 0755 sandbox root that slot uids can traverse, removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="paulyops-sandbox-test-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_config(sandbox_root: Path) -> SandboxConfig:
    """The configuration every sandbox test runs with."""
    return SandboxConfig(root=sandbox_root / "root", uid_range=(62000, 62031))


@pytest.fixture(scope="session")
def bwrap_config(sandbox_config: SandboxConfig) -> SandboxConfig:
    """The configuration, skipping when this host cannot run bubblewrap as root."""
    status = sandbox_status(sandbox_config)
    if status.mode != "bubblewrap" or "slot-uid" not in status.layers:
        pytest.skip(f"needs bubblewrap as root (./scripts/ensure-test-deps): {status.reason}")
    return sandbox_config


AgentRunner = Callable[..., RunOutcome]


@pytest.fixture(scope="session")
def build_agent(sandbox_root: Path) -> Callable[..., Path]:
    """Return ``build(code, name=..., capabilities=...) -> unpacked package folder``."""
    counter = iter(range(10_000))

    def build(code: str, *, capabilities: Sequence[str] = ()) -> Path:
        src = sandbox_root / "src" / f"agent{next(counter)}"
        src.mkdir(parents=True)
        caps = "[" + ", ".join(f'"{c}"' for c in capabilities) + "]"
        (src / "manifest.toml").write_text(MANIFEST.format(name="probe", capabilities=caps))
        (src / "agent.py").write_text(HEADER + textwrap.dedent(code))
        data = build_package(src)
        return unpack(data, hashlib.sha256(data).hexdigest(), sandbox_root / "packages")

    return build


@pytest.fixture
def run_agent(
    bwrap_config: SandboxConfig, build_agent: Callable[..., Path], sandbox_root: Path
) -> AgentRunner:
    """Return ``run(code, items=1, ...) -> RunOutcome`` through the real sandbox."""
    return make_runner(bwrap_config, build_agent, sandbox_root)


def make_runner(
    config: SandboxConfig,
    build_agent: Callable[..., Path],
    sandbox_root: Path,
    status: SandboxStatus | None = None,
) -> AgentRunner:
    """Build a runner for ``config`` (shared by the bubblewrap and fallback tests)."""
    inputs = sandbox_root / "inputs"
    inputs.mkdir(exist_ok=True)

    def run(
        code: str,
        *,
        items: int = 1,
        capabilities: Sequence[str] = (),
        resources: Mapping[str, int] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        content: bytes = b"hello\n",
        name: str = "input.txt",
        trusted: bool = False,
        settings: Mapping[str, Any] | None = None,
        package: Path | None = None,
    ) -> RunOutcome:
        pkg = package or build_agent(code, capabilities=capabilities)
        source = inputs / hashlib.sha256(content).hexdigest()
        source.write_bytes(content)
        request = RunRequest(
            organization_id="org-a",
            installation_id="inst-a",
            agent_id="acme.probe",
            version="0.1.0",
            package_dir=pkg,
            entrypoint="agent:handle",
            items=[
                RunItem(
                    job_id=f"job-{i}",
                    attempt=1,
                    source=source,
                    name=name,
                    media_type="text/plain",
                    size=len(content),
                    metadata=(metadata[i] if metadata else {}),
                )
                for i in range(items)
            ],
            capabilities=frozenset(capabilities),
            settings=settings or {},
            resources={"wallSeconds": 20, **(resources or {})},
            trusted=trusted,
        )
        if status is not None:  # a simulated host (the fallback without bubblewrap)
            return run_with_status(request, config, status)
        return run_batch(request, config=config)

    return run
