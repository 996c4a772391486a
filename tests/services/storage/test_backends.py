"""Storage backends: local folders for real, S3 against moto's emulator over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from paulyops.core.db.models import StorageConfig
from paulyops.services.storage.backends import (
    PROBE_PREFIX,
    ConnectionCheck,
    LocalBackend,
    S3Backend,
    backend_for,
)
from tests.support.moto import (
    DUMMY_KEY_ID,
    DUMMY_SECRET,
    create_bucket,
    object_keys,
    running_moto,
)
from tests.support.server import free_port

BUCKET = "acme-archive"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 endpoint holding the bucket ``acme-archive``."""
    with running_moto(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        create_bucket(endpoint, BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def moto_authenticating(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 endpoint that checks credentials, so it refuses every access key (403)."""
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    with running_moto(log, authenticate=True) as endpoint:
        yield endpoint


def _s3(endpoint: str, bucket: str = BUCKET) -> S3Backend:
    return S3Backend(
        bucket=bucket,
        access_key_id=DUMMY_KEY_ID,
        secret_access_key=DUMMY_SECRET,
        region="us-east-1",
        endpoint=endpoint,
        allow_private_endpoints=True,  # moto listens on loopback
    )


def test_s3_private_endpoint_is_refused_unless_allowed():
    """An endpoint on a private or loopback address is refused (no SSRF) unless allowed."""
    backend = S3Backend(
        bucket=BUCKET,
        access_key_id=DUMMY_KEY_ID,
        secret_access_key=DUMMY_SECRET,
        endpoint="http://169.254.169.254/latest",
    )
    check = backend.test_connection()
    assert not check.ok
    assert "non-public address (169.254.169.254)" in check.message
    assert "PAULYOPS_STORAGE_PRIVATE_ENDPOINTS" in check.message


@pytest.mark.parametrize(
    "host",
    [
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "100.127.255.254",
        "198.18.0.1",  # benchmarking
        "192.0.2.10",  # documentation
        "192.0.0.8",  # IETF protocol assignments
        "192.88.99.1",  # former 6to4 relay anycast
        "240.0.0.1",  # reserved
        "0.0.0.0",  # unspecified
        "10.1.2.3",
        "127.0.0.1",
        "224.0.0.1",  # multicast
        "[::1]",
        "[fc00::1]",  # unique local
        "[fe80::1]",
        "[::ffff:10.0.0.1]",  # IPv4-mapped private address
        "[2002:a00:1::1]",  # 6to4 around 10.0.0.1
        "[2001:db8::1]",  # documentation
    ],
)
def test_s3_endpoint_on_any_special_purpose_range_is_refused(host):
    """Every range that is not globally reachable is refused, not only RFC 1918 and
    loopback: the filter follows ipaddress' is_global, IPv4 inside IPv6 included."""
    backend = S3Backend(
        bucket=BUCKET,
        access_key_id=DUMMY_KEY_ID,
        secret_access_key=DUMMY_SECRET,
        endpoint=f"http://{host}:9000",
    )
    check = backend.test_connection()
    assert not check.ok
    assert "non-public address" in check.message, check.message


def test_s3_endpoint_on_a_public_address_passes_the_filter():
    """A public address is not refused by the filter (the connection itself may fail)."""
    from paulyops.services.storage.backends.s3 import _private_endpoint

    assert _private_endpoint("https://8.8.8.8") is None
    assert _private_endpoint("https://[2606:4700:4700::1111]") is None


def _assert_no_secrets(check: ConnectionCheck) -> None:
    text = f"{check.message} {check.details}"
    assert DUMMY_KEY_ID not in text
    assert DUMMY_SECRET not in text


# --- S3 against moto ---------------------------------------------------------------------


@pytest.mark.slow
def test_s3_with_a_bucket_and_credentials_connects_and_leaves_nothing(moto):
    """Correct settings connect; the probe object is written under the prefix and removed."""
    check = _s3(moto).test_connection()
    assert check.ok, check.message
    assert f"the bucket {BUCKET!r}" in check.message
    assert "writable" in check.message
    assert check.details["bucket"] == BUCKET
    assert not [key for key in object_keys(moto, BUCKET) if key.startswith(PROBE_PREFIX)]
    _assert_no_secrets(check)


@pytest.mark.slow
def test_s3_missing_bucket_is_named(moto):
    """A bucket that does not exist fails with a message naming it."""
    check = _s3(moto, bucket="no-such-bucket").test_connection()
    assert not check.ok
    assert check.message == f"the bucket 'no-such-bucket' does not exist on {moto}"
    assert check.details["code"] in {"404", "NoSuchBucket"}
    _assert_no_secrets(check)


@pytest.mark.slow
def test_s3_refused_credentials_say_so(moto_authenticating):
    """An S3 service that refuses the access key (real 403 from moto) reports wrong credentials."""
    check = _s3(moto_authenticating).test_connection()
    assert not check.ok
    assert "refused the credentials" in check.message
    assert "access key id and secret access key" in check.message
    assert check.details["status"] == 403
    _assert_no_secrets(check)


@pytest.mark.slow
def test_s3_unreachable_endpoint_says_so():
    """An endpoint where nothing listens fails quickly with an 'unreachable' message."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    check = _s3(endpoint).test_connection()
    assert not check.ok
    assert check.message.startswith(f"could not reach {endpoint}")
    assert check.details["error"] == "EndpointConnectionError"
    _assert_no_secrets(check)


# --- S3 error mapping (no server: botocore's error shapes) -------------------------------


@pytest.mark.parametrize(
    ("step", "code", "expected"),
    [
        ("head_bucket", "InvalidAccessKeyId", "does not know the access key id"),
        ("head_bucket", "SignatureDoesNotMatch", "secret access key does not match"),
        ("head_bucket", "403", "refused the credentials"),
        ("put_object", "AccessDenied", "may not write to it"),
        ("delete_object", "AccessDenied", "may not delete objects"),
        ("head_bucket", "NoSuchBucket", "does not exist"),
        ("head_bucket", "InternalError", "answered InternalError to head_bucket"),
    ],
)
def test_s3_error_codes_map_to_clear_messages(step, code, expected):
    """Each S3 error code becomes a message naming the cause, without the credentials."""
    backend = S3Backend(bucket=BUCKET, access_key_id=DUMMY_KEY_ID, secret_access_key=DUMMY_SECRET)
    error = ClientError(
        {
            # S3 echoes the access key id in some error bodies: it must not reach the message.
            "Error": {"Code": code, "Message": f"denied for {DUMMY_KEY_ID}"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        step,
    )
    check = backend._scrubbed(backend._client_error(error, step, "probe", {}))
    assert not check.ok
    assert expected in check.message
    _assert_no_secrets(check)


def test_s3_repr_hides_the_credentials():
    """The backend's repr names the bucket but neither key."""
    text = repr(
        S3Backend(bucket=BUCKET, access_key_id=DUMMY_KEY_ID, secret_access_key=DUMMY_SECRET)
    )
    assert BUCKET in text
    assert DUMMY_KEY_ID not in text
    assert DUMMY_SECRET not in text


# --- local folders -----------------------------------------------------------------------


def test_local_existing_folder_is_writable_and_left_clean(tmp_path: Path):
    """An existing folder passes and the probe file is removed."""
    check = LocalBackend(tmp_path).test_connection()
    assert check.ok, check.message
    assert check.message == f"the folder {tmp_path} exists and is writable"
    assert list(tmp_path.iterdir()) == []


def test_local_missing_folder_is_created(tmp_path: Path):
    """A missing folder is created, parents included."""
    folder = tmp_path / "a" / "b"
    check = LocalBackend(folder).test_connection()
    assert check.ok, check.message
    assert folder.is_dir()
    assert check.details["created"] is True


def test_local_file_in_the_way_fails(tmp_path: Path):
    """A file where the folder should be fails with a clear message."""
    path = tmp_path / "file"
    path.write_text("x")
    check = LocalBackend(path).test_connection()
    assert not check.ok
    assert check.message == f"{path} exists but is not a folder"


# --- the factory ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["google-drive", "dropbox"])
def test_oauth_providers_have_no_backend_yet(provider, tmp_path: Path):
    """Google Drive and Dropbox return no backend: their OAuth flow is not built."""
    config = StorageConfig(provider=provider, name=provider, settings={})
    assert backend_for(config, data_dir=tmp_path) is None


def test_local_config_uses_the_data_dir_for_relative_paths(tmp_path: Path):
    """A relative local path resolves inside the organization's own storage folder."""
    config = StorageConfig(
        provider="local", name="files", settings={"path": "docs"}, organization_id="org_a"
    )
    backend = backend_for(config, data_dir=tmp_path)
    assert backend == LocalBackend((tmp_path / "storage" / "org_a" / "docs").resolve())


def test_local_relative_path_cannot_climb_into_another_organization(tmp_path: Path):
    """'../org_b' is refused: a tenant cannot reach another tenant's folder."""
    config = StorageConfig(
        provider="local", name="x", settings={"path": "../org_b"}, organization_id="org_a"
    )
    with pytest.raises(ValueError, match="must stay inside"):
        backend_for(config, data_dir=tmp_path)
