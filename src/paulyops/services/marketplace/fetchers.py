"""How ``tuf``'s client reads a catalog: from a local folder or over http(s).

Both implement ``tuf.ngclient.FetcherInterface``; the client caps every download at the
length the metadata signed (or at its configured maximum for files whose length is not
signed), so neither fetcher needs a limit of its own. The http fetcher adds a wall-clock
deadline per file to tuf's socket timeout, so a server that drips one byte at a time
cannot hold a refresh for ever.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import unquote, urlsplit

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from paulyops import __version__

CHUNK_SIZE: Final = 64 * 1024
#: Seconds without a byte before a download fails (connect and read gaps).
SOCKET_TIMEOUT_S: Final = 10
#: Seconds one file may take in total.
DOWNLOAD_DEADLINE_S: Final = 120.0


class DirectoryFetcher(FetcherInterface):
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


class HttpFetcher(Urllib3Fetcher):
    """tuf's urllib3 fetcher with a socket timeout and a total deadline per file."""

    def __init__(
        self,
        *,
        socket_timeout: int = SOCKET_TIMEOUT_S,
        deadline: float = DOWNLOAD_DEADLINE_S,
    ) -> None:
        super().__init__(
            socket_timeout=socket_timeout,
            chunk_size=CHUNK_SIZE,
            app_user_agent=f"PaulyOps/{__version__}",
        )
        self.deadline = deadline

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = super()._fetch(url)
        return self._within(chunks, time.monotonic() + self.deadline, url)

    def _within(self, chunks: Iterator[bytes], deadline: float, url: str) -> Iterator[bytes]:
        for chunk in chunks:
            if time.monotonic() > deadline:
                raise exceptions.SlowRetrievalError(
                    f"{url}: took longer than {self.deadline:g} s in total"
                )
            yield chunk


__all__ = ["DOWNLOAD_DEADLINE_S", "SOCKET_TIMEOUT_S", "DirectoryFetcher", "HttpFetcher"]
