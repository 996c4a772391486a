"""How ``tuf``'s client reads a catalog: from a local folder or over http(s).

Both implement ``tuf.ngclient.FetcherInterface``; the client caps every download at the
length the metadata signed (or at its configured maximum for files whose length is not
signed), so neither fetcher needs a limit of its own. The http fetcher adds a wall-clock
deadline per file to tuf's socket timeout, so a server that drips one byte at a time
cannot hold a refresh for ever.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, Final
from urllib.parse import unquote, urlsplit

import tuf
import urllib3
from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from paulyops import __version__

CHUNK_SIZE: Final = 64 * 1024
#: Seconds without a byte before a download fails (connect and read gaps).
SOCKET_TIMEOUT_S: Final = 10.0
#: Seconds one file may take in total.
DOWNLOAD_DEADLINE_S: Final = 120.0


class _ClosingFetcher(FetcherInterface):
    """tuf's ``download_file``, but the chunk stream is closed the moment it stops.

    tuf abandons the stream when a download passes its cap; left to the garbage
    collector, its socket or file would stay open until some later collection.
    """

    @contextlib.contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        """Download ``url`` into a temporary file, refusing more than ``max_length`` bytes.

        Raises:
            exceptions.DownloadLengthMismatchError: more bytes than ``max_length``.
            exceptions.DownloadError: the download failed.
        """
        with tempfile.TemporaryFile() as temp_file:
            chunks = self.fetch(url)
            try:
                received = 0
                for chunk in chunks:
                    received += len(chunk)
                    if received > max_length:
                        raise exceptions.DownloadLengthMismatchError(
                            f"{url}: more than the {max_length} bytes allowed; stopped"
                        )
                    temp_file.write(chunk)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            temp_file.seek(0)
            yield temp_file


class DirectoryFetcher(_ClosingFetcher):
    """Read ``file://`` URLs under one folder (an air-gapped site's catalog copy).

    Paths outside the folder, symlinks and anything but regular files are refused; a
    missing file answers like HTTP 404, which is how tuf learns there is no newer root.
    """

    def __init__(self, root: Path, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.root = Path(os.path.abspath(root))
        self.chunk_size = chunk_size

    def _path(self, url: str) -> Path:
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise exceptions.DownloadError(f"{url}: not a file:// URL of this catalog")
        path = Path(os.path.normpath(unquote(parts.path)))
        if not path.is_relative_to(self.root):
            raise exceptions.DownloadError(f"{url}: outside the catalog folder {self.root}")
        return path

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = self._path(url)
        try:
            # O_NONBLOCK: opening a FIFO planted in the folder must not hang the refresh.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise exceptions.DownloadHTTPError(f"{url}: no such file", 404) from None
        except OSError as err:
            raise exceptions.DownloadError(f"{url}: {err.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise exceptions.DownloadError(f"{url}: not a regular file")
        return self._chunks(os.fdopen(fd, "rb"))

    def _chunks(self, handle: BinaryIO) -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(self.chunk_size):
                yield chunk


class HttpFetcher(_ClosingFetcher):
    """Read http(s) URLs with a socket timeout and a total deadline per file.

    Like tuf's own urllib3 fetcher, but a body not read to its end (tuf stopped at the
    length cap) closes its connection instead of returning it to the pool, and
    :meth:`close` releases every socket, so an aborted download leaves nothing open.
    """

    def __init__(
        self,
        *,
        socket_timeout: float = SOCKET_TIMEOUT_S,
        deadline: float = DOWNLOAD_DEADLINE_S,
    ) -> None:
        self.socket_timeout = socket_timeout
        self.deadline = deadline
        self._pool = urllib3.PoolManager(
            headers={"User-Agent": f"PaulyOps/{__version__} python-tuf/{tuf.__version__}"},
            retries=urllib3.Retry(total=2, redirect=0, raise_on_status=False),
        )

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._pool.request(
                "GET", url, preload_content=False, timeout=urllib3.Timeout(self.socket_timeout)
            )
        except urllib3.exceptions.MaxRetryError as err:
            if isinstance(err.reason, urllib3.exceptions.TimeoutError):
                raise exceptions.SlowRetrievalError(f"{url}: timed out") from err
            raise
        if response.status >= 400:
            response.close()
            raise exceptions.DownloadHTTPError(
                f"{url}: HTTP status {response.status}", response.status
            )
        return self._chunks(response, url, time.monotonic() + self.deadline)

    def _chunks(
        self, response: urllib3.BaseHTTPResponse, url: str, deadline: float
    ) -> Iterator[bytes]:
        try:
            # read1 returns what has arrived (stream() would wait for a full chunk), so
            # the deadline is checked after every arrival, however small.
            while chunk := response.read1(CHUNK_SIZE):
                if time.monotonic() > deadline:
                    raise exceptions.SlowRetrievalError(
                        f"{url}: took longer than {self.deadline:g} s in total"
                    )
                yield chunk
        except urllib3.exceptions.TimeoutError as err:
            raise exceptions.SlowRetrievalError(f"{url}: timed out") from err
        finally:
            response.close()
            response.release_conn()

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.clear()


__all__ = ["DOWNLOAD_DEADLINE_S", "SOCKET_TIMEOUT_S", "DirectoryFetcher", "HttpFetcher"]
