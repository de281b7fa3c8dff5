"""What ``client()`` returns: the pair ``(db, handle)``, usable in ``with``; the handle closes the client."""
from __future__ import annotations

from typing import Any

from pyzdb.client.connection import Connection


class ClientHandle:
    """The second value of ``db, socket = client()``: the client's connection as a handle.

    ``socket.close()`` (or ``db.close()``) closes the client's sockets and
    stops a lock's lease renewal; any request after that raises
    ``pyzdb.errors.ClientClosed``. It is not a zmq socket: messages go
    through ``db`` only.

    >>> db, socket = client()          # doctest: +SKIP
    >>> socket.client_id, socket.rw_uri  # doctest: +SKIP
    >>> socket.close()                 # doctest: +SKIP
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def client_id(self) -> bytes:
        """The id every request of this client carries (exactly-once retries are keyed by it)."""
        return self._conn.client_id

    @property
    def rw_uri(self) -> str:
        """The read-write address."""
        return self._conn.rw_uri

    @property
    def closed(self) -> bool:
        """True once the client is closed."""
        return self._conn.closed

    def close(self) -> None:
        """Close the client (idempotent)."""
        self._conn.close()

    def __repr__(self) -> str:
        return f"<pyzdb client {self._conn.rw_uri} {'closed' if self.closed else 'open'}>"


class ClientPair(tuple):
    """``(db, handle)``; ``with client(...) as (db, socket):`` closes the client when the block ends."""

    __slots__ = ()

    def __new__(cls, db: Any, handle: ClientHandle) -> ClientPair:
        return super().__new__(cls, (db, handle))

    def __enter__(self) -> ClientPair:
        return self

    def __exit__(self, *exc: Any) -> None:
        self[1].close()
