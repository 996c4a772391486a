"""The real sandbox (bubblewrap as a slot uid): what an agent can and cannot do.

Each hostile agent must be stopped or see nothing, its item or batch failed with the
reason, and the host unharmed. Limits are kept small so the suite stays fast on 2 cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from paulyops.services.agents.sandbox import SandboxConfig

from .conftest import AgentRunner

# Slot uids of the tests' range are shared: checks that no process of that range is left
# behind hold only when no other sandbox test runs at the same time.
pytestmark = pytest.mark.xdist_group("sandbox-uids")

RETURN_PROBES = """
def handle(ctx: Context, item: Item) -> Result:
    seen = {}
    for name, probe in PROBES.items():
        try:
            seen[name] = ("ok", repr(probe(ctx, item))[:200])
        except BaseException as err:
            seen[name] = ("error", type(err).__name__)
    return Result(data=seen)
"""


def probes(body: str) -> str:
    """Agent code: ``body`` defines PROBES (name -> callable), the agent reports each."""
    return body + RETURN_PROBES


def _only_ok(outcome):  # type: ignore[no-untyped-def]
    assert outcome.error is None, outcome.error
    item = outcome.items[0]
    assert item.ok, item.error
    return item.result["data"]


def test_agent_runs_as_slot_uid_on_debian_python(run_agent: AgentRunner) -> None:
    """The agent runs as a slot uid (not root, not the server) on /usr/bin/python3."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    return Result(data={"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                        "euid": os.geteuid(), "version": list(sys.version_info),
                        "executable": sys.executable, "text": item.read_text(),
                        "mode": oct(os.stat(item.path).st_mode & 0o777)})
"""
    data = _only_ok(run_agent(code))
    expected = subprocess.run(
        [
            "/usr/bin/python3",
            "-I",
            "-c",
            "import sys, json; print(json.dumps(list(sys.version_info)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert data["version"] == json.loads(expected)
    assert 62000 <= data["uid"] <= 62031
    assert data["euid"] == data["uid"] == data["gid"]
    assert data["uid"] != os.getuid()
    assert data["groups"] in ([], [data["gid"]])
    assert data["text"] == "hello\n"
    assert data["mode"] == "0o444"


def test_batch_continues_after_one_item_raises(run_agent: AgentRunner) -> None:
    """Five items in one start; the one that raises fails alone, in order."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    if item.metadata["n"] == 2:
        raise ValueError("item two is broken")
    return Result(data={"n": item.metadata["n"], "pid": os.getpid()})
"""
    outcome = run_agent(code, items=5, metadata=[{"n": n} for n in range(5)])
    assert outcome.error is None
    assert [i.job_id for i in outcome.items] == [f"job-{n}" for n in range(5)]
    assert [i.ok for i in outcome.items] == [True, True, False, True, True]
    assert outcome.items[2].error == "ValueError: item two is broken"
    pids = {i.result["data"]["pid"] for i in outcome.items if i.ok and i.result}
    assert len(pids) == 1  # one sandbox start for the whole batch


def test_host_secrets_and_homes_are_invisible(run_agent: AgentRunner) -> None:
    """/etc/shadow, /root, /home, /work and /var are not in the agent's view."""
    code = probes("""
PROBES = {
    "shadow": lambda c, i: open("/etc/shadow").read(),
    "passwd": lambda c, i: open("/etc/passwd").read(),
    "root": lambda c, i: os.listdir("/root"),
    "home": lambda c, i: os.listdir("/home"),
    "work": lambda c, i: os.listdir("/work"),
    "var": lambda c, i: os.listdir("/var"),
    "etc": lambda c, i: sorted(os.listdir("/etc")),
}
""")
    data = _only_ok(run_agent(code))
    for name in ("shadow", "passwd", "root", "home", "work", "var"):
        assert data[name][0] == "error", (name, data[name])
    assert "shadow" not in data["etc"][1]


def test_writes_outside_scratch_fail(run_agent: AgentRunner) -> None:
    """Only the scratch folder (and /tmp, a link to it) is writable."""
    code = probes("""
def write(path):
    def go(c, i):
        with open(path, "w") as fh:
            fh.write("x")
        return path
    return go
PROBES = {
    "usr": write("/usr/evil"),
    "etc": write("/etc/evil"),
    "root_dir": write("/evil"),
    "package": write("/run/paulyops/package/evil.py"),
    "inputs": write("/run/paulyops/inputs/0/input.txt"),
    "lib": write("/run/paulyops/lib/paulyops/sdk/__init__.py"),
    "proc": write("/proc/sys/kernel/hostname"),
    "scratch": lambda c, i: write(str(c.scratch / "ok.txt"))(c, i),
    "tmp": write("/tmp/ok.txt"),
}
""")
    data = _only_ok(run_agent(code))
    for name in ("usr", "etc", "root_dir", "package", "inputs", "lib", "proc"):
        assert data[name][0] == "error", (name, data[name])
    assert data["scratch"][0] == "ok"
    assert data["tmp"][0] == "ok"
    assert not Path("/usr/evil").exists()
    assert not Path("/etc/evil").exists()


def test_local_services_are_unreachable(run_agent: AgentRunner) -> None:
    """The host's PostgreSQL (5432), Redis (6379) and RabbitMQ (5672) are out of reach."""
    code = probes("""
def connect(host, port):
    def go(c, i):
        s = socket.create_connection((host, port), timeout=2)
        s.close()
        return "connected"
    return go
PROBES = {f"{h}:{p}": connect(h, p) for h in ("127.0.0.1", "10.0.2.2") for p in (5432, 6379, 5672)}
""")
    data = _only_ok(run_agent(code))
    assert all(v[0] == "error" for v in data.values()), data


def test_fork_bomb_is_contained_and_ended(
    run_agent: AgentRunner, bwrap_config: SandboxConfig
) -> None:
    """A fork bomb hits the process limit, the wall clock ends it, nothing is left behind."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
"""
    started = time.monotonic()
    outcome = run_agent(code, resources={"processes": 16, "wallSeconds": 3, "cpuSeconds": 5})
    assert time.monotonic() - started < 15
    assert not outcome.items[0].ok
    assert outcome.error is not None
    assert "timeout" in outcome.error or "limit" in outcome.error or "killed" in outcome.error
    first, last = bwrap_config.uid_range
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


def test_memory_hog_gets_memory_error(run_agent: AgentRunner) -> None:
    """Allocating 4 GB fails inside the address-space limit; the item fails with the reason."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    if item.metadata["n"] == 0:
        blob = bytearray(4 * 1024 ** 3)
        return Result(data={"len": len(blob)})
    return Result(data={"ok": True})
"""
    outcome = run_agent(code, items=2, metadata=[{"n": 0}, {"n": 1}], resources={"memoryMb": 512})
    assert outcome.items[0].ok is False
    assert "MemoryError" in (outcome.items[0].error or "")
    assert outcome.items[1].ok


def test_cpu_spin_is_stopped_by_the_cpu_limit(run_agent: AgentRunner) -> None:
    """Spinning forever ends at the CPU limit; the batch says so."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    while True:
        pass
"""
    outcome = run_agent(code, resources={"cpuSeconds": 1, "wallSeconds": 20})
    assert not outcome.items[0].ok
    assert outcome.error == "CPU time limit of 1 s exceeded"
    assert outcome.items[0].error == outcome.error


def test_sleeping_forever_hits_the_wall_clock(run_agent: AgentRunner) -> None:
    """A run that waits forever is killed at its wall-clock limit."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    time.sleep(3600)
"""
    started = time.monotonic()
    outcome = run_agent(code, resources={"wallSeconds": 2})
    assert time.monotonic() - started < 10
    assert outcome.error == "wall-clock timeout: stopped after 2 s"
    assert outcome.items[0].error == outcome.error


def test_another_runs_inputs_are_unreachable(
    run_agent: AgentRunner, bwrap_config: SandboxConfig
) -> None:
    """While one organization's run is going, another run cannot open its staged input."""
    slow = """
def handle(ctx: Context, item: Item) -> Result:
    time.sleep(4)
    return Result(data={})
"""
    results = {}
    thread = threading.Thread(
        target=lambda: results.setdefault("a", run_agent(slow, content=b"org A secret\n")),
    )
    thread.start()
    runs = bwrap_config.root / "runs"
    deadline = time.monotonic() + 10
    staged: list[Path] = []
    while not staged and time.monotonic() < deadline:
        staged = list(runs.glob("*/inputs/0/input.txt"))
        time.sleep(0.05)
    assert staged, "the first run never staged its input"
    code = probes("""
PROBES = {
    "open": lambda c, i: open(i.metadata["victim"]).read(),
    "runs": lambda c, i: os.listdir(i.metadata["runs"]),
}
""")
    outcome = run_agent(code, metadata=[{"victim": str(staged[0]), "runs": str(runs)}])
    thread.join()
    data = _only_ok(outcome)
    assert data["open"][0] == "error"
    assert data["runs"][0] == "error"
    assert results["a"].items[0].ok


def test_host_environment_is_invisible(
    run_agent: AgentRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the host in the environment, /proc/<ppid>/environ or /proc/1/environ."""
    monkeypatch.setenv("PAULYOPS_SANDBOX_TEST_SECRET", "s3cret-value")
    code = probes("""
PROBES = {
    "env": lambda c, i: dict(os.environ),
    "ppid_environ": lambda c, i: open(f"/proc/{os.getppid()}/environ", "rb").read(),
    "init_environ": lambda c, i: open("/proc/1/environ", "rb").read(),
    "host_pid": lambda c, i: open(f"/proc/{i.metadata['host_pid']}/environ", "rb").read(),
}
""")
    outcome = run_agent(code, metadata=[{"host_pid": os.getpid()}])
    data = _only_ok(outcome)
    assert "s3cret-value" not in json.dumps(data)
    assert data["host_pid"][0] == "error"


def test_instance_files_are_unreachable(run_agent: AgentRunner, tmp_path: Path) -> None:
    """An instance's .env.local and SQLite file cannot be opened from inside."""
    env_local = tmp_path / ".env.local"
    env_local.write_text("ENCRYPTION_KEY=secret\n")
    db_file = tmp_path / "data" / "paulyops.db"
    db_file.parent.mkdir()
    db_file.write_bytes(b"SQLite format 3\x00")
    repo_env = Path("/work/main/.env.local")
    code = probes(
        """
PROBES = {name: (lambda path: lambda c, i: open(path, "rb").read())(path)
          for name, path in (("env", "ENV"), ("db", "DB"), ("repo", "REPO"))}
""".replace('"ENV"', repr(str(env_local)))
        .replace('"DB"', repr(str(db_file)))
        .replace('"REPO"', repr(str(repo_env)))
    )
    data = _only_ok(run_agent(code))
    assert data["env"][0] == "error"
    assert data["db"][0] == "error"
    assert data["repo"][0] == "error"


def test_killing_the_parent_harms_nobody(run_agent: AgentRunner) -> None:
    """Signals to the parent, to pid 1 and to the host's process fail or stay inside."""
    code = probes("""
import signal
PROBES = {
    "ppid": lambda c, i: os.kill(os.getppid(), signal.SIGKILL),
    "init": lambda c, i: os.kill(1, signal.SIGKILL),
    "host": lambda c, i: os.kill(i.metadata["host_pid"], signal.SIGKILL),
    "group": lambda c, i: os.killpg(os.getpgid(0), 0),
}
""")
    outcome = run_agent(code, metadata=[{"host_pid": os.getpid()}])
    data = _only_ok(outcome)  # the batch still answered
    assert data["host"][0] == "error"
    assert psutil.Process(os.getpid()).is_running()


@pytest.fixture
def loopback_server() -> tuple[int, threading.Event]:
    """A TCP server on the host's 127.0.0.1 that records any connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    hit = threading.Event()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            hit.set()
            conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], hit  # type: ignore[misc]
    stop.set()
    thread.join()


def test_network_grant_does_not_reach_host_loopback(
    run_agent: AgentRunner, loopback_server: tuple[int, threading.Event]
) -> None:
    """With `network`, the agent gets a slirp4netns interface but not the host's loopback."""
    port, hit = loopback_server
    code = probes("""
def connect(host):
    def go(c, i):
        socket.create_connection((host, i.metadata["port"]), timeout=2).close()
        return "connected"
    return go
PROBES = {
    "loopback": connect("127.0.0.1"),
    "gateway": connect("10.0.2.2"),
    "interfaces": lambda c, i: sorted(n for _, n in socket.if_nameindex()),
    "pg": lambda c, i: socket.create_connection(("10.0.2.2", 5432), timeout=2).close(),
}
""")
    outcome = run_agent(code, capabilities=["network"], metadata=[{"port": port}])
    data = _only_ok(outcome)
    assert data["loopback"][0] == "error"
    assert data["gateway"][0] == "error"
    assert data["pg"][0] == "error"
    assert "tap0" in data["interfaces"][1]
    assert not hit.is_set()


def test_no_network_without_the_grant(run_agent: AgentRunner) -> None:
    """Without `network` the agent has only a loopback interface."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    return Result(data={"ifs": sorted(n for _, n in socket.if_nameindex())})
"""
    assert _only_ok(run_agent(code)) == {"ifs": ["lo"]}


def test_malformed_output_is_a_protocol_violation(run_agent: AgentRunner) -> None:
    """An agent that writes garbage on the protocol stream fails the batch with the reason."""
    code = """
import fcntl, stat
def handle(ctx: Context, item: Item) -> Result:
    for fd in range(3, 64):
        try:
            mode = os.fstat(fd).st_mode
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        if stat.S_ISFIFO(mode) and flags & os.O_WRONLY:
            os.write(fd, b"this is not json\\n")
    return Result(data={})
"""
    outcome = run_agent(code, items=2)
    assert outcome.error is not None
    assert outcome.error.startswith("protocol violation: stdout line is not JSON")
    assert all(not i.ok and i.error == outcome.error for i in outcome.items)


def test_oversize_result_fails_its_item_only(run_agent: AgentRunner) -> None:
    """A result over 1 MiB fails that item; the next item of the batch still succeeds."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    size = 2_000_000 if item.metadata["n"] == 0 else 10
    return Result(data={"blob": "x" * size})
"""
    outcome = run_agent(code, items=2, metadata=[{"n": 0}, {"n": 1}])
    assert outcome.error is None
    assert not outcome.items[0].ok
    assert "larger than" in (outcome.items[0].error or "")
    assert outcome.items[1].ok


def test_output_files_come_back_with_outputs_write(run_agent: AgentRunner) -> None:
    """Files written under outputs/ return with the grant, and fail the item without it."""
    code = """
from paulyops.sdk import OutputFile

def handle(ctx: Context, item: Item) -> Result:
    (ctx.outputs / "report.txt").write_text("made by the agent")
    return Result(data={}, files=[OutputFile("report.txt", "text/plain")])
"""
    granted = run_agent(code, capabilities=["outputs:write"])
    assert granted.items[0].ok
    assert granted.items[0].files == {"report.txt": b"made by the agent"}
    refused = run_agent(code)
    assert refused.items[0].error == "files: returned without the outputs:write capability"


def test_run_folders_are_removed(run_agent: AgentRunner, bwrap_config: SandboxConfig) -> None:
    """Nothing of a run stays under the sandbox root."""
    code = """
def handle(ctx: Context, item: Item) -> Result:
    (ctx.scratch / "sub").mkdir()
    (ctx.scratch / "sub" / "f").write_text("x")
    os.chmod(ctx.scratch / "sub", 0o500)
    return Result(data={})
"""
    before = (
        set((bwrap_config.root / "runs").iterdir())
        if (bwrap_config.root / "runs").exists()
        else set()
    )
    assert run_agent(code).items[0].ok
    assert set((bwrap_config.root / "runs").iterdir()) <= before


def test_entrypoint_that_cannot_load_fails_every_item(run_agent: AgentRunner) -> None:
    """An agent module that raises on import fails each item with the reason."""
    code = """
raise ImportError("missing library")
def handle(ctx, item):
    return Result()
"""
    outcome = run_agent(code, items=2)
    assert outcome.error is None
    for item in outcome.items:
        assert not item.ok
        assert "cannot load entrypoint 'agent:handle'" in (item.error or "")
