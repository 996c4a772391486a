"""The fetchers tuf's client reads catalogs through: a folder and http(s)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tuf.api import exceptions

from paulyops.services.marketplace.fetchers import DirectoryFetcher, HttpFetcher


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "timestamp.json").write_bytes(b"{}" * 10)
    (tmp_path / "secret.txt").write_bytes(b"not for tuf")
    return root


def test_directory_fetcher_reads_files_of_its_folder(folder: Path) -> None:
    """A file under the folder is read whole; a missing one answers like HTTP 404."""
    fetcher = DirectoryFetcher(folder, chunk_size=3)
    url = (folder / "metadata" / "timestamp.json").as_uri()
    assert fetcher.download_bytes(url, 100) == b"{}" * 10
    with pytest.raises(exceptions.DownloadHTTPError) as caught:
        fetcher.download_bytes((folder / "metadata" / "2.root.json").as_uri(), 100)
    assert caught.value.status_code == 404


def test_directory_fetcher_caps_the_length(folder: Path) -> None:
    """More bytes than allowed stop the read with tuf's length error."""
    with pytest.raises(exceptions.DownloadLengthMismatchError, match="more than the 5 bytes"):
        DirectoryFetcher(folder).download_bytes(
            (folder / "metadata" / "timestamp.json").as_uri(), 5
        )


def test_directory_fetcher_refuses_paths_outside_links_and_fifos(folder: Path) -> None:
    """Nothing outside the folder, no symlink and no special file is ever read."""
    fetcher = DirectoryFetcher(folder)
    outside = (folder / "metadata" / ".." / ".." / "secret.txt").as_uri()
    with pytest.raises(exceptions.DownloadError, match="outside the catalog folder"):
        fetcher.download_bytes(outside, 100)
    (folder / "metadata" / "snapshot.json").symlink_to(folder.parent / "secret.txt")
    with pytest.raises(exceptions.DownloadError):
        fetcher.download_bytes((folder / "metadata" / "snapshot.json").as_uri(), 100)
    os.mkfifo(folder / "metadata" / "targets.json")
    with pytest.raises(exceptions.DownloadError, match="not a regular file"):
        fetcher.download_bytes((folder / "metadata" / "targets.json").as_uri(), 100)
    with pytest.raises(exceptions.DownloadError, match="not a file:// URL"):
        fetcher.download_bytes("http://example.invalid/metadata/root.json", 100)


class _Drip(BaseHTTPRequestHandler):
    """Sends one byte every 0.2 s, for ever (until the client hangs up)."""

    def log_message(self, format: str, *args: Any) -> None:  # stdlib's signature
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def drip() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/timestamp.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_fetcher_gives_up_on_a_slow_drip(drip: str) -> None:
    """A server sending a byte now and then is cut off at the total deadline."""
    fetcher = HttpFetcher(socket_timeout=5, deadline=0.5)
    started = time.monotonic()
    with pytest.raises(exceptions.SlowRetrievalError, match=r"took longer than 0\.5 s"):
        fetcher.download_bytes(drip, 10_000)
    assert time.monotonic() - started < 3
    fetcher.close()


def test_http_fetcher_reports_http_errors(drip: str) -> None:
    """An unreachable server is a download error, not a hang."""
    fetcher = HttpFetcher(socket_timeout=1)
    with pytest.raises(exceptions.DownloadError):
        fetcher.download_bytes("http://127.0.0.1:9/metadata/root.json", 100)
    fetcher.close()
