"""Uploaded files: their type judged from their content, checked against their name.

:func:`check_upload` decides an uploaded file's type from its content (magic bytes and
text heuristics), never from its name alone.

.. versionadded:: 0.1
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Mapping
from pathlib import PurePath

from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.core.security.jsonlimits import json_nesting_depth
from paulyops.core.security.sanitize import safe_filename

MEDIA_PDF = "application/pdf"
MEDIA_PNG = "image/png"
MEDIA_JPEG = "image/jpeg"
MEDIA_GIF = "image/gif"
MEDIA_ZIP = "application/zip"
MEDIA_CSV = "text/csv"
MEDIA_TEXT = "text/plain"
MEDIA_JSON = "application/json"
MEDIA_UNKNOWN = "application/octet-stream"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", MEDIA_PDF),
    (b"\x89PNG\r\n\x1a\n", MEDIA_PNG),
    (b"\xff\xd8\xff", MEDIA_JPEG),
    (b"GIF87a", MEDIA_GIF),
    (b"GIF89a", MEDIA_GIF),
    (b"PK\x03\x04", MEDIA_ZIP),
    (b"PK\x05\x06", MEDIA_ZIP),  # an empty archive
)
EXTENSION_TYPES: Mapping[str, str] = {
    ".pdf": MEDIA_PDF,
    ".png": MEDIA_PNG,
    ".jpg": MEDIA_JPEG,
    ".jpeg": MEDIA_JPEG,
    ".gif": MEDIA_GIF,
    ".zip": MEDIA_ZIP,
    ".csv": MEDIA_CSV,
    ".txt": MEDIA_TEXT,
    ".json": MEDIA_JSON,
}
_TEXT_TYPES = frozenset({MEDIA_CSV, MEDIA_TEXT, MEDIA_JSON})
# Bytes of a text file the heuristics look at: enough for a header and a few rows.
_SNIFF_BYTES = 64 * 1024
_CSV_DELIMITERS = ",;\t|"
# Deepest JSON nesting the sniffer parses (well inside the parser's recursion limit).
_SNIFF_JSON_DEPTH = 256


def sniff_media_type(data: bytes) -> str:
    """Return the media type ``data`` holds, judged from its content only.

    Recognizes PDF, PNG, JPEG, GIF and ZIP by their magic bytes; UTF-8 text as JSON (an
    object or array that parses), CSV (the same delimiter count on every sampled line) or
    plain text; anything else is ``application/octet-stream``.
    """
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    text = _as_text(data)
    if text is None:
        return MEDIA_UNKNOWN
    if text.lstrip()[:1] in ("{", "[") and _parses_as_json(data):
        return MEDIA_JSON
    if _looks_like_csv(text):
        return MEDIA_CSV
    return MEDIA_TEXT


def _as_text(data: bytes) -> str | None:
    sample = data[:_SNIFF_BYTES]
    if sample.startswith(codecs.BOM_UTF8):
        sample = sample[len(codecs.BOM_UTF8) :]
    try:
        # A multi-byte character cut at the sample's end is not a reason to call it binary.
        text = codecs.getincrementaldecoder("utf-8")().decode(
            sample, final=len(data) <= len(sample)
        )
    except UnicodeDecodeError:
        return None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
    if "\x00" in text or controls > len(text) // 100:
        return None
    return text


def _parses_as_json(data: bytes) -> bool:
    # Bound the nesting first: the parser recurses, and a hostile file could exhaust it.
    if json_nesting_depth(data) > _SNIFF_JSON_DEPTH:
        return False
    try:
        json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return False
    return True


def _looks_like_csv(text: str) -> bool:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(lines) > 1 and len(text) >= _SNIFF_BYTES:
        lines = lines[:-1]  # the sample may cut the last line short
    if len(lines) < 2:
        return False
    for delimiter in _CSV_DELIMITERS:
        try:
            widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:
            continue
        if len(widths) == 1 and widths.pop() > 1:
            return True
    return False


def check_upload(
    data: bytes,
    filename: str,
    *,
    allowed: set[str] | frozenset[str],
    max_bytes: int,
    field: str = "file",
) -> str:
    """Check an uploaded file's size and type; return its media type.

    The type comes from the content (:func:`sniff_media_type`) and must agree with the
    file's extension: a ``.pdf`` must be a PDF, a ``.csv``/``.txt`` must be text, a
    ``.json`` must parse. Office documents (zip containers) are not told apart from zips.

    Args:
        data: the file's bytes.
        filename: the name the client sent (only its extension is used).
        allowed: the media types this upload accepts, e.g. ``{"application/pdf"}``.
        max_bytes: the largest accepted size.
        field: the form field, for the error.

    Raises:
        SpecValidationError: naming the file, when it is empty, too large, of an unknown
            or not allowed type, or when its content does not match its extension.
    """
    shown = safe_filename(filename)

    def fail(problem: str, *, allowed_types: list[str] | None = None) -> SpecValidationError:
        message = f"{field}: {shown!r} {problem}"
        return SpecValidationError(message, [FieldError(field, message, allowed=allowed_types)])

    if not data:
        raise fail("is empty")
    if len(data) > max_bytes:
        raise fail(f"is too large: {len(data)} bytes, the limit is {max_bytes} bytes")
    extension = PurePath(filename.replace("\\", "/")).suffix.lower()
    declared = EXTENSION_TYPES.get(extension)
    accepted = sorted(allowed)
    if declared is None:
        raise fail(
            f"has an unsupported extension {extension or '(none)'!r}; "
            f"expected one of {', '.join(sorted(EXTENSION_TYPES))}",
            allowed_types=accepted,
        )
    sniffed = sniff_media_type(data)
    compatible = sniffed == declared or (
        declared in {MEDIA_CSV, MEDIA_TEXT} and sniffed in _TEXT_TYPES
    )
    if not compatible:
        raise fail(f"is named {extension} but its content is {sniffed}")
    if declared not in allowed:
        raise fail(
            f"is {declared}, which this upload does not accept; expected one of "
            f"{', '.join(accepted)}",
            allowed_types=accepted,
        )
    return declared


__all__ = [
    "EXTENSION_TYPES",
    "MEDIA_CSV",
    "MEDIA_GIF",
    "MEDIA_JPEG",
    "MEDIA_JSON",
    "MEDIA_PDF",
    "MEDIA_PNG",
    "MEDIA_TEXT",
    "MEDIA_UNKNOWN",
    "MEDIA_ZIP",
    "check_upload",
    "sniff_media_type",
]
