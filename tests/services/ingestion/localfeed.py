"""A small real local-folder change feed for the ingestion tests (until storagecore lands).

The cursor is a JSON snapshot of ``path -> revision``; ``changes`` diffs the folder against it.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from paulyops.services.storage.backends.base import Change, ChangePage, Entry, StorageError


@dataclass
class LocalFeed:
    root: Path
    ours: set[str] = field(default_factory=set)
    fail_reads: set[str] = field(default_factory=set)
    page_size: int = 1000

    def _check(self, path: str) -> Path:
        if path.startswith("/") or ".." in path.split("/") or "\x00" in path:
            raise StorageError("invalid_path", f"{path!r} is not a relative path")
        return self.root / path

    def stat(self, path: str) -> Entry:
        target = self._check(path)
        try:
            st = os.stat(target, follow_symlinks=False)
        except FileNotFoundError:
            raise StorageError("not_found", f"{path} does not exist") from None
        return Entry(
            path=path,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
            revision=f"{st.st_mtime_ns}-{st.st_size}",
            written_by_paulyops=path in self.ours,
        )

    def list(self, folder: str = "", *, recursive: bool = True):
        base = self._check(folder) if folder else self.root
        if not base.is_dir():
            return
        for p in sorted(base.rglob("*")):
            if p.is_file():
                yield self.stat(p.relative_to(self.root).as_posix())

    @contextmanager
    def open_read(self, path: str):
        if path in self.fail_reads:
            raise StorageError("unavailable", f"{path}: the read timed out")
        with open(self._check(path), "rb") as fh:
            yield fh

    def changes(self, folder: str, cursor: str | None) -> ChangePage:
        before: dict[str, str] = json.loads(cursor) if cursor else {}
        now = {e.path: e for e in self.list(folder)}
        out: list[Change] = []
        for path, entry in now.items():
            if path not in before:
                out.append(Change("added", entry))
            elif before[path] != entry.revision:
                out.append(Change("modified", entry))
        for path in before:
            if path not in now:
                out.append(Change("deleted", Entry(path, 0, datetime.now(UTC), before[path])))
        return ChangePage(out, json.dumps({p: e.revision for p, e in now.items()}))

    def test_connection(self):  # pragma: no cover - not used here
        raise NotImplementedError
