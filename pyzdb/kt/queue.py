"""A priority queue in one Kyoto Tycoon record, changed by the ``queue_*`` procedures of pyzdb.lua.

The record is a ``kt.arraydump`` of ``score<TAB>item`` entries kept in the
order they leave: higher scores first, first in first out within a score.
ukt's Queue keeps its items in many records instead; the two do not read
each other's queues.
"""
from __future__ import annotations

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

    def clear(self) -> int:
        """Remove every item; return how many there were."""
        return int(self._call("queue_clear")[b"num"])
