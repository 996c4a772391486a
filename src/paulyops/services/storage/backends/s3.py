"""Amazon S3 and S3-compatible services (MinIO, Ceph, Wasabi...).

A connection test asks for the bucket (``HeadBucket``), then writes and deletes a small
probe object under ``.paulyops-probe/``: that proves the credentials, the bucket and write
access, and leaves nothing behind. botocore's errors become messages a person can act on;
no message or detail ever contains the access key id or the secret access key.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)

from paulyops.services.storage.backends.base import PROBE_PREFIX, ConnectionCheck

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

TIMEOUT_SECONDS = 5
RETRIES = 1
DEFAULT_REGION = "us-east-1"

# Error codes and HTTP statuses meaning the credentials were refused.
DENIED = frozenset({"403", "AccessDenied", "Forbidden"})
UNKNOWN_KEY = frozenset({"InvalidAccessKeyId", "InvalidClientTokenId"})
BAD_SECRET = frozenset({"SignatureDoesNotMatch"})
MISSING_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})
MOVED = frozenset({"301", "PermanentRedirect", "AuthorizationHeaderMalformed"})


@dataclass(frozen=True, slots=True)
class S3Backend:
    """One bucket, reached with an access key.

    Args:
        bucket: the bucket's name.
        access_key_id: the access key id (kept out of ``repr``).
        secret_access_key: the secret access key (kept out of ``repr``).
        region: the bucket's region; ``us-east-1`` when not given.
        endpoint: the URL of an S3-compatible service; ``None`` for AWS.
    """

    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str | None = None
    endpoint: str | None = None
    allow_private_endpoints: bool = False

    @property
    def where(self) -> str:
        """The service, as people name it: the endpoint URL, or AWS S3 and the region."""
        return self.endpoint or f"AWS S3 ({self.region or DEFAULT_REGION})"

    def client(self) -> S3Client:
        """Return a client with short timeouts and one retry: a test must answer quickly."""
        config = Config(
            connect_timeout=TIMEOUT_SECONDS,
            read_timeout=TIMEOUT_SECONDS,
            # botocore's max_attempts counts retries, not the first attempt.
            retries={"max_attempts": RETRIES, "mode": "standard"},
            # S3-compatible services usually serve buckets as paths, not host names.
            s3={"addressing_style": "path"} if self.endpoint else {},
            # Newer botocore adds CRC checksums that several S3-compatible services refuse.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region or DEFAULT_REGION,
        )
        return session.client("s3", endpoint_url=self.endpoint or None, config=config)

    def test_connection(self) -> ConnectionCheck:
        """Check the bucket exists, the credentials are accepted and may write and delete."""
        details: dict[str, Any] = {
            "bucket": self.bucket,
            "region": self.region or DEFAULT_REGION,
            "endpoint": self.endpoint,
        }
        step = "head_bucket"
        key = f"{PROBE_PREFIX}/{secrets.token_hex(8)}"
        refused = None if self.allow_private_endpoints else _private_endpoint(self.endpoint)
        if refused is not None:
            # Tenants must not make the server probe its own network (SSRF).
            return ConnectionCheck(
                False,
                f"the endpoint points at a private, loopback or other non-public address "
                f"({refused}); an "
                "operator can allow that with PAULYOPS_STORAGE_PRIVATE_ENDPOINTS=true "
                "(e.g. for MinIO on your own network)",
                details,
            )
        try:
            client = self.client()
            client.head_bucket(Bucket=self.bucket)
            step = "put_object"
            client.put_object(Bucket=self.bucket, Key=key, Body=b"paulyops connection test")
            step = "delete_object"
            client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            result = self._client_error(err, step, key, details)
        except BotoCoreError as err:
            result = self._transport_error(err, details)
        else:
            result = ConnectionCheck(
                True,
                f"the bucket {self.bucket!r} on {self.where} is reachable and writable",
                details,
            )
        return self._scrubbed(result)

    def _client_error(
        self, err: ClientError, step: str, key: str, details: dict[str, Any]
    ) -> ConnectionCheck:
        error = err.response.get("Error", {})
        meta = err.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or meta.get("HTTPStatusCode") or "unknown")
        status = meta.get("HTTPStatusCode")
        details = {**details, "step": step, "code": code, "status": status}
        bucket = repr(self.bucket)
        if code in UNKNOWN_KEY:
            message = f"{self.where} does not know the access key id: check it"
        elif code in BAD_SECRET:
            message = "the secret access key does not match the access key id: check it"
        elif code in DENIED and step == "head_bucket":
            message = (
                f"{self.where} refused the credentials for the bucket {bucket}: check the "
                "access key id and secret access key, and that they may use this bucket"
            )
        elif code in DENIED and step == "put_object":
            message = (
                f"the bucket {bucket} is readable but these credentials may not write to it "
                "(s3:PutObject denied)"
            )
        elif code in DENIED:
            message = (
                f"the bucket {bucket} is writable but these credentials may not delete objects "
                f"(s3:DeleteObject denied); the probe object {key!r} was left behind"
            )
        elif code in MISSING_BUCKET:
            message = f"the bucket {bucket} does not exist on {self.where}"
        elif code in MOVED:
            actual = meta.get("HTTPHeaders", {}).get("x-amz-bucket-region")
            hint = f"it is in {actual}" if actual else "check the region"
            message = f"the bucket {bucket} is not in the region {details['region']}: {hint}"
        else:
            message = f"{self.where} answered {code} to {step} on the bucket {bucket}"
        return ConnectionCheck(False, message, details)

    def _transport_error(self, err: BotoCoreError, details: dict[str, Any]) -> ConnectionCheck:
        details = {**details, "error": type(err).__name__}
        if isinstance(err, SSLError):
            message = f"the TLS handshake with {self.where} failed: check the endpoint URL"
        elif isinstance(err, ConnectTimeoutError):
            message = f"{self.where} did not accept a connection within {TIMEOUT_SECONDS} seconds"
        elif isinstance(err, EndpointConnectionError):
            message = (
                f"could not reach {self.where}: check the endpoint URL and that the service "
                "is running"
            )
        elif isinstance(err, ReadTimeoutError):
            message = f"{self.where} did not answer within {TIMEOUT_SECONDS} seconds"
        elif isinstance(err, HTTPClientError):
            message = f"the connection to {self.where} failed: check the endpoint URL"
        elif isinstance(err, NoCredentialsError):
            message = "no access key id or secret access key is stored"
        elif isinstance(err, ParamValidationError):
            message = f"the bucket name {self.bucket!r} is not valid for S3"
        else:
            message = f"the S3 client failed before reaching {self.where} ({type(err).__name__})"
        return ConnectionCheck(False, message, details)

    def _scrubbed(self, result: ConnectionCheck) -> ConnectionCheck:
        """Belt and braces: blank out any credential that made it into the result."""
        secrets_ = [s for s in (self.access_key_id, self.secret_access_key) if s]

        def scrub(value: Any) -> Any:
            if isinstance(value, str):
                for secret in secrets_:
                    value = value.replace(secret, "***")
            return value

        return ConnectionCheck(
            result.ok,
            scrub(result.message),
            {name: scrub(value) for name, value in result.details.items()},
        )


__all__ = ["DEFAULT_REGION", "RETRIES", "TIMEOUT_SECONDS", "S3Backend"]


def _private_endpoint(endpoint: str | None) -> str | None:
    """Return the first address ``endpoint`` resolves to that is not on the public Internet.

    "Public" is :attr:`ipaddress.IPv4Address.is_global`: the IANA special-purpose
    registries, so private, loopback, link-local, shared (100.64.0.0/10, carrier-grade
    NAT), benchmarking, documentation and reserved ranges are all refused, not just a list
    we keep. IPv4 addresses carried inside IPv6 (mapped, 6to4, Teredo) are judged by the
    IPv4 address; multicast is refused too (never an S3 service).
    """
    if not endpoint:
        return None
    host = urlsplit(endpoint).hostname
    if not host:
        return None
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return None  # unresolvable: the connection attempt reports it
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not _is_public(address):
            return str(address)
    return None


# IANA special-purpose blocks that Python 3.11's is_global still calls global (its table
# was corrected in 3.12.4/3.13): IETF protocol assignments (192.0.0.0/24, where only .9 and
# .10 are globally reachable), the retired 6to4 relay anycast and local-use NAT64.
_NOT_GLOBAL_BEFORE_313 = tuple(
    ipaddress.ip_network(net) for net in ("192.0.0.0/24", "192.88.99.0/24", "64:ff9b:1::/48")
)
_GLOBAL_EXCEPTIONS = (ipaddress.ip_address("192.0.0.9"), ipaddress.ip_address("192.0.0.10"))


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address not in _GLOBAL_EXCEPTIONS and any(address in n for n in _NOT_GLOBAL_BEFORE_313):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        teredo = address.teredo
        embedded = address.ipv4_mapped or address.sixtofour or (teredo[1] if teredo else None)
        if embedded is not None and not _is_public(embedded):
            return False
    return address.is_global and not address.is_multicast
