"""Run moto's S3 emulator (``moto_server``) as a subprocess on a free port.

:func:`running_moto` starts ``moto_server`` from the interpreter's own ``bin`` directory,
waits until it answers and stops it on exit. With ``authenticate=True`` moto checks every
request's credentials against its (empty) IAM users, so any access key is refused with a
real 403: the only way to see S3's "wrong credentials" answer without AWS.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.support.server import free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
# moto accepts any credentials unless told to authenticate; these are placeholders.
DUMMY_KEY_ID = "AKIAMOTOTESTKEY00001"
DUMMY_SECRET = "moto-test-secret-value-0123456789"


@contextlib.contextmanager
def running_moto(log_path: Path, *, authenticate: bool = False) -> Iterator[str]:
    """Start ``moto_server`` and yield its endpoint URL; stop it on exit."""
    if not MOTO_SERVER.exists():
        pytest.skip(f"moto_server not installed next to {sys.executable} (uv sync installs it)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if authenticate:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = log_path.read_text()
                    raise RuntimeError(f"moto_server did not start: {output}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create a bucket on a moto endpoint."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
    )
    client.create_bucket(Bucket=bucket)


def object_keys(endpoint: str, bucket: str) -> list[str]:
    """Return the keys of every object in a bucket on a moto endpoint."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
    )
    return [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
