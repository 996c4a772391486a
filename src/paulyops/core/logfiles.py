"""The servers' log files: one rotating JSON-lines file per process, read back merged.

Each server process writes ``<data dir>/logs/server-<pid>.log`` (rotated at
``PAULYOPS_LOG_FILE_MAX_BYTES`` into ``.log.1`` ... ``.log.N``). :func:`read_entries` merges
every file by timestamp and filters by level, request id and time; :func:`follow` keeps
reading what is appended (and picks up files of processes started meanwhile). Files of
processes that stopped more than ``PAULYOPS_LOG_RETENTION_DAYS`` ago are removed when a
server starts (:func:`remove_old_files`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from paulyops.core.logging import LogFile
from paulyops.core.settings import Settings

LEVELS = ("debug", "info", "warning", "error", "critical")
_FILE = re.compile(r"^(?P<role>[a-z]+)-(?P<pid>\d+)\.log(?:\.(?P<n>\d+))?$")
_SINCE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def server_log_file(settings: Settings, *, role: str = "server") -> LogFile | None:
    """The log file this process writes, or None when file logging is off."""
    if not settings.log_file_enabled:
        return None
    return LogFile(
        path=settings.log_dir / f"{role}-{os.getpid()}.log",
        max_bytes=settings.log_file_max_bytes,
        backups=settings.log_file_backups,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_old_files(log_dir: Path, *, retention_days: int, now: float | None = None) -> int:
    """Remove log files of stopped processes unchanged for ``retention_days``; return how many."""
    cutoff = (now if now is not None else time.time()) - retention_days * 86400
    removed = 0
    for path in _log_paths(log_dir):
        match = _FILE.match(path.name)
        if match is None or _alive(int(match["pid"])):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


@dataclass(frozen=True, slots=True)
class Entry:
    """One log line: its parsed fields, and the file it came from."""

    timestamp: datetime
    level: str
    event: str
    fields: dict[str, Any]
    source: str

    @property
    def request_id(self) -> str | None:
        """The correlation id of the request or job that logged this line, if any."""
        value = self.fields.get("correlation_id") or self.fields.get("request_id")
        return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class Filter:
    """Which lines to show: at least ``level``, one request, from ``since`` on."""

    level: str = "debug"
    request_id: str | None = None
    since: datetime | None = None

    def __call__(self, entry: Entry) -> bool:
        if LEVELS.index(entry.level) < LEVELS.index(self.level):
            return False
        if self.request_id is not None and entry.request_id != self.request_id:
            return False
        return self.since is None or entry.timestamp >= self.since


def parse_level(value: str) -> str:
    """Normalize a level name; raise ValueError listing the levels."""
    level = value.strip().lower()
    if level == "warn":
        level = "warning"
    if level not in LEVELS:
        raise ValueError(f"expected one of {', '.join(LEVELS)}, got {value!r}")
    return level


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``10m``, ``2h``, ``1d``, ``30s`` ago, or an ISO 8601 time (UTC if it has no zone)."""
    text = value.strip()
    match = _SINCE.match(text)
    if match:
        delta = timedelta(**{_UNITS[match["unit"]]: int(match["n"])})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected a duration like 10m, 2h, 1d or a time like 2026-12-01T09:30, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _log_paths(log_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in log_dir.iterdir() if _FILE.match(p.name) and p.is_file())
    except FileNotFoundError:
        return []


def parse_line(line: str, source: str) -> Entry | None:
    """Parse one JSON line; None for a line that is not one of ours (or is cut short)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("timestamp"), str):
        return None
    try:
        stamp = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
    except ValueError:
        return None
    level = str(data.get("level", "info")).lower()
    level = "warning" if level == "warn" else level
    if level not in LEVELS:
        level = "info"
    event = str(data.get("event", ""))
    fields = {k: v for k, v in data.items() if k not in {"timestamp", "level", "event"}}
    return Entry(stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC), level, event, fields, source)


def _entries(path: Path) -> Iterator[Entry]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            entry = parse_line(line, path.name)
            if entry is not None:
                yield entry


def read_entries(log_dir: Path, keep: Callable[[Entry], bool] = Filter()) -> list[Entry]:
    """Every kept line of every log file in ``log_dir``, oldest first."""
    out = [entry for path in _log_paths(log_dir) for entry in _entries(path) if keep(entry)]
    out.sort(key=lambda entry: entry.timestamp)
    return out


def follow(
    log_dir: Path,
    keep: Callable[[Entry], bool] = Filter(),
    *,
    interval: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Entry]:
    """Yield lines appended to the current log files from now on, until ``stop()``.

    Only the live files (``*.log``) are followed; when one rotates (its inode changes or it
    shrinks) it is read again from its start.
    """
    offsets: dict[Path, tuple[int, int]] = {}
    for path in _live(log_dir):
        stat = path.stat()
        offsets[path] = (stat.st_ino, stat.st_size)
    while not stop():
        for path in _live(log_dir):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            inode, offset = offsets.get(path, (stat.st_ino, 0))
            if inode != stat.st_ino or stat.st_size < offset:
                offset = 0
            if stat.st_size > offset:
                entries, consumed = _read_from(path, offset)
                yield from (e for e in entries if keep(e))
                offset += consumed
            offsets[path] = (stat.st_ino, offset)
        sleep(interval)


def _live(log_dir: Path) -> Iterable[Path]:
    return [p for p in _log_paths(log_dir) if p.suffix == ".log"]


def _read_from(path: Path, offset: int) -> tuple[list[Entry], int]:
    """The complete lines after ``offset`` and how many bytes they take (a line still
    being written is left for the next round)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    text = complete.decode("utf-8", errors="replace")
    entries = [e for line in text.splitlines() if (e := parse_line(line, path.name)) is not None]
    return entries, len(complete)


__all__ = [
    "LEVELS",
    "Entry",
    "Filter",
    "follow",
    "parse_level",
    "parse_line",
    "parse_since",
    "read_entries",
    "remove_old_files",
    "server_log_file",
]
