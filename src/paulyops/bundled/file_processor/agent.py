"""File processor: the media type, metadata and text of one file.

The first system step of every new file. It sniffs the media type from the content
(magic numbers, then the structure of text), falling back to the name's extension and to
what the host said. Text files give their full text (cut at ``maxTextChars``); CSV adds
its delimiter, columns and row count; JSON its top-level shape. PDFs, images, office
files and other binaries give their media type and metadata only: no PDF or office
library is part of the platform, so this agent extracts no text from them and says so
in its result (``textExtraction``).

Imports only :mod:`paulyops.sdk` and the standard library.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import mimetypes
import struct
import zipfile
from typing import Any, Final

from paulyops.sdk import Context, Item, Result

DEFAULT_MAX_TEXT_CHARS: Final = 200_000
SNIFF_BYTES: Final = 64 * 1024
CSV_SAMPLE_CHARS: Final = 16 * 1024
OCTET_STREAM: Final = "application/octet-stream"
TEXT_TYPES: Final = frozenset(
    {"text/plain", "text/csv", "text/markdown", "application/json", "application/xml"}
)
_MAGIC: Final = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image/jp2"),
)
_OOXML: Final = {
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_EXTENSIONS: Final = {
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".json": "application/json",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".ofx": "application/x-ofx",
    ".dcm": "application/dicom",
}


def _decode(data: bytes) -> tuple[str, str] | None:
    """Return (text, encoding) when ``data`` is text, else None."""
    if b"\x00" in data[:SNIFF_BYTES]:
        return None
    for encoding in ("utf-8-sig", "utf-8"):
        try:
            return data.decode(encoding), "utf-8"
        except UnicodeDecodeError:
            continue
    return None


def _by_extension(name: str) -> str | None:
    lower = name.lower()
    for ext, media_type in _EXTENSIONS.items():
        if lower.endswith(ext):
            return media_type
    guessed, _encoding = mimetypes.guess_type(lower, strict=True)
    return guessed


def _zip_type(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return OCTET_STREAM
    for prefix, media_type in _OOXML.items():
        if any(n.startswith(prefix) for n in names) and "[Content_Types].xml" in names:
            return media_type
    return "application/zip"


def _text_type(name: str, text: str) -> str:
    by_name = _by_extension(name)
    if by_name in TEXT_TYPES:
        return by_name
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            json.loads(text)
        except ValueError:
            pass
        else:
            return "application/json"
    if stripped.startswith("<?xml"):
        return "application/xml"
    return "text/plain"


def sniff(name: str, data: bytes, declared: str | None = None) -> str:
    """Return the media type of a file from its content, name and the declared type."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data.startswith(b"PK\x03\x04"):
        return _zip_type(data)
    if data[128:132] == b"DICM":
        return "application/dicom"
    decoded = _decode(data)
    if decoded is not None:
        return _text_type(name, decoded[0])
    by_name = _by_extension(name)
    if by_name is not None and by_name not in TEXT_TYPES:
        return by_name
    if declared and declared not in TEXT_TYPES:
        return declared
    return OCTET_STREAM


def _csv_metadata(text: str) -> dict[str, Any]:
    sample = text[:CSV_SAMPLE_CHARS]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, ",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    rows = [row for row in rows if row]
    header = rows[0] if rows else []
    return {
        "delimiter": dialect.delimiter,
        "columns": header,
        "rows": max(len(rows) - 1, 0),
    }


def _json_metadata(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        return {"valid": False, "error": str(err)}
    if isinstance(value, dict):
        return {"valid": True, "topLevel": "object", "keys": sorted(value)[:100]}
    if isinstance(value, list):
        return {"valid": True, "topLevel": "array", "length": len(value)}
    return {"valid": True, "topLevel": type(value).__name__}


def _image_metadata(media_type: str, data: bytes) -> dict[str, Any]:
    if media_type == "image/png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return {"width": width, "height": height}
    if media_type == "image/jpeg":
        return _jpeg_size(data)
    return {}


def _jpeg_size(data: bytes) -> dict[str, Any]:
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return {}
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return {"width": width, "height": height}
        pos += 2 + length
    return {}


def _pdf_metadata(data: bytes) -> dict[str, Any]:
    header = data[:16].split(b"\n", 1)[0].split(b"\r", 1)[0]
    version = header.removeprefix(b"%PDF-").decode("ascii", "replace").strip()
    return {"pdfVersion": version, "encrypted": b"/Encrypt" in data}


def _max_chars(ctx: Context) -> int:
    value = ctx.settings.get("maxTextChars", DEFAULT_MAX_TEXT_CHARS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return DEFAULT_MAX_TEXT_CHARS
    return value


def handle(ctx: Context, item: Item) -> Result:
    """Return the media type, metadata and (for text files) the text of one input."""
    data = item.read_bytes()
    media_type = sniff(item.name, data, item.media_type)
    metadata: dict[str, Any] = {}
    text: str | None = None
    encoding: str | None = None
    extraction = "none: not a text file"
    decoded = _decode(data) if media_type in TEXT_TYPES else None
    if decoded is not None:
        text, encoding = decoded
        extraction = "full"
        metadata["lines"] = len(text.splitlines())
        metadata["words"] = len(text.split())
        if media_type == "text/csv":
            metadata["csv"] = _csv_metadata(text)
        elif media_type == "application/json":
            metadata["json"] = _json_metadata(text)
    elif media_type == "application/pdf":
        metadata.update(_pdf_metadata(data))
        extraction = "unsupported: no PDF library is part of the platform"
    elif media_type.startswith("image/"):
        metadata.update(_image_metadata(media_type, data))
        extraction = "unsupported: images are not read for text (no OCR)"
    limit = _max_chars(ctx)
    truncated = text is not None and len(text) > limit
    if text is not None and truncated:
        text = text[:limit]
    return Result(
        data={
            "name": item.name,
            "mediaType": media_type,
            "declaredMediaType": item.media_type,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "encoding": encoding,
            "text": text,
            "textTruncated": truncated,
            "textExtraction": extraction,
            "metadata": metadata,
        }
    )
