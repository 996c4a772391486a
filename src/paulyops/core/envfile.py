"""Read and rewrite ``.env.local``, the file that holds an instance's settings and secrets.

There is one writer, :func:`update_env_file`, and every change to the file goes through
it: generating missing secrets at start, ``paulyops keys rotate | retire |
rotate-signing`` and the test fixtures. It sets each variable on the line that defines it
(the last one, which is the one that counts), keeps an ``export`` prefix, appends the
variables the file does not have yet, and leaves every comment, blank line and unrelated
variable as it was.

The new content replaces the file atomically through :func:`paulyops.core.atomic.write_atomic`:
written to an unnamed temporary file, fsynced, renamed over the old one with mode 0600.
A write that fails half-way (disk full, a crash) leaves the old file whole, and no
temporary copy of the secrets stays behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from paulyops.core.atomic import write_atomic
from paulyops.core.errors import ConfigError

ENV_FILE_MODE = 0o600
_EXPORT = "export "


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file; ``#`` comments, blank lines and quotes are allowed.

    A variable defined twice takes its last value.

    Raises:
        ConfigError: a line is not ``KEY=value``; the message names file and line.
    """
    values: dict[str, str] = {}
    for number, raw_line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(_EXPORT):
            line = line.removeprefix(_EXPORT).strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def update_env_file(path: Path, values: Mapping[str, str], *, comment: str | None = None) -> None:
    """Set ``values`` in the env file at ``path`` atomically, keeping every other line.

    Names match case-insensitively, as settings read them. A variable already in the file
    gets its new value on its last defining line (its spelling and an ``export`` prefix
    stay); the others
    are appended at the end, after ``comment`` (``# `` is added to each of its lines)
    when one is given. The file is created when missing; either way it ends with mode 0600.

    Args:
        path: the env file, usually ``<instance root>/.env.local``.
        values: variable name to new value (written as given, unquoted).
        comment: a note written above the appended variables.

    Raises:
        ValueError: a name is not a variable name, or a value spans lines.
        OSError: the file could not be written (the old one is unchanged).
    """
    for name, value in values.items():
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"env file: expected a variable name, got {name!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"{name}: a value in {path.name} must fit on one line")
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    write_atomic(path, render_env_update(old, values, comment=comment), mode=ENV_FILE_MODE)


def render_env_update(text: str, values: Mapping[str, str], *, comment: str | None = None) -> str:
    """Return ``text`` (an env file's content) with ``values`` set, as :func:`update_env_file`."""
    lines = text.splitlines()
    wanted = {name.upper(): name for name in values}
    last: dict[str, tuple[int, str]] = {}  # upper-case name: (line index, name as written)
    for index, raw_line in enumerate(lines):
        line = raw_line.strip().removeprefix(_EXPORT).strip()
        name, sep, _ = line.partition("=")
        if sep and not line.startswith("#") and name.strip().upper() in wanted:
            last[name.strip().upper()] = (index, name.strip())
    appended: list[str] = []
    for upper, name in wanted.items():
        value = values[name]
        if upper in last:
            index, written = last[upper]
            prefix = _EXPORT if lines[index].lstrip().startswith(_EXPORT) else ""
            lines[index] = f"{prefix}{written}={value}"
        else:
            appended.append(f"{name}={value}")
    if appended and comment:
        appended[:0] = [f"# {part}".rstrip() for part in comment.splitlines()]
    lines.extend(appended)
    return "\n".join(lines) + "\n" if lines else ""


__all__ = ["ENV_FILE_MODE", "read_env_file", "render_env_update", "update_env_file"]
