"""Ed25519 signing keys: generate, store, load, identify, sign and verify.

Audit checkpoints and agent packages share these helpers. A key id is the first 8 hex
characters of the sha256 of the *raw public key*, so anyone holding only the public key
can match a signature to it (the convention of ``core.settings.key_id``).

Signatures travel as unpadded base64url text (:func:`encode_signature`), in audit
checkpoints and in a package's ``SIGNATURE`` file alike. The instance's own key (which signs
audit checkpoints) is ``PAULYOPS_INSTANCE_KEY``, the base64url 32-byte seed:
:func:`instance_signing_key` reads it from the settings.

Key files are PEM (PKCS#8 private keys, SubjectPublicKeyInfo public keys), readable by
OpenSSL. Lines starting with ``#`` before the PEM block are comments: ``package keygen``
writes the publisher a public key belongs to there (``# publisher: acme``). A private key
file may also hold just the base64url seed (the ``PAULYOPS_INSTANCE_KEY`` form).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from paulyops.core.errors import ConfigError, ConflictError
from paulyops.core.settings import Settings, decode_key, key_id

PRIVATE_KEY_MODE = 0o600
PUBLISHER_COMMENT = "# publisher:"
SEED_BYTES = 32
SIGNATURE_BYTES = 64
INSTANCE_KEY_VAR = "PAULYOPS_INSTANCE_KEY"

# Where the instance key can come from: the settings, a key, its base64url seed or raw seed.
KeySource = Settings | Ed25519PrivateKey | str | bytes


def generate_key() -> Ed25519PrivateKey:
    """Return a new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def public_key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Return the key id: the first 8 hex chars of the raw public key's sha256."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return key_id(public.public_bytes_raw())


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    """Return the 64-byte Ed25519 signature of ``message``."""
    return key.sign(message)


def verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Return whether ``signature`` is ``key``'s signature of ``message``."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def encode_signature(signature: bytes) -> str:
    """Return a signature as unpadded base64url text."""
    return base64.urlsafe_b64encode(signature).decode("ascii").rstrip("=")


def decode_signature(text: str) -> bytes:
    """Return the raw signature of unpadded (or padded) base64url ``text``.

    Raises:
        ValueError: ``text`` is not base64url.
    """
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("signature is not base64url") from None


def verify_encoded(key: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    """Return whether base64url ``signature`` is ``key``'s signature of ``message``."""
    try:
        raw = decode_signature(signature)
    except ValueError:
        return False
    return verify(key, raw, message)


def private_key_from_seed(seed: str | bytes) -> Ed25519PrivateKey:
    """Return the private key of a 32-byte seed, raw or as base64url text.

    Raises:
        ValueError: not base64url, or not 32 bytes (the seed itself is never echoed).
    """
    raw = decode_key(seed) if isinstance(seed, str) else seed
    if len(raw) != SEED_BYTES:
        raise ValueError(f"expected {SEED_BYTES} bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def instance_signing_key(source: KeySource) -> Ed25519PrivateKey:
    """Return the instance's Ed25519 signing key from settings, its base64url seed or bytes.

    Raises:
        ConfigError: ``PAULYOPS_INSTANCE_KEY`` is missing or not base64url of 32 bytes.
    """
    if isinstance(source, Ed25519PrivateKey):
        return source
    if isinstance(source, Settings):
        if source.instance_key is None:
            raise ConfigError(
                f"{INSTANCE_KEY_VAR}: not set; audit checkpoints need the instance key "
                "(run `paulyops setup` or restore .env.local)"
            )
        source = source.instance_key.get_secret_value()
    try:
        return private_key_from_seed(source)
    except ValueError as err:
        raise ConfigError(f"{INSTANCE_KEY_VAR}: {err}") from None


def instance_verifying_key(source: KeySource | Ed25519PublicKey) -> Ed25519PublicKey:
    """Return the public key that checks what ``source`` (see above) signs."""
    if isinstance(source, Ed25519PublicKey):
        return source
    return instance_signing_key(source).public_key()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """Return the unencrypted PKCS#8 PEM of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: Ed25519PublicKey, *, publisher: str | None = None) -> bytes:
    """Return the PEM of a public key, with a ``# publisher:`` comment when given."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = f"# PaulyOps Ed25519 public key {public_key_id(key)}\n"
    if publisher:
        head += f"{PUBLISHER_COMMENT} {publisher}\n"
    return head.encode() + pem


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, created with ``mode`` (never widened later)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise ConflictError(f"{path}: already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a private key to a new file readable only by its owner (0600).

    Raises:
        ConflictError: the file exists already.
    """
    _write_new(path, private_key_pem(key), PRIVATE_KEY_MODE)
    os.chmod(path, PRIVATE_KEY_MODE)  # the umask may have narrowed it; never wider


def save_public_key(key: Ed25519PublicKey, path: Path, *, publisher: str | None = None) -> None:
    """Write a public key (PEM, with an optional publisher comment) to a new file."""
    _write_new(path, public_key_pem(key, publisher=publisher), 0o644)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what}: {err.strerror}") from None


def _pem_part(data: bytes) -> bytes:
    lines = [line for line in data.splitlines() if not line.lstrip().startswith(b"#")]
    return b"\n".join(lines).strip() + b"\n"


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key file (PKCS#8 PEM or a base64url 32-byte seed).

    Raises:
        ConfigError: unreadable, or not an Ed25519 private key (the file's content is
            never echoed: it is a secret).
    """
    data = _read(path, "private key")
    body = _pem_part(data)
    if body.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(body, password=None)
        except (ValueError, TypeError):
            key = None
        if isinstance(key, Ed25519PrivateKey):
            return key
        raise ConfigError(f"{path}: not an unencrypted Ed25519 private key (PKCS#8 PEM)")
    try:
        return private_key_from_seed(body.decode("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(
            f"{path}: not an Ed25519 private key (PEM or base64url 32-byte seed)"
        ) from None


@dataclass(frozen=True, slots=True)
class PublicKeyFile:
    """A public key read from a file, with the publisher its comment names (if any)."""

    key: Ed25519PublicKey
    publisher: str | None

    @property
    def key_id(self) -> str:
        """The key's id."""
        return public_key_id(self.key)


def load_public_key(path: Path) -> PublicKeyFile:
    """Read a public key file (PEM SubjectPublicKeyInfo, optional ``# publisher:`` line).

    Raises:
        ConfigError: unreadable, or not an Ed25519 public key.
    """
    data = _read(path, "public key")
    publisher = None
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(PUBLISHER_COMMENT):
            publisher = line[len(PUBLISHER_COMMENT) :].strip() or None
    try:
        key = serialization.load_pem_public_key(_pem_part(data))
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key (PEM)")
    return PublicKeyFile(key=key, publisher=publisher)


__all__ = [
    "INSTANCE_KEY_VAR",
    "PRIVATE_KEY_MODE",
    "SEED_BYTES",
    "SIGNATURE_BYTES",
    "KeySource",
    "PublicKeyFile",
    "decode_signature",
    "encode_signature",
    "generate_key",
    "instance_signing_key",
    "instance_verifying_key",
    "load_private_key",
    "load_public_key",
    "private_key_from_seed",
    "private_key_pem",
    "public_key_id",
    "public_key_pem",
    "save_private_key",
    "save_public_key",
    "sign",
    "verify",
    "verify_encoded",
]
