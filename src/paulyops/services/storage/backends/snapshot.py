"""Change feeds for providers without one (local folders, S3): a snapshot in the cursor.

Neither a folder nor a bucket can say "what changed since X", so the feed lists the folder
and compares it with the last snapshot the caller stored. The cursor *is* that snapshot:
``v1.`` + base64url(zlib(JSON ``{"folder": ..., "files": {path: revision}}``)). Storing it
only after the changes were handled means a crash re-delivers instead of losing, and a
file whose revision did not change is never reported twice.

Cost (documented in docs/storage.md): every call lists the whole folder; the cursor grows
with the number of files (about 15-25 bytes per file after compression, so roughly 2 MB
for 100,000 files), which the ``ingest_cursors.cursor`` text column holds.

A page carries at most ``max_changes`` changes; the cursor then holds the snapshot with
only those changes applied, so the next call reports the rest (``has_more``).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable

from paulyops.services.storage.backends.base import Change, ChangePage, Entry, StorageError

CURSOR_PREFIX = "v1."
# Changes per page; a listing of the whole folder is made per page anyway.
MAX_CHANGES = 5000


def encode_cursor(folder: str, files: dict[str, str]) -> str:
    """Return the cursor text for a snapshot of ``folder``."""
    raw = json.dumps({"folder": folder, "files": files}, separators=(",", ":"), sort_keys=True)
    packed = zlib.compress(raw.encode(), 9)
    return CURSOR_PREFIX + base64.urlsafe_b64encode(packed).decode()


def decode_cursor(folder: str, cursor: str) -> dict[str, str]:
    """Return the snapshot a cursor holds.

    Raises:
        StorageError: ``invalid`` when the cursor is not one of ours or is for another folder.
    """
    if not cursor.startswith(CURSOR_PREFIX):
        raise StorageError("invalid", "the change-feed cursor is not a snapshot cursor")
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(cursor[len(CURSOR_PREFIX) :]))
        data = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as err:
        raise StorageError("invalid", "the change-feed cursor is damaged") from err
    if not isinstance(data, dict) or data.get("folder") != folder:
        raise StorageError(
            "invalid", f"the change-feed cursor was made for another folder than {folder!r}"
        )
    files = data.get("files")
    if not isinstance(files, dict):
        raise StorageError("invalid", "the change-feed cursor is damaged")
    return {str(k): str(v) for k, v in files.items()}


def diff_page(
    folder: str,
    entries: Iterable[Entry],
    cursor: str | None,
    *,
    max_changes: int = MAX_CHANGES,
) -> ChangePage:
    """Compare a listing with the cursor's snapshot and return one page of changes."""
    before = {} if cursor is None else decode_cursor(folder, cursor)
    after = dict(before)
    changes: list[Change] = []
    seen: set[str] = set()
    more = False
    for entry in entries:
        seen.add(entry.path)
        old = before.get(entry.path)
        if old == entry.revision:
            continue
        if len(changes) >= max_changes:
            more = True
            continue
        changes.append(Change("added" if old is None else "modified", entry))
        after[entry.path] = entry.revision
    for path in sorted(set(before) - seen):
        if len(changes) >= max_changes:
            more = True
            break
        changes.append(Change("deleted", _gone(path, before[path])))
        del after[path]
    return ChangePage(changes, encode_cursor(folder, after), has_more=more)


def _gone(path: str, revision: str) -> Entry:
    from datetime import UTC, datetime

    return Entry(path=path, size=0, modified=datetime.fromtimestamp(0, UTC), revision=revision)


__all__ = ["CURSOR_PREFIX", "MAX_CHANGES", "decode_cursor", "diff_page", "encode_cursor"]
