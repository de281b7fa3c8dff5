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
    expired = ExpiredKeys()
    while True:
        asked, before = time.monotonic(), since
        page = conn.read({"op": "watch", "path": path, "since": since, "wait": wait}, "eventual")
        since = max(since, page["seq"])
        changes = expired.changes(page)
        yield from changes
        now = time.monotonic()
        if changes:
            quiet_since = now
        elif timeout is not None and now - quiet_since >= timeout:
            return
        elif since == before and now - asked < wait / 2:
            time.sleep(WATCH_POLL)   # answered at once (the RW server does not hold watches)


class ExpiredKeys:
    """The keys a watch yielded as expired (due, their delete not in the log yet), so that each is yielded once:
    the server's delete of one, when it comes, is not yielded again.

    >>> ExpiredKeys().changes({"seq": 7, "changes": [], "expired": [["k"]]})
    [{'seq': 7, 'kind': 'expired', 'ops': [{'op': 'del', 'path': ['k']}]}]
    """

    def __init__(self) -> None:
        self.yielded: set[tuple] = set()

    def changes(self, page: dict) -> list[dict]:
        """The changes of one watch page to yield, in order: its committed ones, then its newly expired keys."""
        found = []
        for change in page["changes"]:
            ops = change.get("ops") or []
            if self.yielded and len(ops) == 1 and ops[0].get("op") == "del" and change.get("kind") == "w" \
                    and _key(ops[0].get("path")) in self.yielded:
                self.yielded.discard(_key(ops[0]["path"]))
                continue        # the server's delete of a key already yielded as expired
            for op in ops if self.yielded else ():   # a write at or above a yielded key: it is another key now
                written = tuple(op.get("path") or ())
                self.yielded = {key for key in self.yielded if key[:len(written)] != written}
            found.append(change)
        for path in page.get("expired", ()):
            if (key := _key(path)) is not None and key not in self.yielded:
                self.yielded.add(key)
                found.append({"seq": page["seq"], "kind": "expired", "ops": [{"op": "del", "path": path}]})
        return found


def _key(path: object) -> tuple | None:
    """A dict-key path as a tuple (None for one with a slice or other step: no deadline is on it)."""
    if not isinstance(path, list) or not all(isinstance(step, (str, int)) for step in path):
        return None
    return tuple(path)
