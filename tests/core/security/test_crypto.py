"""The encryption key ring and the rotation of its keys in `.env.local`."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from paulyops.core.errors import ConfigError
from paulyops.core.security.crypto import (
    Aad,
    DecryptionError,
    KeyRing,
    PreviousKey,
    RetiredKeyError,
    openssl_fips_enabled,
    rotate_env_file,
)
from paulyops.core.settings import (
    ENV_FILE_NAME,
    decode_key,
    key_id,
    load_settings,
    new_encryption_key,
    read_env_file,
)

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)
RING = KeyRing(KEY_A)
AAD = Aad("storage_configs", "stor_01TEST", "credentials")

aad_part = st.text(min_size=1, max_size=40).filter(lambda s: "|" not in s)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- the ring ------------------------------------------------------------------------------


@given(plaintext=st.binary(max_size=2048), table=aad_part, row_id=aad_part, field=aad_part)
def test_encrypt_then_decrypt_returns_the_plaintext(plaintext, table, row_id, field):
    """Any bytes encrypted for a place decrypt to the same bytes for that place."""
    aad = Aad(table, row_id, field)
    assert RING.decrypt(RING.encrypt(plaintext, aad=aad), aad=aad) == plaintext


def test_ciphertext_format_is_version_key_id_nonce_then_gcm_output():
    """A blob is 0x01, the 4 key-id bytes, a 12-byte nonce, then AES-GCM over the AAD bytes."""
    plaintext = b"s3cr3t credentials"
    blob = RING.encrypt(plaintext, aad=AAD)
    assert blob[0] == 0x01
    assert blob[1:5] == bytes.fromhex(key_id(KEY_A))
    assert len(blob) == 1 + 4 + 12 + len(plaintext) + 16
    assert AAD.encoded == b"paulyops:v1|storage_configs|stor_01TEST|credentials"
    assert AESGCM(KEY_A).decrypt(blob[5:17], blob[17:], AAD.encoded) == plaintext
    assert RING.key_id_of(blob) == RING.active_key_id == key_id(KEY_A)


def test_each_encryption_uses_a_fresh_nonce():
    """Encrypting the same value twice gives different blobs."""
    assert RING.encrypt(b"x", aad=AAD) != RING.encrypt(b"x", aad=AAD)


@pytest.mark.parametrize(
    "other",
    [
        Aad("storage_configs", "stor_01OTHER", "credentials"),
        Aad("storage_configs", "stor_01TEST", "settings"),
        Aad("agent_installations", "stor_01TEST", "credentials"),
    ],
)
def test_ciphertext_does_not_decrypt_for_another_place(other):
    """A blob moved to another row, field or table fails authentication."""
    blob = RING.encrypt(b"value", aad=AAD)
    with pytest.raises(DecryptionError, match="authentication failed"):
        RING.decrypt(blob, aad=other)


@given(data=st.data())
def test_any_flipped_byte_is_rejected(data):
    """Changing any bit of any byte of a blob makes decryption fail."""
    blob = bytearray(RING.encrypt(b"tamper me", aad=AAD))
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecryptionError):
        RING.decrypt(bytes(blob), aad=AAD)


@pytest.mark.parametrize("blob", [b"", b"\x01abc", b"\x02" + bytes(40)])
def test_malformed_blobs_are_rejected(blob):
    """Too short or wrong-version blobs raise DecryptionError."""
    with pytest.raises(DecryptionError, match="ciphertext"):
        RING.decrypt(blob, aad=AAD)


def test_errors_never_contain_key_material_or_plaintext():
    """Decryption error messages name key ids, not keys or plaintext."""
    marker = b"TOP-SECRET-PLAINTEXT"
    blob = RING.encrypt(marker, aad=AAD)
    messages = []
    for ring, aad in [(RING, Aad("t", "r", "f")), (KeyRing(KEY_B), AAD)]:
        with pytest.raises(DecryptionError) as info:
            ring.decrypt(blob, aad=aad)
        messages.append(str(info.value))
    for message in messages:
        assert marker.decode() not in message
        for key in (KEY_A, KEY_B):
            assert b64(key) not in message
            assert key.hex() not in message
    assert key_id(KEY_A) in messages[1]
    assert b64(KEY_A) not in repr(RING)


def test_unknown_key_names_the_key_id():
    """A blob from a key outside the ring fails with an error naming that key id."""
    blob = KeyRing(KEY_B).encrypt(b"x", aad=AAD)
    with pytest.raises(DecryptionError) as info:
        RING.decrypt(blob, aad=AAD)
    assert info.value.key_id == key_id(KEY_B)
    assert key_id(KEY_B) in str(info.value)


def test_previous_key_decrypts_within_grace_and_fails_after():
    """An old key opens its blobs until its retirement time, then names itself in the error."""
    old_blob = KeyRing(KEY_B).encrypt(b"old", aad=AAD)
    deadline = datetime(2030, 1, 31, tzinfo=UTC)
    now = [deadline - timedelta(seconds=1)]
    ring = KeyRing(KEY_A, [PreviousKey(KEY_B, retired_after=deadline)], clock=lambda: now[0])
    assert ring.decrypt(old_blob, aad=AAD) == b"old"
    now[0] = deadline
    with pytest.raises(RetiredKeyError) as info:
        ring.decrypt(old_blob, aad=AAD)
    assert info.value.key_id == key_id(KEY_B)
    assert key_id(KEY_B) in str(info.value)
    assert ring.decrypt(ring.encrypt(b"new", aad=AAD), aad=AAD) == b"new"


def test_previous_key_without_deadline_keeps_decrypting():
    """A previous key with no rotation time has no grace deadline."""
    ring = KeyRing(KEY_A, [KEY_B], clock=lambda: datetime(2999, 1, 1, tzinfo=UTC))
    blob = KeyRing(KEY_B).encrypt(b"old", aad=AAD)
    assert ring.decrypt(blob, aad=AAD) == b"old"
    assert ring.retired_after(key_id(KEY_B)) is None


def test_aad_rejects_ambiguous_parts():
    """An empty part or a part with '|' cannot build associated data."""
    with pytest.raises(ValueError, match="row_id"):
        Aad("t", "a|b", "f")
    with pytest.raises(ValueError, match="table"):
        Aad("", "r", "f")


def test_from_settings_applies_rotation_times_and_grace_days(tmp_path):
    """The ring reads both key variables, and each rotation time plus the grace days."""
    rotated = datetime(2030, 1, 1, tzinfo=UTC)
    (tmp_path / ENV_FILE_NAME).write_text(
        f"PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT={key_id(KEY_B)}@{rotated.isoformat()}\n"
        "PAULYOPS_ENCRYPTION_GRACE_DAYS=10\n"
    )
    settings = load_settings(
        root=tmp_path,
        environ={"ENCRYPTION_KEY": b64(KEY_A), "ENCRYPTION_KEYS_PREVIOUS": b64(KEY_B)},
    )
    ring = KeyRing.from_settings(settings, environ={})
    assert ring.active_key_id == key_id(KEY_A)
    assert ring.key_ids == (key_id(KEY_A), key_id(KEY_B))
    assert ring.retired_after(key_id(KEY_B)) == rotated + timedelta(days=10)
    default = KeyRing.from_settings(settings, environ={"PAULYOPS_ENCRYPTION_GRACE_DAYS": ""})
    assert default.retired_after(key_id(KEY_B)) == rotated + timedelta(days=30)


def test_from_settings_requires_an_encryption_key(tmp_path):
    """Without ENCRYPTION_KEY the ring refuses with a ConfigError naming the variable."""
    settings = load_settings(root=tmp_path, environ={})
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        KeyRing.from_settings(settings, environ={})


def test_from_settings_rejects_malformed_rotation_times(tmp_path):
    """A malformed rotation entry is a ConfigError naming the variable."""
    settings = load_settings(root=tmp_path, environ={"ENCRYPTION_KEY": b64(KEY_A)})
    with pytest.raises(ConfigError, match="PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT"):
        KeyRing.from_settings(
            settings, environ={"PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT": "nothex@yesterday"}
        )


def test_openssl_fips_enabled_reports_a_bool():
    """The FIPS probe answers True or False without raising."""
    assert isinstance(openssl_fips_enabled(), bool)


# --- rotate_env_file -----------------------------------------------------------------------


def write_env(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o644)


def test_rotate_keeps_every_other_value_and_writes_mode_0600(tmp_path):
    """Rotation changes only the key lines, moves the old key first, and leaves mode 0600."""
    env = tmp_path / ENV_FILE_NAME
    old, older = new_encryption_key(), new_encryption_key()
    write_env(
        env,
        "# instance settings\n"
        "JWT_SECRET=keep-me-jwt-secret-value-0123456789\n"
        f"ENCRYPTION_KEY={old}\n"
        f"ENCRYPTION_KEYS_PREVIOUS={older}\n"
        "\n"
        'PAULYOPS_PUBLIC_URL="https://ops.example.com"\n'
        "export RETENTION_DAYS=90\n",
    )
    moment = datetime(2030, 5, 1, 12, tzinfo=UTC)
    result = rotate_env_file(env, environ={}, now=moment)

    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = read_env_file(env)
    assert values["JWT_SECRET"] == "keep-me-jwt-secret-value-0123456789"
    assert values["PAULYOPS_PUBLIC_URL"] == "https://ops.example.com"
    assert values["RETENTION_DAYS"] == "90"
    assert "# instance settings" in env.read_text()
    assert values["ENCRYPTION_KEYS_PREVIOUS"] == f"{old},{older}"
    assert key_id(decode_key(values["ENCRYPTION_KEY"])) == result.new_key_id
    assert values["ENCRYPTION_KEY"] not in (old, older)
    old_id = key_id(decode_key(old))
    assert values["PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT"] == f"{old_id}@{moment.isoformat()}"
    assert result.previous_key_ids == (old_id, key_id(decode_key(older)))
    assert result.retire_after == moment + timedelta(days=30)
    assert not list(tmp_path.glob("*.tmp"))


def test_rotation_result_hides_secrets_until_asked(tmp_path):
    """The result's repr shows key ids only; copy_lines gives the values to copy."""
    env = tmp_path / ENV_FILE_NAME
    old = new_encryption_key()
    write_env(env, f"ENCRYPTION_KEY={old}\n")
    result = rotate_env_file(env, environ={"ENCRYPTION_KEY": "x"})
    new = read_env_file(env)["ENCRYPTION_KEY"]
    assert old not in repr(result)
    assert new not in repr(result)
    assert f"ENCRYPTION_KEY={new}" in result.copy_lines()
    assert f"ENCRYPTION_KEYS_PREVIOUS={old}" in result.copy_lines()
    assert result.shadowed_by_environment == ("ENCRYPTION_KEY",)


def test_rotated_file_builds_a_ring_that_opens_old_blobs(tmp_path):
    """After rotation, settings re-read from the file decrypt old values and encrypt anew."""
    env = tmp_path / ENV_FILE_NAME
    write_env(env, f"ENCRYPTION_KEY={b64(KEY_A)}\n")
    old_blob = RING.encrypt(b"before", aad=AAD)
    result = rotate_env_file(env, environ={})
    ring = KeyRing.from_settings(load_settings(root=tmp_path, environ={}), environ={})
    assert ring.active_key_id == result.new_key_id
    assert ring.decrypt(old_blob, aad=AAD) == b"before"
    assert ring.retired_after(key_id(KEY_A)) == result.retire_after


def test_rotate_twice_keeps_both_old_keys(tmp_path):
    """Two rotations keep both older keys, newest first, each with its rotation time."""
    env = tmp_path / ENV_FILE_NAME
    write_env(env, f"ENCRYPTION_KEY={b64(KEY_A)}\n")
    first = rotate_env_file(env, environ={}, now=datetime(2030, 1, 1, tzinfo=UTC))
    second = rotate_env_file(env, environ={}, now=datetime(2030, 2, 1, tzinfo=UTC))
    assert second.previous_key_ids == (first.new_key_id, key_id(KEY_A))
    rotated = read_env_file(env)["PAULYOPS_ENCRYPTION_KEYS_ROTATED_AT"]
    assert f"{key_id(KEY_A)}@2030-01-01" in rotated
    assert f"{first.new_key_id}@2030-02-01" in rotated


def test_rotate_refuses_without_a_key_in_the_file(tmp_path):
    """No file, or a file without ENCRYPTION_KEY, is a ConfigError."""
    env = tmp_path / ENV_FILE_NAME
    with pytest.raises(ConfigError, match="no file"):
        rotate_env_file(env, environ={})
    write_env(env, "JWT_SECRET=abc\n")
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        rotate_env_file(env, environ={})
    assert env.read_text() == "JWT_SECRET=abc\n"
