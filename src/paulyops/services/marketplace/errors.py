"""Errors of the marketplace: packages that are malformed, unsafe or untrusted.

::

    SpecValidationError (core)
    └── PackageError            a package was rejected; ``errors`` names each file or field
        ├── ManifestError       manifest.toml is malformed or breaks a rule
        └── ArchiveError        the archive is unsafe, too big or not in canonical form
    ConfigError (core)
    └── PackageSourceError      an agent source directory cannot be built
"""

from __future__ import annotations

from paulyops.core.errors import ConfigError, FieldError, SpecValidationError


class PackageError(SpecValidationError):
    """A package was rejected: one message per failed check, naming the file or field."""


class ManifestError(PackageError):
    """``manifest.toml`` is not valid TOML, breaks the schema or a cross-field rule."""


class ArchiveError(PackageError):
    """The archive is unreadable, unsafe, over a limit or not in canonical form.

    Args:
        entry: the archive entry at fault (``"(archive)"`` for the archive as a whole).
        reason: why it was rejected.
    """

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"{entry}: {reason}", [FieldError(field=entry, message=reason)])
        self.entry = entry
        self.reason = reason


class PackageSourceError(ConfigError):
    """An agent's source directory cannot be packaged (e.g. it holds a symlink)."""


__all__ = ["ArchiveError", "ManifestError", "PackageError", "PackageSourceError"]
