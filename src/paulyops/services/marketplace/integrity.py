"""The ``CHECKSUMS`` and ``SIGNATURE`` files of a package: their one exact text form.

``CHECKSUMS`` has one line per file, sorted by path: ``<sha256 hex>  <path>`` (the form
``sha256sum -c CHECKSUMS`` reads, so an unpacked package can be checked by hand). Its
paths are exactly the archive's entries other than ``CHECKSUMS`` and ``SIGNATURE``, so
signing it binds the names as well as the contents. ``SIGNATURE`` is three TOML lines:
the algorithm, the signer's key id and the Ed25519 signature (base64url, unpadded) of
``SIGNED_PREFIX + CHECKSUMS``; the prefix keeps a package signature from ever being
mistaken for a signature over anything else the same key signs.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paulyops.core.security.signatures import (
    decode_signature,
    encode_signature,
    public_key_id,
    sign,
)

CHECKSUMS_NAME: Final = "CHECKSUMS"
SIGNATURE_NAME: Final = "SIGNATURE"
INTEGRITY_FILES: Final = frozenset({CHECKSUMS_NAME, SIGNATURE_NAME})
SIGNED_PREFIX: Final = b"paulyops package signature v1\n"
_LINE = re.compile(r"([0-9a-f]{64})  (\S+)")


def checksums_text(files: Mapping[str, bytes]) -> bytes:
    """Return the ``CHECKSUMS`` of ``files`` (name -> content)."""
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return render_checksums(digests)


def render_checksums(digests: Mapping[str, str]) -> bytes:
    """Return the ``CHECKSUMS`` text of ``digests`` (path -> sha256 hex)."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests)).encode("ascii")


def parse_checksums(text: bytes) -> dict[str, str]:
    """Return path -> sha256 from ``CHECKSUMS``.

    Raises:
        ValueError: a line is malformed, or the text is not in its one exact form.
    """
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("is not ASCII text") from None
    out: dict[str, str] = {}
    for number, line in enumerate(decoded.split("\n")[:-1], start=1):
        match = _LINE.fullmatch(line)
        if not match:
            raise ValueError(f"line {number} is not '<sha256>  <path>'")
        if match[2] in out:
            raise ValueError(f"line {number} lists {match[2]!r} twice")
        out[match[2]] = match[1]
    if render_checksums(out) != text:
        raise ValueError("is not in canonical form (sorted lines, one trailing newline)")
    return out


def signed_message(checksums: bytes) -> bytes:
    """Return the bytes a package signature signs."""
    return SIGNED_PREFIX + checksums


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed ``SIGNATURE``: who signed (key id) and the raw signature."""

    key_id: str
    value: bytes


def signature_text(key: Ed25519PrivateKey, checksums: bytes) -> bytes:
    """Return the ``SIGNATURE`` file signing ``checksums`` with ``key``."""
    value = encode_signature(sign(key, signed_message(checksums)))
    return (
        f'algorithm = "ed25519"\nkey_id = "{public_key_id(key)}"\nsignature = "{value}"\n'
    ).encode("ascii")


def parse_signature(text: bytes) -> Signature:
    """Parse ``SIGNATURE``.

    Raises:
        ValueError: not the three-line form ``package sign`` writes.
    """
    try:
        table = tomllib.loads(text.decode("ascii"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise ValueError("is not the TOML that `paulyops package sign` writes") from None
    if set(table) != {"algorithm", "key_id", "signature"} or table["algorithm"] != "ed25519":
        raise ValueError("must hold exactly algorithm = 'ed25519', key_id and signature")
    key_id, encoded = table["key_id"], table["signature"]
    if not isinstance(key_id, str) or not re.fullmatch(r"[0-9a-f]{8}", key_id):
        raise ValueError("key_id must be 8 hex characters")
    value = decode_signature(str(encoded))
    if len(value) != 64:
        raise ValueError("signature is not 64 bytes of Ed25519")
    canonical = (f'algorithm = "ed25519"\nkey_id = "{key_id}"\nsignature = "{encoded}"\n').encode(
        "ascii"
    )
    if canonical != text or encode_signature(value) != encoded:
        raise ValueError("is not in canonical form")
    return Signature(key_id=key_id, value=value)


__all__ = [
    "CHECKSUMS_NAME",
    "INTEGRITY_FILES",
    "SIGNATURE_NAME",
    "SIGNED_PREFIX",
    "Signature",
    "checksums_text",
    "parse_checksums",
    "parse_signature",
    "render_checksums",
    "signature_text",
    "signed_message",
]
