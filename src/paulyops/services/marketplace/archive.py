"""Read agent archives (``.pauly`` zips) safely, and write their canonical form.

The reader parses the central directory with :mod:`zipfile` but reads every entry's bytes
itself, so what counts is what is on disk, never a header's claim. The checks, in order
(the first that fails is the one message):

1. size of the archive, a readable zip, at most ``max_files`` entries;
2. each name: no absolute path, drive letter, backslash, ``..``, empty or ``.`` part,
   control character or directory entry; no duplicates, no two names equal after case
   folding or Unicode NFC normalization; ASCII only;
3. each entry: a regular file (no symlink, device, fifo), not encrypted, stored or deflate;
4. while streaming: unpacked bytes in all, per entry (against its declared size) and the
   compression ratio measured on the bytes actually produced, and the CRC;
5. canonical form: exactly the bytes :func:`write_canonical` would write for the same
   names and contents: sorted names, stored (uncompressed) entries, a fixed timestamp
   and mode, no extra fields, no comments, nothing before, between or after the entries.

Canonical entries are *stored*, not deflated: deflate leaves bits inflate ignores (the
final byte's padding, alternative encodings of the same data), so a deflated entry could
change without changing its content. Stored, every byte of an accepted archive is either
a fixed header field or hashed content. Nothing here writes to disk; ``unpack`` (in
:mod:`paulyops.services.marketplace.validate`) does, into a fresh private directory.
"""

from __future__ import annotations

import hashlib
import itertools
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from paulyops.services.marketplace.errors import ArchiveError

WHOLE: Final = "(archive)"
CHUNK: Final = 64 * 1024
DOS_DATE: Final = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest a zip can say
DOS_TIME: Final = 0
FILE_MODE: Final = 0o100644
VERSION: Final = 20  # 2.0: what zipfile writes for plain entries
MADE_BY: Final = (3 << 8) | VERSION  # 3 = Unix, so the mode in external_attr is meaningful
LOCAL_HEADER: Final = struct.Struct("<4sHHHHHIIIHH")
CENTRAL_HEADER: Final = struct.Struct("<4sHHHHHHIIIHHHHHII")
END_RECORD: Final = struct.Struct("<4sHHHHIIH")
ALLOWED_METHODS: Final = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
NAME_MAX: Final = 255
# Names the validator keeps in memory while streaming (each capped below).
SMALL_FILES: Final = ("manifest.toml", "CHECKSUMS", "SIGNATURE")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much an archive may hold; every limit is measured, never taken from headers."""

    max_files: int = 2000
    max_unpacked_bytes: int = 50 * 1024 * 1024
    max_ratio: int = 100
    max_manifest_bytes: int = 64 * 1024
    max_signature_bytes: int = 4 * 1024

    @property
    def max_archive_bytes(self) -> int:
        """The largest archive read at all: stored entries plus generous header room."""
        return self.max_unpacked_bytes + self.max_files * 2 * (46 + NAME_MAX) + 1024

    @property
    def max_checksums_bytes(self) -> int:
        """The largest CHECKSUMS: one line per file."""
        return self.max_files * (64 + 2 + NAME_MAX + 1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry's measured size and sha256."""

    name: str
    size: int
    sha256: str


@dataclass(slots=True)
class Contents:
    """What a scan found: each entry's digest and the few small files kept in memory."""

    entries: dict[str, Entry] = field(default_factory=dict)
    small: dict[str, bytes] = field(default_factory=dict)


# --- the canonical writer ------------------------------------------------------------------


def _local_header(name: bytes, crc: int, size: int) -> bytes:
    return (
        LOCAL_HEADER.pack(
            b"PK\x03\x04", VERSION, 0, 0, DOS_TIME, DOS_DATE, crc, size, size, len(name), 0
        )
        + name
    )


def _central_header(name: bytes, crc: int, size: int, offset: int) -> bytes:
    return (
        CENTRAL_HEADER.pack(
            b"PK\x01\x02",
            MADE_BY,
            VERSION,
            0,
            0,
            DOS_TIME,
            DOS_DATE,
            crc,
            size,
            size,
            len(name),
            0,
            0,
            0,
            0,
            FILE_MODE << 16,
            offset,
        )
        + name
    )


def _directory(records: list[tuple[bytes, int, int, int]], cd_offset: int) -> bytes:
    central = b"".join(_central_header(*record) for record in records)
    end = END_RECORD.pack(
        b"PK\x05\x06", 0, 0, len(records), len(records), len(central), cd_offset, 0
    )
    return central + end


LOCAL_FIELDS: Final = (
    "signature",
    "version needed",
    "flags",
    "compression method",
    "time",
    "date",
    "CRC",
    "compressed size",
    "size",
    "name length",
    "extra field",
)
CENTRAL_FIELDS: Final = (
    "signature",
    "version made by (system)",
    "version needed",
    "flags",
    "compression method",
    "time",
    "date",
    "CRC",
    "compressed size",
    "size",
    "name length",
    "extra field",
    "comment",
    "disk number",
    "internal attributes",
    "mode (external attributes)",
    "offset",
)


def _difference(
    layout: struct.Struct, names: tuple[str, ...], actual: bytes, expected: bytes
) -> str:
    """Name the first header field in which ``actual`` differs from ``expected``."""
    if len(actual) < layout.size:
        return "length"
    for name, got, want in zip(
        names,
        layout.unpack(actual[: layout.size]),
        layout.unpack(expected[: layout.size]),
        strict=True,
    ):
        if got != want:
            return name
    return "name"


def write_canonical(files: Mapping[str, bytes]) -> bytes:
    """Return the canonical archive of ``files`` (name -> content): same input, same bytes."""
    out = bytearray()
    records: list[tuple[bytes, int, int, int]] = []
    for name in sorted(files):
        raw = name.encode("ascii")
        data = files[name]
        crc = zlib.crc32(data)
        records.append((raw, crc, len(data), len(out)))
        out += _local_header(raw, crc, len(data))
        out += data
    out += _directory(records, len(out))
    return bytes(out)


# --- the reader ----------------------------------------------------------------------------


def path_problem(name: str) -> str | None:
    """Return why ``name`` is not a safe relative path, or None."""
    if not name:
        return "has an empty name"
    if len(name) > NAME_MAX:
        return f"name is longer than {NAME_MAX} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "name holds a control character"
    if "\\" in name:
        return "name holds a backslash (only '/' separates folders)"
    if name.startswith("/"):
        return "is an absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "starts with a drive letter"
    if name.endswith("/"):
        return "is a directory entry (only regular files are allowed)"
    parts = name.split("/")
    if ".." in parts:
        return "climbs out of the package with '..'"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' path component"
    return None


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Return why an entry is not a plain, readable file, or None."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            return "is a symbolic link"
        if kind == stat.S_IFDIR:
            return "is a directory entry (only regular files are allowed)"
        if kind != stat.S_IFREG:
            return "is not a regular file (device, fifo or socket)"
    if info.flag_bits & 0x41:
        return "is encrypted"
    if info.compress_type not in ALLOWED_METHODS:
        return f"uses compression method {info.compress_type} (only stored and deflate)"
    return None


def _check_names(infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        problem = path_problem(info.orig_filename)
        if problem:
            raise ArchiveError(info.orig_filename, problem)
    seen: dict[str, str] = {}
    for info in infos:
        name = info.orig_filename
        key = _fold(name)
        if key in seen:
            if seen[key] == name:
                raise ArchiveError(name, "appears twice in the archive")
            raise ArchiveError(
                name,
                f"collides with {seen[key]!r} after case folding or Unicode normalization",
            )
        seen[key] = name
    names = {info.orig_filename for info in infos}
    folders: dict[str, str] = {}
    for info in infos:
        parts = info.orig_filename.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in names:
                raise ArchiveError(
                    folder, f"is both a file and the folder of {info.orig_filename!r}"
                )
            spelled = folders.setdefault(_fold(folder), folder)
            if spelled != folder:
                raise ArchiveError(
                    info.orig_filename,
                    f"folder {folder!r} collides with {spelled!r} after case folding or "
                    "Unicode normalization",
                )
    for info in infos:
        if not info.orig_filename.isascii():
            raise ArchiveError(info.orig_filename, "name is not ASCII")
    for info in infos:
        problem = _entry_problem(info)
        if problem:
            raise ArchiveError(info.orig_filename, problem)


def _small_cap(name: str, limits: Limits) -> int | None:
    caps = {
        "manifest.toml": limits.max_manifest_bytes,
        "CHECKSUMS": limits.max_checksums_bytes,
        "SIGNATURE": limits.max_signature_bytes,
    }
    return caps.get(name)


class _Stream:
    """Measure, hash and (optionally) hand on one entry's bytes as they are produced."""

    def __init__(
        self,
        info: zipfile.ZipInfo,
        limits: Limits,
        budget: int,
        sink: Callable[[bytes], None] | None,
    ) -> None:
        self.info = info
        self.limits = limits
        self.budget = budget
        self.sink = sink
        self.size = 0
        self.crc = 0
        self.hash = hashlib.sha256()
        self.cap = _small_cap(info.orig_filename, limits)
        self.kept: bytearray | None = bytearray() if self.cap is not None else None

    def take(self, data: bytes, compressed_so_far: int) -> None:
        name = self.info.orig_filename
        self.size += len(data)
        if self.size > self.budget:
            raise ArchiveError(
                name,
                f"unpacks past the limit of {self.limits.max_unpacked_bytes} bytes in all",
            )
        if self.size > self.info.file_size:
            raise ArchiveError(
                name, f"unpacks to more than its declared {self.info.file_size} bytes"
            )
        if (
            self.info.compress_type == zipfile.ZIP_DEFLATED
            and self.size > self.limits.max_ratio * max(self.info.compress_size, 1)
        ):
            raise ArchiveError(
                name,
                f"compression ratio above {self.limits.max_ratio} (a compression bomb): "
                f"{self.size} bytes from {compressed_so_far} so far",
            )
        if self.cap is not None and self.kept is not None:
            if self.size > self.cap:
                raise ArchiveError(name, f"is larger than the limit of {self.cap} bytes")
            self.kept += data
        self.crc = zlib.crc32(data, self.crc)
        self.hash.update(data)
        if self.sink is not None:
            self.sink(data)


def _read_exact(fh: BinaryIO, size: int, name: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise ArchiveError(name, "is truncated")
    return data


def _stream_entry(fh: BinaryIO, info: zipfile.ZipInfo, data_offset: int, stream: _Stream) -> None:
    name = info.orig_filename
    fh.seek(data_offset)
    remaining = info.compress_size
    read = 0
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    while remaining:
        chunk = _read_exact(fh, min(CHUNK, remaining), name)
        remaining -= len(chunk)
        read += len(chunk)
        if inflater is None:
            stream.take(chunk, read)
            continue
        pending = chunk
        while True:
            try:
                out = inflater.decompress(pending, CHUNK)
            except zlib.error as err:
                raise ArchiveError(name, f"compressed data is corrupt: {err}") from None
            if out:
                stream.take(out, read)
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and len(out) < CHUNK):
                break
        if inflater.eof and (remaining or inflater.unused_data):
            raise ArchiveError(name, "holds data after the end of its compressed stream")
    if inflater is not None and not inflater.eof:
        raise ArchiveError(name, "compressed data ends early")
    if stream.size != info.file_size:
        raise ArchiveError(
            name, f"unpacks to {stream.size} bytes, not the declared {info.file_size}"
        )
    if stream.crc != info.CRC:
        raise ArchiveError(name, "CRC does not match its content")


def size_of(fh: BinaryIO) -> int:
    """Return the size of a seekable file without moving its position."""
    here = fh.tell()
    end = fh.seek(0, 2)
    fh.seek(here)
    return end


def _data_offset(fh: BinaryIO, info: zipfile.ZipInfo) -> tuple[int, bytes]:
    name = info.orig_filename
    if not 0 <= info.header_offset < size_of(fh):
        raise ArchiveError(name, "local header offset points outside the archive")
    fh.seek(info.header_offset)
    head = fh.read(LOCAL_HEADER.size)
    if len(head) != LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise ArchiveError(name, "local header is missing or corrupt")
    fields = LOCAL_HEADER.unpack(head)
    name_len, extra_len = fields[9], fields[10]
    rest = _read_exact(fh, name_len + extra_len, name)
    if rest[:name_len] != info.orig_filename.encode("ascii"):
        raise ArchiveError(name, "local header names a different file than the directory")
    return info.header_offset + LOCAL_HEADER.size + name_len + extra_len, head + rest


def _check_canonical(
    fh: BinaryIO, infos: list[zipfile.ZipInfo], headers: list[bytes], archive_size: int
) -> None:
    names = [info.orig_filename for info in infos]
    for before, after in itertools.pairwise(names):
        if before >= after:
            raise ArchiveError(after, f"is out of order (after {before!r}): entries must be sorted")
    offset = 0
    records: list[tuple[bytes, int, int, int]] = []
    for info, header in zip(infos, headers, strict=True):
        name = info.orig_filename
        if info.compress_type != zipfile.ZIP_STORED:
            raise ArchiveError(name, "is compressed; the canonical form stores entries as they are")
        raw = name.encode("ascii")
        if info.header_offset != offset:
            raise ArchiveError(name, "has data before it that belongs to no entry")
        expected_header = _local_header(raw, info.CRC, info.file_size)
        if header != expected_header:
            field = _difference(LOCAL_HEADER, LOCAL_FIELDS, header, expected_header)
            raise ArchiveError(
                name,
                f"header is not canonical: its {field} differs from what "
                "`paulyops package build` writes",
            )
        records.append((raw, info.CRC, info.file_size, offset))
        offset += len(header) + info.file_size
    expected = _directory(records, offset)
    fh.seek(offset)
    actual = fh.read(len(expected) + 1)
    if actual != expected:
        position = 0
        for info, record in zip(infos, records, strict=True):
            want = _central_header(*record)
            have = actual[position : position + len(want)]
            if have != want:
                field = _difference(CENTRAL_HEADER, CENTRAL_FIELDS, have, want)
                raise ArchiveError(
                    info.orig_filename,
                    f"central directory entry is not canonical: its {field} differs from "
                    "what `paulyops package build` writes",
                )
            position += len(want)
        raise ArchiveError(
            WHOLE, "end of the central directory is not canonical (a comment or trailing data)"
        )
    if offset + len(expected) != archive_size:
        raise ArchiveError(WHOLE, "holds data that belongs to no entry")


def scan(
    source: Path | BinaryIO,
    limits: Limits | None = None,
    sink: Callable[[str], Callable[[bytes], None] | None] | None = None,
) -> Contents:
    """Check an archive and stream every entry once, hashing it; write nothing.

    Args:
        source: the archive's path or a seekable binary file.
        limits: the limits to enforce (defaults: :class:`Limits`).
        sink: called with each entry's name; the callable it returns (if any) receives
            the entry's bytes as they are read (``unpack`` writes them).

    Raises:
        ArchiveError: the first problem found, naming the entry and the reason.
    """
    limits = limits or Limits()
    try:
        if isinstance(source, Path):
            with source.open("rb") as fh:
                return _scan(fh, limits, sink)
        return _scan(source, limits, sink)
    except (ValueError, struct.error, OverflowError, EOFError) as err:
        # Headers whose numbers make no sense (a negative offset, a size past the end):
        # still one message, never a traceback.
        raise ArchiveError(WHOLE, f"is malformed ({err})") from None


def _scan(
    fh: BinaryIO, limits: Limits, sink: Callable[[str], Callable[[bytes], None] | None] | None
) -> Contents:
    archive_size = fh.seek(0, 2)
    if archive_size > limits.max_archive_bytes:
        raise ArchiveError(
            WHOLE, f"is {archive_size} bytes, over the limit of {limits.max_archive_bytes}"
        )
    fh.seek(0)
    try:
        with zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            comment = zf.comment
    # NotImplementedError: zipfile refuses an entry whose "version needed" it does not
    # know (one changed header byte can claim it); that is an unreadable archive too.
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        EOFError,
        NotImplementedError,
    ) as err:
        raise ArchiveError(WHOLE, f"is not a readable zip archive ({err})") from None
    if len(infos) > limits.max_files:
        raise ArchiveError(
            WHOLE, f"holds {len(infos)} entries, over the limit of {limits.max_files}"
        )
    _check_names(infos)
    contents = Contents()
    headers: list[bytes] = []
    used = 0
    for info in infos:
        data_offset, header = _data_offset(fh, info)
        headers.append(header)
        writer = sink(info.orig_filename) if sink is not None else None
        stream = _Stream(info, limits, limits.max_unpacked_bytes - used, writer)
        _stream_entry(fh, info, data_offset, stream)
        used += stream.size
        name = info.orig_filename
        contents.entries[name] = Entry(name=name, size=stream.size, sha256=stream.hash.hexdigest())
        if stream.kept is not None:
            contents.small[name] = bytes(stream.kept)
    if comment:
        raise ArchiveError(WHOLE, "has an archive comment; the canonical form has none")
    _check_canonical(fh, infos, headers, archive_size)
    return contents


__all__ = [
    "SMALL_FILES",
    "WHOLE",
    "Contents",
    "Entry",
    "Limits",
    "path_problem",
    "scan",
    "write_canonical",
]
