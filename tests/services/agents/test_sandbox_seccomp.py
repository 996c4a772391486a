"""Each call the seccomp filter blocks fails inside the real sandbox (EPERM; clone3 ENOSYS).

One sandbox start tries every call (one item per call would cost a start each); each call
is its own test case over that batch's answers.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from paulyops.services.agents.sandbox import BLOCKED_CALLS, SandboxConfig
from paulyops.services.agents.sandbox._seccomp import _lib, build_filter

from .conftest import make_runner

# Slot uids of the tests' range are shared: checks that no process of that range is left
# behind hold only when no other sandbox test runs at the same time.
pytestmark = pytest.mark.xdist_group("sandbox-uids")

CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
SPECIAL = {
    "clone(CLONE_NEWUSER)": ("clone", [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0]),
    "unshare(CLONE_NEWUSER)": ("unshare", [CLONE_NEWUSER]),
    "ioctl(TIOCSTI)": ("ioctl", [0, 0x5412, 0]),
    "ioctl(TIOCLINUX)": ("ioctl", [0, 0x541C, 0]),
    "clone3": ("clone3", [0, 0]),
}
CASES = {**{name: (name, [0, 0, 0, 0, 0, 0]) for name in BLOCKED_CALLS}, **SPECIAL}

AGENT = """
def handle(ctx: Context, item: Item) -> Result:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    seen = {}
    for name, (nr, args) in item.metadata["calls"].items():
        ctypes.set_errno(0)
        rc = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
        if rc == 0 and name.startswith("clone"):
            os._exit(0)  # a child that should never have been: leave at once
        seen[name] = [rc, ctypes.get_errno()]
    return Result(data=seen)
"""


def _number(name: str) -> int:
    return int(_lib().seccomp_syscall_resolve_name(name.encode()))


@pytest.fixture(scope="module")
def answers(
    bwrap_config: SandboxConfig, build_agent: Callable[..., Path], sandbox_root: Path
) -> dict[str, list[int]]:
    """Every blocked call's (return value, errno) inside one sandbox start."""
    calls = {
        label: [_number(name), args] for label, (name, args) in CASES.items() if _number(name) >= 0
    }
    run = make_runner(bwrap_config, build_agent, sandbox_root)
    outcome = run(AGENT, metadata=[{"calls": calls}])
    assert outcome.error is None, outcome.error
    item = outcome.items[0]
    assert item.ok, item.error
    assert item.result
    data: dict[str, list[int]] = item.result["data"]
    return data


@pytest.mark.parametrize("label", sorted(CASES))
def test_blocked_call_fails_inside_the_sandbox(label: str, answers: dict[str, list[int]]) -> None:
    """The call returns -1 with EPERM (clone3: ENOSYS, so glibc falls back to clone)."""
    if _number(CASES[label][0]) < 0:
        pytest.skip(f"{CASES[label][0]} does not exist on this architecture")
    rc, err = answers[label]
    expected = errno.ENOSYS if label == "clone3" else errno.EPERM
    assert (rc, errno.errorcode.get(err)) == (-1, errno.errorcode[expected])


def test_filter_is_classic_bpf() -> None:
    """The exported program is a whole number of 8-byte sock_filter instructions."""
    for deny_inet in (False, True):
        program = build_filter(deny_inet=deny_inet)
        assert program
        assert len(program) % 8 == 0
    assert len(build_filter(deny_inet=True)) > len(build_filter(deny_inet=False))
