"""The agent side of protocol v1: runs inside the sandbox, standard library only.

The host starts ``python3 -I -S _paulyops_bootstrap.py`` with the request JSON on stdin.
This module:

1. keeps the real stdout for protocol lines and points fd 1 at stderr, so an agent's
   ``print`` becomes a log line instead of corrupting the protocol;
2. lowers the resource limits and, in the fallback sandbox, confines itself (Landlock,
   the seccomp program the host built) before any agent code is imported;
3. imports the manifest's entrypoint from the package folder, then calls ``handle(ctx,
   item)`` once per item and writes one JSON line per item to the protocol stream. An
   exception fails that item only; the batch continues.

stderr lines are JSON (``{"jobId", "level", "logger", "message"}``) so the host can tag
them with the job and the organization. Nothing here imports PaulyOps except
``paulyops.sdk``, which the sandbox binds read-only beside this file.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

PROTOCOL = 1
MAX_ERROR_CHARS = 2000
_LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}
# Landlock (linux/landlock.h); the syscall numbers are the same on every architecture.
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_PATH_BENEATH = 1
_LL_FILE_RIGHTS = 0b1 | 0b10 | 0b100  # execute, write_file, read_file
_LL_READ = 0b1 | 0b100 | 0b1000  # execute, read_file, read_dir
_ABI_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1}

_current_job: str | None = None


class _StderrLines:
    """A text stream that turns every line written to it into one JSON log line."""

    def __init__(self, raw: TextIO, level: str = "info") -> None:
        self.raw = raw
        self.level = level
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self.emit(line)
        return len(text)

    def emit(self, line: str, *, level: str | None = None, logger: str = "stderr") -> None:
        record = {
            "jobId": _current_job,
            "level": level or self.level,
            "logger": logger,
            "message": line,
        }
        self.raw.write(json.dumps(record) + "\n")
        self.raw.flush()

    def flush(self) -> None:
        if self.pending:
            line, self.pending = self.pending, ""
            self.emit(line)

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


class _JsonHandler(logging.Handler):
    def __init__(self, out: _StderrLines) -> None:
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.out.emit(message, level=record.levelname.lower(), logger=record.name)


def _set_limits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        which = _LIMITS[name]
        _soft, hard = resource.getrlimit(which)
        new = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # The CPU hard limit sits a second above the soft one: SIGXCPU, not SIGKILL, names
        # the cause.
        top = new + 1 if name == "cpu" and (hard == resource.RLIM_INFINITY or new < hard) else new
        resource.setrlimit(which, (new, top))


def _landlock(read: list[str], write: list[str]) -> int:
    """Allow reading ``read`` and writing ``write`` only; return the ABI used (0: none)."""
    import ctypes  # only the fallback confines itself: bubblewrap runs skip the import

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi <= 0:
        return 0
    handled = _ABI_RIGHTS.get(abi, _ABI_RIGHTS[3])
    attr = ctypes.c_uint64(handled)
    ruleset = libc.syscall(_LL_CREATE, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))

    def allow(path: str, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # not on this host: nothing to allow
        try:
            if not os.path.isdir(path):
                rights &= _LL_FILE_RIGHTS | (1 << 14)  # files take file rights only
            rule = PathBeneath(rights & handled, fd)
            if libc.syscall(_LL_ADD_RULE, ruleset, _LL_PATH_BENEATH, ctypes.byref(rule), 0):
                raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
        finally:
            os.close(fd)

    for path in read:
        allow(path, _LL_READ)
    for path in write:
        allow(path, handled)
    if libc.syscall(_LL_RESTRICT, ruleset, 0):
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    os.close(ruleset)
    return int(abi)


def _load_seccomp(fd: int) -> None:
    import ctypes

    program = b""
    while chunk := os.read(fd, 65536):
        program += chunk
    os.close(fd)

    class Fprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

    libc = ctypes.CDLL(None, use_errno=True)
    prog = Fprog(len(program) // 8, program)
    if libc.prctl(38, 1, 0, 0, 0):  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0):  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return text[:MAX_ERROR_CHARS]


def _write(out: TextIO, line: dict[str, Any]) -> None:
    out.write(json.dumps(line, allow_nan=False, separators=(",", ":")) + "\n")
    out.flush()


def main() -> int:
    """Run one batch; the exit code is 0 once every item has its line."""
    global _current_job
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.set_inheritable(proto.fileno(), False)
    os.dup2(2, 1)
    err_lines = _StderrLines(sys.__stderr__ or sys.stderr)
    sys.stdout = err_lines
    sys.stderr = _StderrLines(sys.__stderr__ or sys.stderr, level="error")
    request = json.loads(sys.stdin.buffer.read())
    _set_limits(request.get("limits", {}))
    confine = request.get("confine")
    if confine:
        if confine.get("seccompFd") is not None:
            _load_seccomp(int(confine["seccompFd"]))
        if confine.get("landlock"):
            _landlock(confine["landlock"]["read"], confine["landlock"]["write"])
    sys.path[:0] = [request["libDir"], request["packageDir"]]
    logging.basicConfig(level=logging.INFO, handlers=[_JsonHandler(err_lines)], force=True)

    from paulyops import sdk  # bound read-only beside this file

    module_name, _, func_name = request["entrypoint"].partition(":")
    handler: Any = None
    import_error: str | None = None
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
    except BaseException as err:  # an agent that cannot load fails every item, with the reason
        import_error = f"cannot load entrypoint {request['entrypoint']!r}: {_error_text(err)}"
        traceback.print_exc()
    results = tuple(
        sdk.PriorResult(
            agent_id=str(r.get("agentId", "")),
            kind=str(r.get("kind", "")),
            created_at=str(r.get("createdAt", "")),
            data=r.get("data") or {},
        )
        for r in request.get("context", ())
    )
    log = logging.getLogger(f"agent.{request['agentId']}")
    for item in request["items"]:
        _current_job = item["jobId"]
        started = time.perf_counter()
        line: dict[str, Any] = {"protocol": PROTOCOL, "jobId": item["jobId"]}
        if import_error is not None:
            line.update(ok=False, error=import_error)
        else:
            try:
                ctx = sdk.Context(
                    agent_id=request["agentId"],
                    settings=request.get("settings", {}),
                    scratch=Path(request["scratchDir"]),
                    outputs=Path(item["outputsDir"]),
                    results=results,
                    log=log,
                )
                payload = sdk.Item(
                    path=Path(item["path"]),
                    name=item["name"],
                    media_type=item["mediaType"],
                    size=item["size"],
                    document_class=item.get("documentClass"),
                    metadata=item.get("metadata", {}),
                )
                result = handler(ctx, payload)
                if not isinstance(result, sdk.Result):
                    raise TypeError(
                        f"handle returned {type(result).__name__}, expected paulyops.sdk.Result"
                    )
                wire = result.to_wire()
                json.dumps(wire, allow_nan=False)  # not JSON: this item fails, not the batch
                line.update(ok=True, result=wire)
            except BaseException as err:  # every failure is this item's only
                traceback.print_exc()
                line.update(ok=False, error=_error_text(err))
        line["durationMs"] = round((time.perf_counter() - started) * 1000, 3)
        _write(proto, line)
    _current_job = None
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
