"""Create the instance's folders and files private: 0700 folders, 0600 files.

The data folder holds the SQLite database, the setup token, the organizations' stored
files and logs; ``configs/`` holds the organization's settings. None of it is for other
users of the machine, whatever the process's umask: modes are set at creation (``mkdir``
and ``os.open`` with a mode, then ``chmod`` to the exact mode, since a umask can only take
bits away). Folders and files that already exist are left as the operator made them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` and every missing parent with mode 0700 (existing ones stay)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process made it first: it keeps that process's mode
        os.chmod(folder, PRIVATE_DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} exists but is not a folder")


def create_private_file(path: Path) -> bool:
    """Create an empty ``path`` with mode 0600 unless it exists; return whether it was made.

    Used before SQLite opens a new database file: SQLite creates it with the umask's mode
    (0644 usually), and its ``-wal`` and ``-shm`` files copy the main file's mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    with contextlib.closing(os.fdopen(fd, "wb")) as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
    return True


__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "create_private_file", "make_private_dir"]
