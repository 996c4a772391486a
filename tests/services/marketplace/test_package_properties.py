"""Properties of built packages: build -> verify round-trips; any changed byte is caught."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paulyops.core.security.signatures import generate_key
from paulyops.services.marketplace.build import assemble, build_package
from paulyops.services.marketplace.validate import unpack, validate_package
from tests.services.marketplace.packages import agent_files, signed_package, trust

KEY = generate_key()
PART = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
NAMES = st.lists(PART, min_size=1, max_size=3).map(lambda parts: "/".join(["data", *parts]))
FILES = st.dictionaries(NAMES, st.binary(max_size=2048), max_size=8).filter(
    # a file cannot also be a folder of another file
    lambda files: not any(a != b and b.startswith(a + "/") for a in files for b in files)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=FILES)
def test_build_then_verify_round_trips(extra: dict[str, bytes], tmp_path_factory) -> None:
    """Any set of safe files builds to a package that verifies and unpacks to the same files."""
    files = {**agent_files(), **extra}
    data = assemble(files, KEY)
    assert assemble(files, KEY) == data  # deterministic: same input, same bytes
    report = validate_package(io.BytesIO(data), trusted=trust(KEY))
    assert report.is_ok, report.checks
    root = tmp_path_factory.mktemp("unpack")
    package = root / "p.pauly"
    package.write_bytes(data)
    dest = unpack(package, root / "out", expected_checksums_sha256=report.checksums_sha256)
    for name, content in files.items():
        assert (dest / name).read_bytes() == content
    assert (dest.stat().st_mode & 0o777) == 0o700


SIGNED = signed_package(KEY)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(SIGNED) - 1), delta=st.integers(1, 255))
def test_any_single_changed_byte_is_detected(position: int, delta: int) -> None:
    """Changing any one byte of a signed package, to any other value, fails validation."""
    tampered = bytearray(SIGNED)
    tampered[position] = (tampered[position] + delta) % 256
    report = validate_package(io.BytesIO(bytes(tampered)), trusted=trust(KEY))
    assert not report.is_ok


def test_every_byte_position_is_covered() -> None:
    """Exhaustively: flipping the low bit of each byte in turn is detected every time."""
    for position in range(len(SIGNED)):
        tampered = bytearray(SIGNED)
        tampered[position] ^= 0x01
        report = validate_package(io.BytesIO(bytes(tampered)), trusted=trust(KEY))
        assert not report.is_ok, position


def test_build_of_a_folder_is_byte_identical_across_runs(tmp_path: Path) -> None:
    """Timestamps and modes of the source files do not reach the archive."""
    for name, content in agent_files().items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    first = build_package(tmp_path / "src")
    for path in (tmp_path / "src").rglob("*.py"):
        path.chmod(0o755)
        path.touch()
    assert build_package(tmp_path / "src") == first


def test_a_header_claiming_an_unknown_zip_version_is_rejected() -> None:
    """zipfile raises NotImplementedError for a "version needed" it does not know: one
    changed byte can claim one, and it must be a rejection, never a crash (found by the
    property test above)."""
    tampered = bytearray(SIGNED)
    central = tampered.find(b"PK\x01\x02")
    assert central >= 0
    tampered[central + 6] = 64  # version needed to extract: 6.4
    report = validate_package(io.BytesIO(bytes(tampered)), trusted=trust(KEY))
    assert not report.is_ok


def test_every_byte_set_to_extreme_values_is_detected() -> None:
    """Exhaustively and deterministically: each byte set to 0x00, 0x40 and 0xFF is caught."""
    for position in range(len(SIGNED)):
        for value in (0x00, 0x40, 0xFF):
            if SIGNED[position] == value:
                continue
            tampered = bytearray(SIGNED)
            tampered[position] = value
            report = validate_package(io.BytesIO(bytes(tampered)), trusted=trust(KEY))
            assert not report.is_ok, (position, value)
