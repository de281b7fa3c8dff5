"""What a proxy opens on the server and reads piece by piece: ``RemoteFile`` (a File's bytes) and ``watch`` iteration."""
from __future__ import annotations

import io
import time
from typing import Any, Iterator

from pyzdb.client.connection import Connection

WATCH_WAIT = 0.5    # seconds a replica may hold a watch before answering "nothing new"
WATCH_POLL = 0.05   # pause between watch polls answered at once


class RemoteFile(io.RawIOBase):
    """A read-only file object over a File reference, read in chunks through the server."""

    def __init__(self, conn: Connection, path: list, chunk_size: int) -> None:
        super().__init__()
        self._conn, self._path, self._chunk, self._offset = conn, path, chunk_size, 0
        self.size = self._read_at(0, 0)["size"]

    def _read_at(self, offset: int, size: int) -> dict:
        return self._conn.read({"op": "file_read", "path": self._path, "offset": offset, "size": size})

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read_at(self._offset, min(len(buffer), self._chunk, 4 << 20))["data"]
        buffer[:len(data)] = data
        self._offset += len(data)
        return len(data)

    def chunks(self) -> Iterator[bytes]:
        """Yield the file's contents chunk by chunk."""
        while True:
            data = self._read_at(self._offset, self._chunk)["data"]
            if not data:
                return
            self._offset += len(data)
            yield data


def watch_changes(conn: Connection, path: list, since: int | None, timeout: float | None) -> Iterator[dict]:
    """The iterator behind ``Proxy.watch``; "from now" is fixed here, when watching is asked for."""
    if since is None:
        since = max(conn.read({"op": "watch", "path": path, "since": None}, "eventual")["seq"], conn.last_seq)
    return _long_poll(conn, path, since, timeout)


def _long_poll(conn: Connection, path: list, since: int, timeout: float | None) -> Iterator[dict]:
    """Ask for the changes after the last seq seen, again and again."""
    wait = max(0.05, min(WATCH_WAIT, conn.attempt_timeout / 2))   # a held watch must not look like a lost reply
    quiet_since = time.monotonic()
    while True:
        asked, before = time.monotonic(), since
        page = conn.read({"op": "watch", "path": path, "since": since, "wait": wait}, "eventual")
        since = max(since, page["seq"])
        for change in page["changes"]:
            yield change
        now = time.monotonic()
        if page["changes"]:
            quiet_since = now
        elif timeout is not None and now - quiet_since >= timeout:
            return
        elif since == before and now - asked < wait / 2:
            time.sleep(WATCH_POLL)   # answered at once (the RW server does not hold watches)
