"""The seccomp filter: built with libseccomp through ctypes, exported as classic BPF.

The set follows Flatpak's (new user namespaces, mount calls and the new mount API, ptrace,
keyctl, perf_event_open, the TIOCSTI/TIOCLINUX ioctls) plus bpf, userfaultfd, io_uring,
kexec and module loading: calls an agent never needs and that have a long record of
kernel escapes. Each fails with EPERM; ``clone3`` fails with ENOSYS instead, because its
flags live in a struct seccomp cannot read, and ENOSYS makes glibc fall back to ``clone``,
whose flags the filter does check.

The fallback sandbox (no bubblewrap) adds ``socket(AF_INET|AF_INET6, ...)`` unless the run
was granted ``network``. The BPF program is built once per process and variant; each run
gets its own copy in a memfd, passed to bubblewrap with ``--add-seccomp-fd`` (or loaded by
the agent-side bootstrap itself in the fallback).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import socket

# Flags and numbers from <linux/sched.h>, <asm-generic/ioctls.h> and <seccomp.h>.
CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7

BLOCKED_CALLS = (
    # mount calls and the new mount API
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # tracing and other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    # the kernel keyring
    "keyctl",
    "add_key",
    "request_key",
    # performance counters, eBPF, userfaultfd, io_uring
    "perf_event_open",
    "bpf",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # kexec and kernel modules
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
)
"""Calls refused outright (EPERM)."""

FLAG_CHECKED_CALLS = ("clone", "unshare")
"""Calls refused with EPERM when they ask for a new user namespace."""


class SeccompUnavailableError(RuntimeError):
    """libseccomp is missing or refused to build the filter."""


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


@functools.cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as err:
        raise SeccompUnavailableError(f"libseccomp not found ({name}): {err}") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    )
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.seccomp_version.restype = ctypes.c_void_p
    return lib


def libseccomp_version() -> str | None:
    """Return libseccomp's version (``2.5.4``), or None when it cannot be loaded."""
    try:
        lib = _lib()
    except SeccompUnavailableError:
        return None

    class _Version(ctypes.Structure):
        _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))

    ptr = lib.seccomp_version()
    if not ptr:
        return None
    ver = _Version.from_address(ptr)
    return f"{ver.major}.{ver.minor}.{ver.micro}"


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0x0000FFFF)  # SCMP_ACT_ERRNO(code)


def _add(ctx: int, action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
    lib = _lib()
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return  # not a call on this architecture (e.g. a newer one than libseccomp knows)
    array = (_ArgCmp * max(1, len(cmps)))(*(_ArgCmp(*c) for c in cmps))
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
    if rc < 0:
        raise SeccompUnavailableError(f"seccomp_rule_add({name}) failed: {os.strerror(-rc)}")


@functools.cache
def build_filter(*, deny_inet: bool) -> bytes:
    """Return the classic BPF program of the agent filter.

    Args:
        deny_inet: also refuse IPv4/IPv6 sockets (the fallback without a network namespace).

    Raises:
        SeccompUnavailableError: libseccomp is missing or failed.
    """
    lib = _lib()
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailableError("seccomp_init failed")
    eperm = _errno_action(errno.EPERM)
    try:
        for name in BLOCKED_CALLS:
            _add(ctx, eperm, name)
        # clone(flags, ...) and unshare(flags): arg 0 holds the flags on x86_64 and arm64.
        for name in FLAG_CHECKED_CALLS:
            _add(ctx, eperm, name, (0, _SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
        _add(ctx, _errno_action(errno.ENOSYS), "clone3")
        for request in (TIOCSTI, TIOCLINUX):
            _add(ctx, eperm, "ioctl", (1, _SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, request))
        if deny_inet:
            for family in (socket.AF_INET, socket.AF_INET6):
                _add(ctx, _errno_action(errno.EACCES), "socket", (0, _SCMP_CMP_EQ, family, 0))
        read_fd, write_fd = os.pipe()
        try:
            rc = lib.seccomp_export_bpf(ctx, write_fd)
            os.close(write_fd)
            write_fd = -1
            if rc < 0:
                raise SeccompUnavailableError(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
            chunks = []
            while chunk := os.read(read_fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
    finally:
        lib.seccomp_release(ctx)
    return b"".join(chunks)


def filter_fd(*, deny_inet: bool) -> int:
    """Return a fresh, inheritable memfd holding the filter, positioned at its start.

    The caller passes it to the child and closes it afterwards.
    """
    program = build_filter(deny_inet=deny_inet)
    fd = os.memfd_create("paulyops-seccomp", 0)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = [
    "BLOCKED_CALLS",
    "FLAG_CHECKED_CALLS",
    "SeccompUnavailableError",
    "build_filter",
    "filter_fd",
    "libseccomp_version",
]
