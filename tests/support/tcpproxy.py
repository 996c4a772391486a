"""A small threaded TCP proxy a test can switch off and on to simulate an outage.

Tests point ``DATABASE_URL`` or ``REDIS_URL`` at the proxy instead of the shared server.
:meth:`TcpProxy.disable` resets every open connection (so pooled connections break, as
when a server goes away) and resets each new one at once; :meth:`TcpProxy.enable`
forwards again. :meth:`TcpProxy.hang` simulates a server that accepts connections but
never answers (a stalled PostgreSQL, a hung Redis): open connections stop forwarding and
new ones are accepted and held without an answer; :meth:`TcpProxy.resume` resets those
and forwards again. The shared servers themselves are never touched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

# SO_LINGER on with a zero timeout: close() sends RST instead of FIN, like a dead peer.
_LINGER_RESET = struct.pack("ii", 1, 0)
_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Abort ``sock`` with a TCP reset; ignore errors (it may already be gone)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One proxied connection: the client's socket and ours to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._closed = False
        self._lock = threading.Lock()

    def close(self, *, reset: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port`` until told otherwise.

    Args:
        target_host: the real server's host.
        target_port: the real server's port.
        enabled: whether new connections are forwarded from the start.
    """

    def __init__(self, target_host: str, target_port: int, *, enabled: bool = True) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        # A short accept timeout lets the accept loop notice stop() promptly.
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._enabled = threading.Event()
        if enabled:
            self._enabled.set()
        self._stopping = threading.Event()
        self._hanging = threading.Event()
        self._held: set[socket.socket] = set()
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.refused = 0

    # --- control ------------------------------------------------------------------------
    @property
    def is_enabled(self) -> bool:
        """Whether new connections are forwarded."""
        return self._enabled.is_set()

    def start(self) -> TcpProxy:
        """Start accepting connections in a daemon thread; return ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._accept_loop, name=f"tcpproxy-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def disable(self) -> None:
        """Reset every open connection and every new one until :meth:`enable`."""
        self._enabled.clear()
        self.drop_connections()

    def enable(self) -> None:
        """Forward new connections again."""
        self._enabled.set()

    def hang(self) -> None:
        """Stop answering: bytes sent on open connections are swallowed, new ones held.

        Nothing is reset, so clients see a peer that accepts and never replies: only
        their own timeouts end their wait.
        """
        self._hanging.set()

    def resume(self) -> None:
        """End :meth:`hang`: reset the held and the swallowed connections, forward again."""
        self._hanging.clear()
        with self._lock:
            held = list(self._held)
            self._held.clear()
        for sock in held:
            _reset(sock)
        self.drop_connections()

    @property
    def is_hanging(self) -> bool:
        """Whether the proxy accepts but does not answer."""
        return self._hanging.is_set()

    def drop_connections(self) -> None:
        """Reset every connection open right now (the proxy stays as it is)."""
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            pair.close(reset=True)

    @property
    def open_connections(self) -> int:
        """How many proxied connections are open."""
        with self._lock:
            return len(self._pairs)

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stopping.set()
        self._enabled.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(OSError):
            self._listener.close()
        self.resume()
        self.drop_connections()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- forwarding ---------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._enabled.is_set():
                self.refused += 1
                _reset(client)
                continue
            client.settimeout(None)
            if self._hanging.is_set():
                with self._lock:
                    self._held.add(client)
                threading.Thread(
                    target=self._swallow, args=(client,), name="tcpproxy-held", daemon=True
                ).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, upstream)
            with self._lock:
                if not self._enabled.is_set():  # disabled while we were connecting
                    pair.close(reset=True)
                    continue
                self._pairs.add(pair)
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(pair, src, dst), name="tcpproxy-pump", daemon=True
                ).start()

    def _swallow(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(_CHUNK):
                pass
        with self._lock:
            self._held.discard(client)
        with contextlib.suppress(OSError):
            client.close()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                if self._hanging.is_set():
                    continue  # swallowed: the peer waits for an answer that never comes
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
        pair.close(reset=False)


__all__ = ["TcpProxy"]
