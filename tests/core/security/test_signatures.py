"""Ed25519 helpers: key files, ids, signing and verifying."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from paulyops.core.errors import ConfigError, ConflictError
from paulyops.core.security.signatures import (
    decode_signature,
    encode_signature,
    generate_key,
    instance_signing_key,
    instance_verifying_key,
    load_private_key,
    load_public_key,
    public_key_id,
    save_private_key,
    save_public_key,
    sign,
    verify,
    verify_encoded,
)
from paulyops.core.settings import key_id, new_instance_key
from tests.conftest import make_settings


def test_key_files_round_trip_with_private_mode(tmp_path: Path) -> None:
    """A saved private key is 0600 and loads back; the public file carries its publisher."""
    key = generate_key()
    save_private_key(key, tmp_path / "k")
    save_public_key(key.public_key(), tmp_path / "k.pub", publisher="acme")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    loaded = load_private_key(tmp_path / "k")
    public = load_public_key(tmp_path / "k.pub")
    assert public.publisher == "acme"
    assert public.key_id == public_key_id(loaded) == public_key_id(key)
    assert verify(public.key, sign(loaded, b"msg"), b"msg")
    assert not verify(public.key, sign(loaded, b"msg"), b"msh")


def test_key_id_follows_the_instance_convention() -> None:
    """The id is the first 8 hex chars of the raw public key's sha256, as core.settings says."""
    key = generate_key()
    assert public_key_id(key) == key_id(key.public_key().public_bytes_raw())


def test_a_key_file_is_never_overwritten(tmp_path: Path) -> None:
    """Saving over an existing key file is a conflict and keeps the old key."""
    save_private_key(generate_key(), tmp_path / "k")
    before = (tmp_path / "k").read_bytes()
    with pytest.raises(ConflictError):
        save_private_key(generate_key(), tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == before


def test_a_base64url_seed_loads_as_a_private_key(tmp_path: Path) -> None:
    """The PAULYOPS_INSTANCE_KEY form (base64url of 32 bytes) is a valid key file."""
    seed = bytes(range(32))
    (tmp_path / "seed").write_text(base64.urlsafe_b64encode(seed).decode().rstrip("="))
    assert load_private_key(tmp_path / "seed").private_bytes_raw() == seed


def test_a_broken_key_file_is_named_without_its_content(tmp_path: Path) -> None:
    """Garbage is a ConfigError naming the file, never echoing what it holds."""
    (tmp_path / "bad").write_text("hunter2-secret")
    with pytest.raises(ConfigError) as caught:
        load_private_key(tmp_path / "bad")
    assert "bad" in caught.value.message
    assert "hunter2" not in caught.value.message
    with pytest.raises(ConfigError):
        load_public_key(tmp_path / "bad")


def test_signatures_travel_as_unpadded_base64url() -> None:
    """A signature encodes without padding, decodes back, and a changed one fails."""
    key = generate_key()
    signature = sign(key, b"message")
    text = encode_signature(signature)
    assert "=" not in text
    assert len(signature) == 64
    assert decode_signature(text) == signature
    assert verify_encoded(key.public_key(), text, b"message")
    assert not verify_encoded(key.public_key(), text, b"other message")
    assert not verify_encoded(key.public_key(), "not base64url!", b"message")


def test_the_instance_key_comes_from_settings_seed_text_or_bytes(tmp_path: Path) -> None:
    """Settings, the base64url seed and the raw seed give the same key; bad ones are named."""
    seed = new_instance_key()
    settings = make_settings(tmp_path, PAULYOPS_INSTANCE_KEY=seed)
    raw = base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4))
    ids = {public_key_id(instance_signing_key(source)) for source in (settings, seed, raw)}
    assert len(ids) == 1
    assert public_key_id(instance_verifying_key(seed)) in ids
    with pytest.raises(ConfigError, match="PAULYOPS_INSTANCE_KEY: expected 32 bytes, got 3"):
        instance_signing_key(b"abc")
    with pytest.raises(ConfigError, match="PAULYOPS_INSTANCE_KEY: not set"):
        instance_signing_key(settings.model_copy(update={"instance_key": None}))
