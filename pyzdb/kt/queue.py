"""A priority queue in one Kyoto Tycoon record, changed by the ``queue_*`` procedures of pyzdb.lua.

The record is a ``kt.arraydump`` of ``score<TAB>item`` entries kept in the
order they leave: higher scores first, first in first out within a score.
ukt's Queue keeps its items in many records instead; the two do not read
each other's queues.
"""
from __future__ import annotations

import time
from typing import Any, Iterable


class Queue:
    """ukt's ``Queue`` API on one record.

    >>> q = kt.Queue('jobs'); q.add('a'); q.add('urgent', score=10); q.pop()   # doctest: +SKIP
    1
    2
    'urgent'
    """

    def __init__(self, kt: Any, key: Any, db: int | None = None) -> None:
        self.kt, self.key, self.db = kt, key, db

    def _call(self, proc: str, raw: dict[Any, Any] | None = None, items: Iterable[Any] = ()) -> dict[bytes, bytes]:
        args: dict[Any, Any] = {"key": self.key, "db": self.kt.default_db if self.db is None else self.db}
        args.update(raw or {})
        args.update((str(i), self.kt.encode_value(item)) for i, item in enumerate(items))
        return self.kt._play(proc, args, False, False, False, False)

    def _items(self, proc: str, n: int, min_score: int | None) -> Any:
        raw: dict[Any, Any] = {"n": n}
        if min_score is not None:
            raw["min_score"] = min_score
        out = self._call(proc, raw)
        items = [self.kt.decode_value(out[str(i).encode()]) for i in range(len(out))]
        return (items[0] if items else None) if n == 1 else items

    def add(self, item: Any, score: int | None = None) -> int:
        """Add one item with priority ``score`` (default 0); return the queue's new length."""
        return self.extend([item], score)

    def extend(self, items: Iterable[Any], score: int | None = None) -> int:
        """Add items with priority ``score`` (default 0); return the queue's new length."""
        return int(self._call("queue_add", {"score": int(score or 0)}, items)[b"num"])

    def pop(self, n: int = 1, min_score: int | None = None) -> Any:
        """Remove and return the first item (n=1; None if empty) or the first ``n`` as a list."""
        return self._items("queue_pop", n, min_score)

    def rpop(self, n: int = 1, min_score: int | None = None) -> Any:
        """Like ``pop`` from the end of the queue."""
        return self._items("queue_rpop", n, min_score)

    def peek(self, n: int = 1, min_score: int | None = None) -> Any:
        """Like ``pop`` without removing."""
        return self._items("queue_peek", n, min_score)

    def rpeek(self, n: int = 1, min_score: int | None = None) -> Any:
        """Like ``rpop`` without removing."""
        return self._items("queue_rpeek", n, min_score)

    def count(self) -> int:
        """How many items are queued."""
        return int(self._call("queue_count")[b"num"])

    __len__ = count

    def remove(self, data: Any, n: int | None = None) -> int:
        """Remove up to ``n`` (default all) items equal to ``data``, from the front; return how many."""
        raw: dict[Any, Any] = {} if n is None else {"n": n}
        return int(self._call("queue_remove", raw, [data])[b"num"])

    def rremove(self, data: Any, n: int | None = None) -> int:
        """Like ``remove``, from the end."""
        raw: dict[Any, Any] = {"from_end": 1} if n is None else {"n": n, "from_end": 1}
        return int(self._call("queue_remove", raw, [data])[b"num"])

    def set_priority(self, data: Any, score: int, n: int | None = None) -> int:
        """Give up to ``n`` (default all) items equal to ``data`` the priority ``score``; return how many."""
        raw: dict[Any, Any] = {"score": int(score)} if n is None else {"score": int(score), "n": n}
        return int(self._call("queue_set_priority", raw, [data])[b"num"])

    def transfer(self, dest: Any, n: int = 1) -> Any:
        """Move the first item (n=1; None if empty) or the first ``n`` (a list) to ``dest``, keeping scores."""
        out = self._call("queue_transfer", {"dest": dest.key if isinstance(dest, Queue) else dest, "n": n})
        items = [self.kt.decode_value(out[str(i).encode()]) for i in range(len(out))]
        return (items[0] if items else None) if n == 1 else items

    def bpop(self, timeout: float | None = None, min_score: int | None = None, poll: float = 0.1) -> Any:
        """``pop``, waiting up to ``timeout`` seconds (None: for ever) for an item; None if none came.

        ukt waits on a server signal (HTTP); this polls every ``poll`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = self.pop(min_score=min_score)
            if item is not None or (deadline is not None and time.monotonic() >= deadline):
                return item
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def clear(self) -> int:
        """Remove every item; return how many there were."""
        return int(self._call("queue_clear")[b"num"])
