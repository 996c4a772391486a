"""Build and sign agent packages: the canonical archive (same input, same bytes).

``build_package`` collects an agent's source folder (leaving out caches, hidden files,
the top-level ``tests/`` folder and earlier builds), checks its manifest, writes
``CHECKSUMS`` and, given a key, ``SIGNATURE``. ``sign_package`` adds or replaces the
signature of a built package.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paulyops.services.marketplace.archive import Limits, path_problem, scan, write_canonical
from paulyops.services.marketplace.errors import ArchiveError, PackageSourceError
from paulyops.services.marketplace.integrity import (
    CHECKSUMS_NAME,
    INTEGRITY_FILES,
    SIGNATURE_NAME,
    checksums_text,
    parse_checksums,
    signature_text,
)
from paulyops.services.marketplace.manifest import MANIFEST_NAME, parse_manifest

EXCLUDED_NAMES: Final = frozenset({"__pycache__", "dist", "build", "node_modules"})
EXCLUDED_SUFFIXES: Final = (".pyc", ".pyo", ".pauly")
EXCLUDED_TOP: Final = frozenset({"tests", *INTEGRITY_FILES})
PACKAGE_SUFFIX: Final = ".pauly"


def _is_excluded(rel: tuple[str, ...]) -> bool:
    if rel[0] in EXCLUDED_TOP:
        return True
    return any(part.startswith(".") or part in EXCLUDED_NAMES for part in rel) or rel[-1].endswith(
        EXCLUDED_SUFFIXES
    )


def collect_sources(src_dir: Path) -> dict[str, bytes]:
    """Return the files of an agent's source folder that go into its package.

    Raises:
        PackageSourceError: the folder is missing, holds a symlink or special file, or a
            name the archive could not carry safely.
    """
    if not src_dir.is_dir():
        raise PackageSourceError(f"{src_dir}: not a folder")
    files: dict[str, bytes] = {}
    for root, dirs, names in os.walk(src_dir, followlinks=False):
        base = Path(root)
        rel_base = base.relative_to(src_dir).parts
        dirs[:] = sorted(d for d in dirs if not _is_excluded((*rel_base, d)))
        for entry in (*dirs, *names):
            path = base / entry
            if path.is_symlink():
                raise PackageSourceError(f"{path}: is a symbolic link; packages hold files only")
        for name in sorted(names):
            rel = (*rel_base, name)
            if _is_excluded(rel):
                continue
            path = base / name
            if not stat.S_ISREG(path.lstat().st_mode):
                raise PackageSourceError(f"{path}: is not a regular file")
            arcname = "/".join(rel)
            problem = path_problem(arcname) or (None if arcname.isascii() else "name is not ASCII")
            if problem:
                raise PackageSourceError(f"{arcname}: {problem}")
            files[arcname] = path.read_bytes()
    if MANIFEST_NAME not in files:
        raise PackageSourceError(f"{src_dir}: no {MANIFEST_NAME} (run `paulyops package init`)")
    return files


def assemble(files: Mapping[str, bytes], key: Ed25519PrivateKey | None = None) -> bytes:
    """Return the canonical package of ``files``, with CHECKSUMS and an optional SIGNATURE."""
    checksums = checksums_text(files)
    entries = {**files, CHECKSUMS_NAME: checksums}
    if key is not None:
        entries[SIGNATURE_NAME] = signature_text(key, checksums)
    return write_canonical(entries)


def build_package(src_dir: Path, *, key: Ed25519PrivateKey | None = None) -> bytes:
    """Return the package of an agent's source folder (signed when ``key`` is given).

    Raises:
        PackageSourceError: the folder cannot be packaged.
        ManifestError: the manifest is invalid (each field named).
    """
    files = collect_sources(src_dir)
    # Build checks the form, not the reserved prefix: that is the validator's call.
    parse_manifest(files[MANIFEST_NAME], bundled=True)
    return assemble(files, key)


def read_files(package: Path | BinaryIO, limits: Limits | None = None) -> dict[str, bytes]:
    """Return the entries of a package (without CHECKSUMS and SIGNATURE), checksums checked.

    Raises:
        ArchiveError: the package is unsafe, not canonical, or its CHECKSUMS do not match.
    """
    files: dict[str, bytearray] = {}

    def sink(name: str) -> Callable[[bytes], None]:
        files[name] = bytearray()
        return files[name].extend

    contents = scan(package, limits, sink)
    raw = contents.small.get(CHECKSUMS_NAME)
    if raw is None:
        raise ArchiveError(CHECKSUMS_NAME, "is missing; build the package with `package build`")
    try:
        digests = parse_checksums(raw)
    except ValueError as err:
        raise ArchiveError(CHECKSUMS_NAME, str(err)) from None
    payload = {n: bytes(d) for n, d in files.items() if n not in INTEGRITY_FILES}
    for name in sorted(set(payload) | set(digests)):
        entry = contents.entries.get(name)
        if name not in digests or entry is None or entry.sha256 != digests[name]:
            raise ArchiveError(name, "does not match CHECKSUMS; rebuild the package")
    return payload


def sign_package(package: Path, key: Ed25519PrivateKey, limits: Limits | None = None) -> bytes:
    """Return ``package`` signed with ``key`` (an existing signature is replaced)."""
    return assemble(read_files(package, limits), key)


__all__ = [
    "PACKAGE_SUFFIX",
    "assemble",
    "build_package",
    "collect_sources",
    "read_files",
    "sign_package",
]
