"""The modes without bubblewrap, on a host simulated to lack it (the probe's facts edited).

As root the fallback is real: slot uid, rlimits, Landlock and seccomp denying inet
sockets, for bundled and trusted agents only. Without root it is refused, unless the
insecure setting allows rlimit-only runs (logged at every run).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import structlog

from paulyops.services.agents.sandbox import SandboxConfig, sandbox_check
from paulyops.services.agents.sandbox._probe import SandboxStatus, probe_host, status_of

from .conftest import AgentRunner, make_runner

# Slot uids of the tests' range are shared: checks that no process of that range is left
# behind hold only when no other sandbox test runs at the same time.
pytestmark = pytest.mark.xdist_group("sandbox-uids")

NO_BWRAP = "bubblewrap (bwrap) is not installed (simulated)"


def _simulated(config: SandboxConfig, **changes: object) -> SandboxStatus:
    facts = probe_host(config.python, config.uid_range[0])
    facts = dataclasses.replace(facts, bwrap=None, bwrap_error=NO_BWRAP, **changes)  # type: ignore[arg-type]
    return status_of(facts, config)


@pytest.fixture
def fallback(sandbox_config: SandboxConfig) -> SandboxStatus:
    """The fallback status of this host (needs root, setpriv and libseccomp)."""
    if os.geteuid() != 0:
        pytest.skip("the fallback sandbox needs root (slot uids)")
    status = _simulated(sandbox_config)
    assert status.mode == "fallback", status.reason
    return status


@pytest.fixture
def run_fallback(
    sandbox_config: SandboxConfig,
    build_agent: Callable[..., Path],
    sandbox_root: Path,
    fallback: SandboxStatus,
) -> AgentRunner:
    """A runner through the fallback sandbox."""
    return make_runner(sandbox_config, build_agent, sandbox_root, status=fallback)


def test_fallback_status_names_its_layers(fallback: SandboxStatus) -> None:
    """The fallback reports slot uid, rlimits, seccomp (and Landlock where the kernel has it)."""
    assert {"slot-uid", "no-new-privs", "rlimits", "wall-clock", "seccomp"} <= set(fallback.layers)
    assert "bubblewrap" not in fallback.layers
    assert fallback.reason is not None
    assert NO_BWRAP in fallback.reason
    assert fallback.is_degraded
    assert fallback.network is False


def test_fallback_refuses_untrusted_agents(run_fallback: AgentRunner) -> None:
    """An agent that is neither bundled nor from a verified publisher does not run."""
    outcome = run_fallback("def handle(ctx, item):\n    return Result(data={})\n")
    assert outcome.mode == "refused"
    assert outcome.error is not None
    assert "only bundled and trusted agents" in outcome.error
    assert not outcome.items[0].ok


def test_fallback_refuses_network(run_fallback: AgentRunner) -> None:
    """`network` cannot be isolated without bubblewrap and slirp4netns: refused."""
    outcome = run_fallback(
        "def handle(ctx, item):\n    return Result(data={})\n",
        capabilities=["network"],
        trusted=True,
    )
    assert outcome.mode == "refused"
    assert "network" in (outcome.error or "")


def test_fallback_confines_a_trusted_agent(
    run_fallback: AgentRunner, fallback: SandboxStatus
) -> None:
    """Slot uid, no inet sockets, no host secrets, writes only in scratch."""
    code = """
def attempt(fn):
    try:
        return ["ok", repr(fn())[:100]]
    except BaseException as err:
        return ["error", type(err).__name__]

def write(path):
    def go():
        with open(path, "w") as fh:
            fh.write("x")
    return go

def handle(ctx: Context, item: Item) -> Result:
    return Result(data={
        "uid": os.getuid(),
        "input": item.read_text(),
        "shadow": attempt(lambda: open("/etc/shadow").read()),
        "root": attempt(lambda: os.listdir("/root")),
        "work": attempt(lambda: os.listdir("/work")),
        "inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
        "inet6": attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM)),
        "var_tmp": attempt(write("/var/tmp/paulyops-fallback-evil")),
        "scratch": attempt(write(str(ctx.scratch / "ok"))),
        "env": sorted(os.environ),
        "unshare": attempt(lambda: os.unshare(os.CLONE_NEWUSER)),
    })
"""
    outcome = run_fallback(code, trusted=True)
    assert outcome.mode == "fallback"
    assert outcome.error is None, outcome.error
    item = outcome.items[0]
    assert item.ok, item.error
    assert item.result
    data = item.result["data"]
    assert 62000 <= data["uid"] <= 62031
    assert data["input"] == "hello\n"
    for name in ("shadow", "root", "inet", "inet6", "var_tmp", "unshare"):
        assert data[name][0] == "error", (name, data[name])
    assert data["scratch"][0] == "ok"
    if "landlock" in fallback.layers:
        assert data["work"][0] == "error"
    assert not Path("/var/tmp/paulyops-fallback-evil").exists()
    assert "PAULYOPS_HOME" not in data["env"]


def test_fallback_ends_a_fork_bomb(
    run_fallback: AgentRunner, sandbox_config: SandboxConfig
) -> None:
    """Without a PID namespace the wall clock and the slot uid's clean-up still end it."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    while True:
        try:
            if os.fork() == 0:
                os.setsid()
        except OSError:
            time.sleep(0.01)
"""
    outcome = run_fallback(code, trusted=True, resources={"processes": 16, "wallSeconds": 2})
    assert outcome.error is not None
    assert not outcome.items[0].ok
    first, last = sandbox_config.uid_range
    deadline = time.monotonic() + 15
    while True:
        left = [
            p.pid
            for p in psutil.process_iter(["uids", "status"])
            # A zombie runs nothing; reaping it is the host's init's job, and a loaded
            # machine's init may take its time.
            if first <= p.info["uids"].real <= last and p.info["status"] != psutil.STATUS_ZOMBIE
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left == []


def test_without_root_and_bubblewrap_runs_are_refused(
    sandbox_config: SandboxConfig, build_agent: Callable[..., Path], sandbox_root: Path
) -> None:
    """No root, no bubblewrap, no insecure setting: refused, and healthz says why."""
    status = _simulated(sandbox_config, is_root=False)
    assert status.mode == "refused"
    assert "PAULYOPS_SANDBOX_INSECURE=1" in (status.reason or "")
    run = make_runner(sandbox_config, build_agent, sandbox_root, status=status)
    outcome = run("def handle(ctx, item):\n    return Result(data={})\n", trusted=True)
    assert outcome.mode == "refused"
    assert outcome.items[0].error == outcome.error


def test_insecure_setting_runs_and_logs_every_run(
    sandbox_config: SandboxConfig, build_agent: Callable[..., Path], sandbox_root: Path
) -> None:
    """With PAULYOPS_SANDBOX_INSECURE=1 the run happens, and a warning is logged for it."""
    config = dataclasses.replace(sandbox_config, insecure=True)
    status = _simulated(config, is_root=False)
    assert status.mode == "insecure"
    assert "rlimits" in status.layers
    run = make_runner(config, build_agent, sandbox_root, status=status)
    with structlog.testing.capture_logs() as logs:
        outcome = run("def handle(ctx, item):\n    return Result(data={'ran': True})\n")
    assert outcome.mode == "insecure"
    assert outcome.items[0].ok, outcome.items[0].error
    assert any(entry["event"] == "sandbox_insecure_run" for entry in logs)


def test_health_check_reports_mode_and_layers(sandbox_config: SandboxConfig) -> None:
    """The sandbox check names the mode and layers; only full bubblewrap is healthy."""
    result = sandbox_check(sandbox_config)()
    assert result.details["mode"] in ("bubblewrap", "fallback", "insecure", "refused")
    assert isinstance(result.details["layers"], list)
    if result.details["mode"] == "bubblewrap" and "slot-uid" in result.details["layers"]:
        assert result.status == "healthy"
        assert result.details["reason"] is None
    else:
        assert result.status in ("degraded", "unhealthy")
        assert result.details["reason"]


def test_fallback_does_not_wait_for_a_child_left_behind(run_fallback: AgentRunner) -> None:
    """A child that outlives the agent and holds its pipes does not hold the batch."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    if os.fork() == 0:
        os.setsid()
        time.sleep(30)
        os._exit(0)
    return Result(data={"done": True})
"""
    started = time.monotonic()
    outcome = run_fallback(code, trusted=True, resources={"wallSeconds": 20})
    assert time.monotonic() - started < 8
    assert outcome.error is None, outcome.error
    assert outcome.items[0].ok
