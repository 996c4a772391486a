"""Storage backends behind one seam: build one from a stored connection and test it.

:func:`backend_for` turns a :class:`StorageConfig` row into a :class:`StorageBackend`:
local folders and S3 (or S3-compatible) buckets. Google Drive and Dropbox return ``None``:
they need an OAuth authorization flow that is not built yet, and callers say so.
"""

from __future__ import annotations

from pathlib import Path

from paulyops.core.db.models import StorageConfig
from paulyops.core.security.fields import read_secret_json
from paulyops.services.storage.backends.base import (
    PROBE_PREFIX,
    ConnectionCheck,
    ConnectionTester,
    StorageBackend,
)
from paulyops.services.storage.backends.local import LocalBackend, local_folder
from paulyops.services.storage.backends.s3 import S3Backend

# Providers that have no backend yet, and why (shown to people as it is).
NOT_AVAILABLE = {
    "google-drive": "Google Drive needs an OAuth authorization flow, which is not built yet",
    "dropbox": "Dropbox needs an OAuth authorization flow, which is not built yet",
}


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def backend_for(
    config: StorageConfig, *, data_dir: Path, allow_private_endpoints: bool = False
) -> ConnectionTester | None:
    """Return the backend of a stored connection, or ``None`` for a provider without one.

    Args:
        config: the connection; S3 credentials are decrypted from its ``credentials``.
        data_dir: the instance's data directory (local folders are relative to it).

    Raises:
        ValueError: an S3 connection lacks its bucket or keys (naming the wire fields), or
            the provider is unknown.
        DecryptionError: the stored credentials cannot be decrypted.
    """
    if config.provider == "local":
        return LocalBackend(local_folder(config, data_dir))
    if config.provider in NOT_AVAILABLE:
        return None
    if config.provider != "s3":
        raise ValueError(f"unknown storage provider {config.provider!r}")
    stored = read_secret_json(config, "credentials") or {}
    values = {
        "bucket": _text(config.settings.get("bucket")),
        "accessKeyId": _text(stored.get("accessKeyId")),
        "secretAccessKey": _text(stored.get("secretAccessKey")),
    }
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ValueError(f"settings missing for s3: {', '.join(missing)}")
    return S3Backend(
        bucket=values["bucket"] or "",
        access_key_id=values["accessKeyId"] or "",
        secret_access_key=values["secretAccessKey"] or "",
        region=_text(config.settings.get("region")),
        endpoint=_text(config.settings.get("endpoint")),
        allow_private_endpoints=allow_private_endpoints,
    )


__all__ = [
    "NOT_AVAILABLE",
    "PROBE_PREFIX",
    "ConnectionCheck",
    "ConnectionTester",
    "LocalBackend",
    "S3Backend",
    "StorageBackend",
    "backend_for",
    "local_folder",
]
