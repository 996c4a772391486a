"""Limits of a run and the slot uids runs take (no sandbox start needed)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from paulyops.core.errors import SandboxError
from paulyops.services.agents.sandbox import DEFAULT_LIMITS, Limits, resolve_limits
from paulyops.services.agents.sandbox._slots import reserve_slot

# Slot uids of the tests' range are shared: checks that no process of that range is left
# behind hold only when no other sandbox test runs at the same time.
pytestmark = pytest.mark.xdist_group("sandbox-uids")


def test_defaults_are_the_design_defaults() -> None:
    """CPU 60 s, 2 GiB, 300 s wall, 64 processes, 256 files, 256 MiB per file."""
    assert resolve_limits({}) == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.as_dict() == {
        "cpuSeconds": 60,
        "memoryMb": 2048,
        "wallSeconds": 300,
        "processes": 64,
        "openFiles": 256,
        "fileSizeMb": 256,
    }


def test_manifest_resources_are_capped_by_the_instance_maximum() -> None:
    """A manifest may ask for more (or less), never past the instance's maximum."""
    maximum = Limits(cpu_seconds=120, memory_mb=4096, wall_seconds=600, processes=128)
    limits = resolve_limits(
        {"cpuSeconds": 3600, "memoryMb": 3000, "wallSeconds": 5, "unknown": 9}, maximum
    )
    assert limits.cpu_seconds == 120
    assert limits.memory_mb == 3000
    assert limits.wall_seconds == 5
    assert limits.processes == DEFAULT_LIMITS.processes


def test_concurrent_runs_take_different_slots(tmp_path: Path) -> None:
    """Two holders never share a uid; a third waits, then is refused with the reason."""
    with (
        reserve_slot(tmp_path, (62400, 62401), wait_s=1) as first,
        reserve_slot(tmp_path, (62400, 62401), wait_s=1) as second,
    ):
        assert {first, second} == {62400, 62401}
        with (
            pytest.raises(SandboxError, match="stayed busy"),
            reserve_slot(tmp_path, (62400, 62401), wait_s=0.2),
        ):
            pass
    with reserve_slot(tmp_path, (62400, 62401), wait_s=1) as again:
        assert again in (62400, 62401)


def test_slots_are_locked_across_processes(tmp_path: Path) -> None:
    """A slot held by another process is not handed out; it frees when that process ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from paulyops.services.agents.sandbox._slots import reserve_slot\n"
            f"with reserve_slot(Path({str(tmp_path)!r}), (62410, 62410), wait_s=5):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(SandboxError),
            reserve_slot(tmp_path, (62410, 62410), wait_s=0.2),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 5
    with reserve_slot(tmp_path, (62410, 62410), wait_s=5) as uid:
        assert uid == 62410
        assert time.monotonic() < deadline
