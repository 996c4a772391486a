"""Helpers for package tests: a valid agent's files and a raw zip writer for attacks.

The raw writer can produce what ``package build`` never would (any name, method, flag,
mode, extra field or lying size), so each attack in the corpus is exactly one deviation.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paulyops.services.marketplace.build import assemble
from paulyops.services.marketplace.validate import TrustedKey

MANIFEST = """\
id = "{id}"
name = "Hello"
version = "{version}"
description = "Counts words."
publisher = "{publisher}"
license = "MIT"
entrypoint = "agent:handle"
capabilities = {capabilities}

[compatibility]
paulyops = "{paulyops}"

[handles]
mediaTypes = ["text/plain"]
documentClasses = ["other"]

[dependencies.agents]
{agents}
"""


def manifest_text(
    *,
    agent_id: str = "acme.hello",
    version: str = "1.0.0",
    capabilities: str = '["alerts:raise"]',
    paulyops: str = ">=0.1",
    agents: Mapping[str, str] | None = None,
) -> str:
    """Return a valid manifest with the given fields changed."""
    return MANIFEST.format(
        id=agent_id,
        version=version,
        publisher=agent_id.partition(".")[0],
        capabilities=capabilities,
        paulyops=paulyops,
        agents="\n".join(f'"{k}" = "{v}"' for k, v in (agents or {}).items()),
    )


def agent_files(**manifest: object) -> dict[str, bytes]:
    """Return the files of a small valid agent."""
    return {
        "manifest.toml": manifest_text(**manifest).encode(),  # type: ignore[arg-type]
        "agent.py": b"def handle(ctx, item):\n    return None\n",
        "lib/words.py": b"def count(text):\n    return len(text.split())\n",
    }


def signed_package(key: Ed25519PrivateKey, **manifest: object) -> bytes:
    """Return a valid package of :func:`agent_files` signed with ``key``."""
    return assemble(agent_files(**manifest), key)


def trust(key: Ed25519PrivateKey, publisher: str = "acme") -> list[TrustedKey]:
    """Return a trust list holding ``key`` for ``publisher``."""
    return [TrustedKey(key=key.public_key(), publisher=publisher)]


@dataclass
class Raw:
    """One entry for :func:`raw_zip`, with every field an attack may bend."""

    name: str
    data: bytes
    method: int = 0
    flags: int = 0
    mode: int = 0o100644
    create_system: int = 3
    extra: bytes = b""
    comment: bytes = b""
    declared_size: int | None = None
    dos_date: int = 33
    dos_time: int = 0


def raw_zip(
    entries: list[Raw], *, comment: bytes = b"", prefix: bytes = b"", suffix: bytes = b""
) -> bytes:
    """Return a zip of ``entries`` exactly as given (no sorting, no checks)."""
    out = bytearray(prefix)
    central = bytearray()
    for e in entries:
        name = e.name.encode("utf-8")
        flags = e.flags | (0x800 if not e.name.isascii() else 0)
        if e.method == 8:
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            body = packer.compress(e.data) + packer.flush()
        else:
            body = e.data
        crc = zlib.crc32(e.data)
        size = len(e.data) if e.declared_size is None else e.declared_size
        offset = len(out) - len(prefix)
        out += struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            20,
            flags,
            e.method,
            e.dos_time,
            e.dos_date,
            crc,
            len(body),
            size,
            len(name),
            len(e.extra),
        )
        out += name + e.extra + body
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            (e.create_system << 8) | 20,
            20,
            flags,
            e.method,
            e.dos_time,
            e.dos_date,
            crc,
            len(body),
            size,
            len(name),
            len(e.extra),
            len(e.comment),
            0,
            0,
            e.mode << 16,
            offset,
        )
        central += name + e.extra + e.comment
    cd_offset = len(out) - len(prefix)
    out += central
    out += struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        len(entries),
        len(entries),
        len(central),
        cd_offset,
        len(comment),
    )
    return bytes(out + comment + suffix)
