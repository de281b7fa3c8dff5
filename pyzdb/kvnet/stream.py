"""What the KT and TT update-log readers share: iteration over one connection, closing from any thread, ``with``."""
from __future__ import annotations

from typing import Any, Iterator

from pyzdb.errors import StoreConnectionError
from pyzdb.kvnet.pool import KvConnection


class LogStream:
    """An iterator of events read from ``conn`` by ``_next_event`` (which a reader defines).

    ``close()`` from any thread ends the iteration: the blocked read fails and
    the loop stops instead of raising. Any other failure closes the connection.
    """

    def __init__(self, conn: KvConnection, ts: int) -> None:
        self._conn, self.ts, self._closed = conn, ts, False

    def _next_event(self) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            return self._next_event()
        except StoreConnectionError:
            if self._closed:
                raise StopIteration from None
            self._conn.close()
            raise

    def close(self) -> None:
        """Stop the stream and close its connection."""
        self._closed = True
        self._conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
