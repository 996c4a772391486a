"""Folders on this server."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from paulyops.core.db.models import StorageConfig
from paulyops.core.files import make_private_dir
from paulyops.services.storage.backends.base import PROBE_PREFIX, ConnectionCheck


def local_folder(row: StorageConfig, data_dir: Path) -> Path:
    """Return the folder a local connection uses.

    Relative paths live inside the organization's own storage folder
    (``<data dir>/storage/<org id>``) and may not climb out of it; absolute paths can only
    have been chosen by a platform administrator (see ``services.storage.connections.add_storage``).

    Raises:
        ValueError: a relative path that leaves the organization's storage folder.
    """
    base = data_dir / "storage" / row.organization_id
    raw = row.settings.get("path")
    if not isinstance(raw, str) or not raw:
        return base
    path = Path(raw)
    if path.is_absolute():
        return path
    target = (base / path).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ValueError(f"the folder {raw!r} must stay inside this organization's storage")
    return target


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
                make_private_dir(folder)
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
