"""The validator's service functions: dependency resolution, unpacking, staging."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from paulyops.core.security.signatures import generate_key
from paulyops.services.marketplace.build import assemble, sign_package
from paulyops.services.marketplace.errors import ArchiveError, PackageError
from paulyops.services.marketplace.manifest import parse_manifest
from paulyops.services.marketplace.validate import (
    AvailableAgent,
    Runtime,
    resolve_dependencies,
    stage_package,
    unpack,
    validate_package,
)
from tests.services.marketplace.packages import agent_files, manifest_text, signed_package, trust

KEY = generate_key()


def test_dependencies_resolve_to_the_highest_version_in_range() -> None:
    """Among available versions the highest in range wins, transitively."""
    manifest = parse_manifest(manifest_text(agents={"acme.base": ">=1,<2"}))
    available = [
        AvailableAgent("acme.base", "1.2.0", {"acme.core": ">=3"}),
        AvailableAgent("acme.base", "1.9.1", {"acme.core": ">=3"}),
        AvailableAgent("acme.base", "2.0.0"),
        AvailableAgent("acme.core", "3.1.0"),
    ]
    assert resolve_dependencies(manifest, available) == ["acme.base==1.9.1", "acme.core==3.1.0"]


def test_conflicting_requirements_are_rejected() -> None:
    """Two dependents needing disjoint versions of one agent fail with both named."""
    manifest = parse_manifest(manifest_text(agents={"acme.a": ">=1", "acme.core": "<2"}))
    available = [
        AvailableAgent("acme.a", "1.0.0", {"acme.core": ">=2"}),
        AvailableAgent("acme.core", "2.5.0"),
        AvailableAgent("acme.core", "1.5.0"),
    ]
    with pytest.raises(PackageError, match=r"acme\.core"):
        resolve_dependencies(manifest, available)


def test_a_missing_platform_library_names_it() -> None:
    """A library the platform lacks fails the dependencies check with its name and range."""
    text = manifest_text() + '\n[dependencies.libraries]\n"pypdf" = ">=4"\n'
    files = {**agent_files(), "manifest.toml": text.encode()}
    report = validate_package(
        io.BytesIO(assemble(files, KEY)),
        trusted=trust(KEY),
        runtime=Runtime(library_version=lambda name: None),
    )
    failed = report.failures()
    assert [c.name for c in failed] == ["dependencies"]
    assert "needs pypdf>=4 from the platform" in failed[0].message


def test_unpack_needs_a_fresh_folder_and_makes_it_private(tmp_path: Path) -> None:
    """unpack refuses an existing folder and creates its own 0700 with 0600 files."""
    package = tmp_path / "p.pauly"
    package.write_bytes(signed_package(KEY))
    (tmp_path / "taken").mkdir()
    with pytest.raises(ArchiveError, match="exists already"):
        unpack(package, tmp_path / "taken")
    dest = unpack(package, tmp_path / "fresh")
    assert dest.stat().st_mode & 0o777 == 0o700
    assert (dest / "lib" / "words.py").stat().st_mode & 0o777 == 0o600


def test_unpack_of_a_package_swapped_after_validation_leaves_nothing(tmp_path: Path) -> None:
    """A package replaced between validation and unpacking is refused and its folder removed."""
    package = tmp_path / "p.pauly"
    package.write_bytes(signed_package(KEY))
    report = validate_package(package, trusted=trust(KEY))
    package.write_bytes(signed_package(KEY, version="2.0.0"))
    with pytest.raises(ArchiveError, match="differs from the package that was validated"):
        unpack(package, tmp_path / "out", expected_checksums_sha256=report.checksums_sha256)
    assert not (tmp_path / "out").exists()


def test_stage_package_writes_only_a_valid_package(tmp_path: Path) -> None:
    """Staging a valid package writes its files; the report says who signed it."""
    package = tmp_path / "p.pauly"
    package.write_bytes(signed_package(KEY))
    report = stage_package(package, tmp_path / "out", trusted=trust(KEY))
    assert report.signed_by
    assert sorted(os.listdir(tmp_path / "out")) == [
        "CHECKSUMS",
        "SIGNATURE",
        "agent.py",
        "lib",
        "manifest.toml",
    ]


def test_bundled_packages_need_no_signature_but_are_said_to_be_bundled(tmp_path: Path) -> None:
    """A bundled `paulyops.*` package validates unsigned, and the report says why."""
    package = tmp_path / "p.pauly"
    package.write_bytes(assemble(agent_files(agent_id="paulyops.hello")))
    report = validate_package(package, bundled=True)
    assert report.is_ok, report.checks
    assert "bundled" in report.checks[3].message
    assert not validate_package(package).is_ok


def test_signing_again_replaces_the_signature(tmp_path: Path) -> None:
    """Re-signing with another key leaves one SIGNATURE, trusted only under the new key."""
    package = tmp_path / "p.pauly"
    package.write_bytes(signed_package(KEY))
    other = generate_key()
    package.write_bytes(sign_package(package, other))
    assert validate_package(package, trusted=trust(other)).is_ok
    assert not validate_package(package, trusted=trust(KEY)).is_ok


def test_unpack_names_a_file_that_no_longer_matches(tmp_path: Path) -> None:
    """unpack re-checks checksums: a mismatch names the file once and removes the folder."""
    files = agent_files()
    from paulyops.services.marketplace.archive import write_canonical
    from paulyops.services.marketplace.integrity import checksums_text

    checksums = checksums_text(files)
    files["agent.py"] = b"changed = True\n"
    package = tmp_path / "p.pauly"
    package.write_bytes(write_canonical({**files, "CHECKSUMS": checksums}))
    with pytest.raises(ArchiveError) as caught:
        unpack(package, tmp_path / "out")
    assert caught.value.message == "agent.py: sha256 does not match CHECKSUMS (changed after build)"
    assert not (tmp_path / "out").exists()
