"""Folders on this server."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from paulyops.core.db.models import StorageConfig
from paulyops.services.storage.backends.base import PROBE_PREFIX, ConnectionCheck


def local_folder(row: StorageConfig, data_dir: Path) -> Path:
    """Return the folder a local connection uses (relative paths are under the data dir)."""
    raw = row.settings.get("path")
    if not isinstance(raw, str) or not raw:
        return data_dir / "storage" / row.organization_id
    path = Path(raw)
    return path if path.is_absolute() else data_dir / path


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """A folder on this server; it is created (with its parents) when missing."""

    folder: Path

    def test_connection(self) -> ConnectionCheck:
        """Create the folder if needed, then write and remove a small probe file in it."""
        folder = self.folder
        details: dict[str, object] = {"path": str(folder)}
        if folder.exists() and not folder.is_dir():
            return ConnectionCheck(False, f"{folder} exists but is not a folder", details)
        created = False
        if not folder.exists():
            try:
                folder.mkdir(parents=True)
            except OSError as err:
                return ConnectionCheck(
                    False,
                    f"the folder {folder} does not exist and cannot be created ({err.strerror})",
                    details,
                )
            created = True
        probe = folder / f"{PROBE_PREFIX}-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as err:
            return ConnectionCheck(
                False, f"the folder {folder} is not writable ({err.strerror})", details
            )
        if not os.access(folder, os.R_OK | os.X_OK):
            return ConnectionCheck(False, f"the folder {folder} is not readable", details)
        done = "was created and is writable" if created else "exists and is writable"
        return ConnectionCheck(True, f"the folder {folder} {done}", {**details, "created": created})


__all__ = ["LocalBackend", "local_folder"]
