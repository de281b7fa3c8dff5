"""Sockets for the store clients: one buffered connection, a small thread-safe pool, request batching.

Both the Kyoto Tycoon and the Tokyo Tyrant clients stand on this module; it
knows bytes and sockets, never what a command means.
"""
from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from pyzdb.errors import StoreConnectionError, StoreTimeout
from pyzdb.kvnet.errors import ServerConnectionError, ServerError, ServerTimeoutError

T = TypeVar("T")

_RECV_SIZE = 256 * 1024
_MAX_RECV = 16 << 20            # the buffer grows by at most this per recv: by what arrives, not by what a header claims
DEFAULT_MAX_LENGTH = 1 << 29    # the most bytes one length header may ask for (a key and a value of 256 MiB)
_PAIR_HEAD = struct.Struct(">II")


class KvConnection:
    """One TCP connection to a store server with a read buffer.

    >>> conn = KvConnection('127.0.0.1', 1978, timeout=5.0, name='Kyoto Tycoon')   # doctest: +SKIP
    >>> conn.send(b'...'); magic = conn.read(1)                                  # doctest: +SKIP

    Socket failures are raised as ``ServerTimeoutError`` or ``ServerConnectionError`` (a ``StoreTimeout`` / ``StoreConnectionError``).
    """

    def __init__(self, host: str, port: int, *, timeout: float | None, name: str,
                 max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.where = f"{name} at {host}:{port}"
        self.max_length = max_length
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except socket.timeout as exc:
            raise ServerTimeoutError(f"connecting to {self.where} timed out after {timeout} s") from exc
        except OSError as exc:
            raise ServerConnectionError(f"cannot connect to {self.where}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._pos = 0
        self.closed = False

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``."""
        try:
            self._sock.sendall(data)
        except socket.timeout as exc:
            raise ServerTimeoutError(f"sending to {self.where} timed out") from exc
        except OSError as exc:
            raise ServerConnectionError(f"sending to {self.where} failed: {exc}") from exc

    def _fill(self, need: int) -> None:
        """Receive until at least ``need`` unread bytes are buffered."""
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[:self._pos]
            self._pos = 0
        while len(self._buf) - self._pos < need:
            try:
                chunk = self._sock.recv(min(_MAX_RECV, max(_RECV_SIZE, need - (len(self._buf) - self._pos))))
            except socket.timeout as exc:
                raise ServerTimeoutError(f"{self.where} did not answer in time") from exc
            except OSError as exc:
                raise ServerConnectionError(f"receiving from {self.where} failed: {exc}") from exc
            if not chunk:
                raise ServerConnectionError(f"{self.where} closed the connection")
            self._buf += chunk

    def check_length(self, what: str, n: int, limit: int) -> int:
        """Return ``n``, a length the server sent, if within the protocol's ``limit`` and this client's maximum.

        Otherwise raise StoreProtocolError naming it, before anything is allocated for it.
        """
        if not 0 <= n <= min(limit, self.max_length):
            raise ServerError(f"{self.where} sent a {what} of {n:,}, over the limit of "
                                     f"{min(limit, self.max_length):,}: a broken or hostile server")
        return n

    def read(self, n: int) -> bytes:
        """Return exactly ``n`` bytes (at most ``max_length``)."""
        if n > self.max_length:
            self.check_length("length", n, n)
        if len(self._buf) - self._pos < n:
            self._fill(n)
        pos = self._pos
        self._pos = pos + n
        with memoryview(self._buf) as view:
            return bytes(view[pos:pos + n])

    def unpack(self, fmt: struct.Struct) -> tuple:
        """Read ``fmt.size`` bytes and unpack them."""
        if len(self._buf) - self._pos < fmt.size:
            self._fill(fmt.size)
        values = fmt.unpack_from(self._buf, self._pos)
        self._pos += fmt.size
        return values

    def read_pairs(self, n: int, limit: int = DEFAULT_MAX_LENGTH) -> list[tuple[bytes, bytes]]:
        """Read ``n`` × ``ksiz:u32 vsiz:u32 key value``, the pair layout both servers use (sizes up to ``limit``)."""
        pairs = []
        for _ in range(n):
            ksiz, vsiz = self.unpack(_PAIR_HEAD)
            data = self.read(self.check_length("key size", ksiz, limit) + self.check_length("value size", vsiz, limit))
            pairs.append((data[:ksiz], data[ksiz:]))
        return pairs

    def settimeout(self, timeout: float | None) -> None:
        """Change the timeout of every later send and receive."""
        self._sock.settimeout(timeout)

    def is_alive(self) -> bool:
        """True unless the peer closed the connection or sent unasked bytes while idle."""
        if self.closed or self._pos < len(self._buf):
            return False
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable  # an idle healthy connection has nothing to read

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if not self.closed:
            self.closed = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            except OSError:
                pass
            try:
                self._sock.close()
            except OSError:
                pass


class Pool:
    """A small thread-safe pool of connections made by ``connect``.

    >>> pool = Pool(lambda: KvConnection('127.0.0.1', 1978, timeout=5, name='KT'), size=4)   # doctest: +SKIP
    >>> pool.call(lambda conn: conn.read(1), idempotent=True)                              # doctest: +SKIP

    A connection found dead when taken from the pool is replaced. A call that
    fails because the connection broke is retried once on a new connection
    when ``idempotent``; any failure closes the connection it happened on.
    """

    def __init__(self, connect: Callable[[], KvConnection], size: int = 4) -> None:
        self._connect = connect
        self._size = max(1, size)
        self._idle: list[KvConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _acquire(self) -> KvConnection:
        while True:
            with self._lock:
                if self._closed:
                    raise ServerConnectionError("the client is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if conn.is_alive():
                return conn
            conn.close()

    def _release(self, conn: KvConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def call(self, fn: Callable[[KvConnection], T], *, idempotent: bool) -> T:
        """Run ``fn`` on a pooled connection and return its result."""
        attempts = 2 if idempotent else 1
        for attempt in range(attempts):
            conn = self._acquire()
            try:
                result = fn(conn)
            except StoreTimeout:
                conn.close()
                raise
            except StoreConnectionError:
                conn.close()
                if attempt + 1 >= attempts:
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def connect(self) -> KvConnection:
        """A new connection outside the pool (for long-lived streams such as replication)."""
        return self._connect()

    def close(self) -> None:
        """Close every idle connection; later calls raise ``StoreConnectionError``."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def batches(items: Sequence[T], size_of: Callable[[T], int], *,
            max_bytes: int = 4 << 20, max_count: int = 10_000) -> Iterator[Sequence[T]]:
    """Split ``items`` into runs of at most ``max_count`` items and about ``max_bytes`` bytes.

    >>> [list(b) for b in batches([b'aa', b'bb', b'c'], len, max_bytes=3)]
    [[b'aa'], [b'bb', b'c']]

    A single item larger than ``max_bytes`` forms a batch of its own.
    """
    start, total = 0, 0
    for i, item in enumerate(items):
        size = size_of(item)
        if i > start and (total + size > max_bytes or i - start >= max_count):
            yield items[start:i]
            start, total = i, 0
        total += size
    if start < len(items):
        yield items[start:]


def as_list(values: Iterable[T]) -> list[T]:
    """``values`` as a list, without copying one that already is."""
    return values if isinstance(values, list) else list(values)
