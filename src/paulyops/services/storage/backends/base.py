"""The seam every storage backend implements, and the result of a connection test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Folder (local) or key prefix (S3) under which connection tests write their probe.
PROBE_PREFIX = ".paulyops-probe"


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """The outcome of a connection test.

    ``message`` is for people (the console shows it as it is) and ``details`` for logs and
    the audit trail; neither ever contains a credential.
    """

    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class StorageBackend(Protocol):
    """A place documents are stored: a folder, a bucket..."""

    def test_connection(self) -> ConnectionCheck:
        """Check that the place is reachable, readable and writable, writing nothing lasting."""
        ...


__all__ = ["PROBE_PREFIX", "ConnectionCheck", "StorageBackend"]
