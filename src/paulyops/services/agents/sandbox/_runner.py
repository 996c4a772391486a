"""One sandbox start: stage, launch, speak protocol v1, collect, clean up."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paulyops.core.errors import SandboxError
from paulyops.core.logging import correlation_scope, get_logger
from paulyops.services.agents.protocol import (
    MAX_LINE_BYTES,
    MAX_STDOUT_BYTES,
    BatchRequest,
    ItemLine,
    ProtocolViolationError,
    RequestItem,
    parse_line,
    result_dict,
)
from paulyops.services.agents.runtime import AgentLogLine, ItemOutcome, RunOutcome, RunRequest
from paulyops.services.agents.sandbox import _command as cmdline
from paulyops.services.agents.sandbox import _staging as staging
from paulyops.services.agents.sandbox._config import Limits, SandboxConfig, resolve_limits
from paulyops.services.agents.sandbox._probe import SandboxStatus
from paulyops.services.agents.sandbox._seccomp import filter_fd
from paulyops.services.agents.sandbox._slots import reserve_slot

log = get_logger("paulyops.agents.sandbox")

MAX_LOG_LINES = 500
MAX_LOG_CHARS = 4000
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
"""Files read back per item; more fails the item."""
NETWORK_SETUP_S = 10.0
BLOCK_WAIT_S = 5.0
NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1), <linux/nsfs.h>
_READ_SYSCALL = {"x86_64": 0, "aarch64": 63}
EXIT_GRACE_S = 0.5
"""How long pipes may stay open after the agent exited (a child it left behind)."""
_LEVELS = {"debug", "info", "warning", "error", "critical"}


@dataclass
class _Exchange:
    """What came back from the agent, line by line."""

    request: RunRequest
    lines: dict[int, ItemLine] = field(default_factory=dict)
    oversize: dict[int, str] = field(default_factory=dict)
    violation: str | None = None
    log_lines: int = 0
    dropped_logs: int = 0
    logs: list[AgentLogLine] = field(default_factory=list)


def _refused(request: RunRequest, reason: str) -> RunOutcome:
    return RunOutcome(
        items=[ItemOutcome(job_id=i.job_id, ok=False, error=reason) for i in request.items],
        mode="refused",
        error=reason,
    )


def run(request: RunRequest, config: SandboxConfig, status: SandboxStatus) -> RunOutcome:
    """Run one batch under ``status``'s mode (see ``sandbox.run_batch``)."""
    if status.mode == "refused":
        return _refused(request, f"sandbox refused the run: {status.reason}")
    if status.mode == "fallback" and not request.trusted:
        return _refused(
            request,
            "sandbox refused the run: without bubblewrap only bundled and trusted agents "
            f"run ({status.reason})",
        )
    wants_network = "network" in request.capabilities
    if wants_network and not status.network:
        return _refused(
            request,
            "sandbox refused the run: `network` is granted but this host cannot give an "
            "isolated network (needs bubblewrap and slirp4netns)",
        )
    if not request.items:
        return RunOutcome(items=[], mode=status.mode)
    if status.mode == "insecure":
        log.warning(
            "sandbox_insecure_run",
            agent_id=request.agent_id,
            organization_id=request.organization_id,
            reason=status.reason,
        )
    limits = resolve_limits(request.resources, config.maximum)
    started = time.perf_counter()
    with correlation_scope(request.correlation_id), _slot(config, status) as uid:
        staging.make_root(config.root, is_root=status.facts.is_root)
        if uid is not None:
            staging.check_traversable(config.root / "runs", uid)
        run_dir = staging.new_run_dir(config.root, uid, len(request.items), network=wants_network)
        try:
            outcome = _run_in(run_dir, request, config, status, limits, uid)
        finally:
            staging.remove_tree(run_dir)
    return RunOutcome(
        items=outcome.items,
        mode=status.mode,
        error=outcome.error,
        exit_code=outcome.exit_code,
        duration_ms=(time.perf_counter() - started) * 1000,
        logs=outcome.logs,
        dropped_logs=outcome.dropped_logs,
    )


@contextlib.contextmanager
def _slot(config: SandboxConfig, status: SandboxStatus) -> Iterator[int | None]:
    if "slot-uid" not in status.layers:
        yield None
        return
    staging.make_root(config.root, is_root=True)
    with reserve_slot(config.root, config.uid_range, wait_s=config.slot_wait_s) as uid:
        yield uid


def _run_in(
    run_dir: Path,
    request: RunRequest,
    config: SandboxConfig,
    status: SandboxStatus,
    limits: Limits,
    uid: int | None,
) -> RunOutcome:
    bwrap = status.mode == "bubblewrap"
    lib = staging.runtime_dir(config.root)
    package = staging.stage_package(run_dir, request.package_dir, uid)
    inside = {
        "lib": cmdline.LIB if bwrap else lib,
        "package": cmdline.PACKAGE if bwrap else package,
        "inputs": cmdline.INPUTS if bwrap else run_dir / "inputs",
        "scratch": cmdline.SCRATCH if bwrap else run_dir / "scratch",
        "outputs": cmdline.OUTPUTS if bwrap else run_dir / "outputs",
    }
    staged_errors: dict[int, str] = {}
    items: list[RequestItem] = []
    indexes: list[int] = []
    for index, item in enumerate(request.items):
        try:
            host_path = staging.stage_input(run_dir, index, item.source, item.name)
        except OSError as err:
            staged_errors[index] = f"input could not be staged: {err.strerror or err}"
            continue
        rel = host_path.relative_to(run_dir / "inputs")
        items.append(
            RequestItem(
                job_id=item.job_id,
                attempt=item.attempt,
                path=str(Path(inside["inputs"]) / rel),
                outputs_dir=str(Path(inside["outputs"]) / str(index)),
                name=item.name,
                media_type=item.media_type,
                size=item.size,
                document_class=item.document_class,
                metadata=dict(item.metadata),
            )
        )
        indexes.append(index)
    confine: dict[str, Any] | None = None
    seccomp_fd: int | None = None
    fds: list[int] = []
    if status.facts.seccomp_error is None:
        seccomp_fd = filter_fd(deny_inet=not bwrap and "network" not in request.capabilities)
        fds.append(seccomp_fd)
    if not bwrap:
        confine = {"seccompFd": seccomp_fd}
        if status.facts.landlock_abi:
            read = ["/usr", *cmdline.SYSTEM_LINKS, *cmdline.ETC_FILES, "/dev/null", "/dev/urandom"]
            read += [str(lib), str(package), str(run_dir / "inputs"), str(config.python)]
            write = [
                str(run_dir / "scratch"),
                *(str(run_dir / "outputs" / str(i)) for i in indexes),
            ]
            confine["landlock"] = {"read": read, "write": write}
    wire = BatchRequest(
        agent_id=request.agent_id,
        version=request.version,
        entrypoint=request.entrypoint,
        lib_dir=str(inside["lib"]),
        package_dir=str(inside["package"]),
        scratch_dir=str(inside["scratch"]),
        settings=dict(request.settings),
        context=[dict(c) for c in request.context],
        items=items,
        limits=limits.rlimits(),
        confine=confine,
    )
    env = cmdline.agent_env(Path(inside["scratch"]))
    prefix: list[str] = []
    if status.facts.prlimit:
        prefix += cmdline.rlimit_prefix(status.facts.prlimit, limits)
    if uid is not None and status.facts.setpriv:
        prefix += cmdline.drop_privileges(status.facts.setpriv, uid)
    # -I: no PYTHON* variables, no user site; -S: no site-packages either, so an agent sees
    # the standard library, paulyops.sdk and its own package, nothing installed beside them.
    bootstrap = str(Path(inside["lib"]) / staging.BOOTSTRAP_NAME)
    agent_cmd = [str(config.python), "-I", "-S", bootstrap]
    network = bwrap and "network" in request.capabilities
    info_r = info_w = block_r = block_w = -1
    if network:
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        fds += [info_w, block_r]
    if bwrap and status.facts.bwrap:
        args = cmdline.bwrap_args(
            python=config.python,
            lib=lib,
            package=package,
            run_dir=run_dir,
            env=env,
            seccomp_fd=seccomp_fd,
            network=network,
            info_fd=info_w if network else None,
            block_fd=block_r if network else None,
        )
        command = [*prefix, status.facts.bwrap, *args, "--", *agent_cmd]
        popen_env = {"PATH": "/usr/bin:/bin"}  # what bwrap itself sees: nothing secret either
        cwd = "/"
    else:
        command = [*prefix, *agent_cmd]
        popen_env = env
        cwd = str(run_dir / "scratch")
    exchange = _Exchange(request)
    slirp: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(  # noqa: S603  # argv built here, no shell
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=popen_env,
            cwd=cwd,
            pass_fds=fds,
            start_new_session=True,
        )
    except OSError as err:
        for fd in [*fds, info_r, block_w]:
            if fd >= 0:
                os.close(fd)
        raise SandboxError(f"sandbox: the agent could not be started: {err}") from err
    for fd in fds:
        os.close(fd)
    deadline = time.monotonic() + limits.wall_seconds
    killed_for: str | None = None
    try:
        if network:
            slirp = _start_network(status, proc.pid, info_r, block_w, block_r, uid)
        writer = threading.Thread(
            target=_feed, args=(proc, wire.encode()), name="sandbox-stdin", daemon=True
        )
        writer.start()
        killed_for = _pump(proc, exchange, items, deadline, limits)
        writer.join(timeout=1)
    except SandboxError as err:
        killed_for = err.message
    finally:
        for fd in (info_r, block_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        _kill(proc, uid, status)
        if slirp is not None:
            slirp.kill()
            slirp.communicate()  # reaps it and closes its stderr pipe
    return _collect(
        request, exchange, items, indexes, staged_errors, proc, killed_for, run_dir, limits
    )


def _feed(proc: subprocess.Popen[bytes], payload: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write(payload)
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()


def _wait_until_blocked(child: int, block_fd: int) -> None:
    """Wait until bubblewrap's child sits in read(block fd): its own set-up (the loopback
    address of the new network namespace) is then done, and slirp4netns configuring the
    same namespace at the same time cannot make it fail ("loopback: Failed RTM_NEWADDR")."""
    read_nr = _READ_SYSCALL.get(platform.machine())
    deadline = time.monotonic() + BLOCK_WAIT_S
    while read_nr is not None and time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{child}/syscall").read_text().split()
        except OSError:
            break  # not ours to inspect (without root): go on as before
        if len(fields) > 1 and fields[0] == str(read_nr) and int(fields[1], 16) == block_fd:
            return
        time.sleep(0.002)


def _start_network(
    status: SandboxStatus, pid: int, info_r: int, block_w: int, block_fd: int, uid: int | None
) -> subprocess.Popen[bytes]:
    """Attach slirp4netns (host loopback disabled) to the sandbox's network namespace."""
    info = b""
    deadline = time.monotonic() + NETWORK_SETUP_S
    while b"child-pid" not in info or not info.rstrip().endswith(b"}"):
        ready = selectors.DefaultSelector()
        ready.register(info_r, selectors.EVENT_READ)
        if not ready.select(max(0.0, deadline - time.monotonic())):
            raise SandboxError("sandbox: bubblewrap did not report its child for the network")
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        info += chunk
    child = int(json.loads(info)["child-pid"])
    _wait_until_blocked(child, block_fd)
    ready_r, ready_w = os.pipe()
    assert status.facts.slirp4netns is not None
    cmd = [
        status.facts.slirp4netns,
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        f"--ready-fd={ready_w}",
    ]
    # The namespace's owner, not /proc/<child>/ns/user: by now bubblewrap's child sits in
    # the nested user namespace of --disable-userns, which does not own the network one.
    net_fd = os.open(f"/proc/{child}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner_fd = fcntl.ioctl(net_fd, NS_GET_USERNS)
    finally:
        os.close(net_fd)
    cmd.append(f"--userns-path=/proc/self/fd/{owner_fd}")
    cmd += [str(child), "tap0"]
    slirp = subprocess.Popen(  # noqa: S603  # argv built here, no shell
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(ready_w, owner_fd),
        env={"PATH": "/usr/bin:/bin"},
    )
    os.close(ready_w)
    os.close(owner_fd)
    try:
        sel = selectors.DefaultSelector()
        sel.register(ready_r, selectors.EVENT_READ)
        if not sel.select(NETWORK_SETUP_S) or not os.read(ready_r, 1):
            slirp.kill()
            _, err = slirp.communicate(timeout=5)
            last = [" / ".join(err.decode("utf-8", "replace").strip().splitlines()[-4:])]
            raise SandboxError(f"sandbox: slirp4netns did not set up the network: {last[0][:200]}")
    finally:
        os.close(ready_r)
    os.write(block_w, b"1")
    return slirp


def _pump(
    proc: subprocess.Popen[bytes],
    exchange: _Exchange,
    items: list[RequestItem],
    deadline: float,
    limits: Limits,
) -> str | None:
    """Read stdout (protocol) and stderr (logs) until both close; return why we killed."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    out_buf = bytearray()
    err_buf = bytearray()
    total = 0
    skipping = False  # inside an oversize line: discard until its newline
    open_streams = 2
    exited_at: float | None = None
    while open_streams:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"wall-clock timeout: stopped after {limits.wall_seconds} s"
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > EXIT_GRACE_S:
            break  # the agent is gone; a leftover child holding its pipes is killed below
        for key, _ in sel.select(min(remaining, 0.25)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            if key.data == "err":
                err_buf += chunk
                *lines, rest = bytes(err_buf).split(b"\n")
                err_buf = bytearray(rest[: MAX_LOG_CHARS * 4])
                for raw in lines:
                    _log_line(exchange, raw)
                continue
            total += len(chunk)
            if total > MAX_STDOUT_BYTES:
                exchange.violation = (
                    f"protocol violation: more than {MAX_STDOUT_BYTES} bytes on stdout"
                )
                return exchange.violation
            out_buf += chunk
            while True:
                newline = out_buf.find(b"\n")
                if newline < 0:
                    if len(out_buf) > MAX_LINE_BYTES and not skipping:
                        skipping = True
                        _mark_oversize(exchange, items)
                    if skipping:
                        out_buf.clear()
                    break
                raw = bytes(out_buf[:newline])
                del out_buf[: newline + 1]
                if skipping:
                    skipping = False
                    continue
                if len(raw) > MAX_LINE_BYTES:
                    _mark_oversize(exchange, items)
                    continue
                if not raw.strip():
                    continue
                position = len(exchange.lines) + len(exchange.oversize)
                if position >= len(items):
                    exchange.violation = "protocol violation: more result lines than items"
                    return exchange.violation
                try:
                    exchange.lines[position] = parse_line(raw, expected_job=items[position].job_id)
                except ProtocolViolationError as err:
                    exchange.violation = err.message
                    return err.message
    if err_buf:
        _log_line(exchange, bytes(err_buf))
    return None


def _mark_oversize(exchange: _Exchange, items: list[RequestItem]) -> None:
    position = len(exchange.lines) + len(exchange.oversize)
    if position < len(items):
        exchange.oversize[position] = f"result larger than {MAX_LINE_BYTES} bytes"


def _log_line(exchange: _Exchange, raw: bytes) -> None:
    """Turn one stderr line into a structured log line tagged with job and organization."""
    if not raw.strip():
        return
    if exchange.log_lines >= MAX_LOG_LINES:
        exchange.dropped_logs += 1
        return
    exchange.log_lines += 1
    text = raw.decode("utf-8", "replace")
    job_id: str | None = None
    level, logger, message = "info", "stderr", text
    try:
        record = json.loads(text)
        if isinstance(record, dict) and "message" in record:
            job_id = record.get("jobId") if isinstance(record.get("jobId"), str) else None
            level = str(record.get("level", "info")).lower()
            logger = str(record.get("logger", "stderr"))[:100]
            message = str(record["message"])
    except ValueError:
        pass
    if level not in _LEVELS:
        level = "info"
    if level == "critical":
        level = "error"
    request = exchange.request
    for secret in request.secret_values:  # an agent may log the secrets it was given
        message = message.replace(secret, "[secret]")
    message = message[:MAX_LOG_CHARS]
    exchange.logs.append(AgentLogLine(job_id, datetime.now(UTC), level, logger, message))
    getattr(log, level)(
        "agent_log",
        agent_id=request.agent_id,
        installation_id=request.installation_id,
        organization_id=request.organization_id,
        job_id=job_id,
        agent_logger=logger,
        message=message,
    )


def _kill(proc: subprocess.Popen[bytes], uid: int | None, status: SandboxStatus) -> None:
    """End the run's whole process group (and, as root, anything left under its slot uid)."""
    was_running = proc.poll() is None
    if was_running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    sweep = status.mode == "fallback" or was_running or proc.returncode != 0
    if uid is not None and sweep and status.facts.setpriv:
        # Without a PID namespace an agent can leave its session; with one, a killed run
        # is swept too, in case. The slot uid is this run's alone.
        subprocess.run(  # noqa: S603  # argv built here, no shell
            [*cmdline_drop(status.facts.setpriv, uid), "/usr/bin/kill", "-KILL", "-1"],
            capture_output=True,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
            timeout=10,
        )


def cmdline_drop(setpriv: str, uid: int) -> list[str]:
    """The privilege drop used for clean-up (same as for the run)."""
    return cmdline.drop_privileges(setpriv, uid)


def _exit_reason(code: int | None, limits: Limits) -> str:
    if code is None:
        return "the agent did not exit"
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    if sig == signal.SIGXCPU:
        return f"CPU time limit of {limits.cpu_seconds} s exceeded"
    if sig == signal.SIGKILL:
        return "killed (out of memory or a resource limit)"
    if sig == signal.SIGXFSZ:
        return f"file size limit of {limits.file_size_mb} MiB exceeded"
    if sig:
        return f"killed by signal {signal.Signals(sig).name}"
    if code == 0:
        return "the agent exited before answering every item"
    return f"the agent exited with code {code} before answering"


def _collect(
    request: RunRequest,
    exchange: _Exchange,
    items: list[RequestItem],
    indexes: list[int],
    staged_errors: dict[int, str],
    proc: subprocess.Popen[bytes],
    killed_for: str | None,
    run_dir: Path,
    limits: Limits,
) -> RunOutcome:
    batch_error = killed_for or exchange.violation
    if batch_error is None and len(exchange.lines) + len(exchange.oversize) < len(items):
        batch_error = _exit_reason(proc.returncode, limits)
    if exchange.dropped_logs:
        log.warning(
            "agent_log_truncated",
            agent_id=request.agent_id,
            organization_id=request.organization_id,
            dropped_lines=exchange.dropped_logs,
        )
    by_index: dict[int, ItemOutcome] = {}
    for index, error in staged_errors.items():
        by_index[index] = ItemOutcome(job_id=request.items[index].job_id, ok=False, error=error)
    for position, index in enumerate(indexes):
        job_id = items[position].job_id
        line = exchange.lines.get(position)
        if position in exchange.oversize:
            by_index[index] = ItemOutcome(job_id, ok=False, error=exchange.oversize[position])
        elif line is None:
            by_index[index] = ItemOutcome(job_id, ok=False, error=batch_error or "no result")
        elif not line.ok or line.result is None:
            by_index[index] = ItemOutcome(
                job_id, ok=False, error=line.error, duration_ms=line.duration_ms
            )
        else:
            by_index[index] = _with_files(request, run_dir, index, line)
    return RunOutcome(
        items=[by_index[i] for i in range(len(request.items))],
        mode="refused",  # replaced by the caller
        error=batch_error,
        exit_code=proc.returncode,
        logs=tuple(exchange.logs),
        dropped_logs=exchange.dropped_logs,
    )


def _with_files(request: RunRequest, run_dir: Path, index: int, line: ItemLine) -> ItemOutcome:
    assert line.result is not None
    result = result_dict(line.result)
    files: dict[str, bytes] = {}
    if line.result.files:
        if "outputs:write" not in request.capabilities:
            return ItemOutcome(
                line.job_id,
                ok=False,
                error="files: returned without the outputs:write capability",
                duration_ms=line.duration_ms,
            )
        budget = MAX_OUTPUT_BYTES
        try:
            for part in line.result.files:
                data = staging.read_output(run_dir, index, part.path, cap=budget)
                budget -= len(data)
                files[part.path] = data
        except SandboxError as err:
            return ItemOutcome(
                line.job_id, ok=False, error=err.message, duration_ms=line.duration_ms
            )
    return ItemOutcome(
        line.job_id, ok=True, result=result, duration_ms=line.duration_ms, files=files
    )
