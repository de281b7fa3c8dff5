"""ukt's Schedule: items with a score (an arrival time), read in rising score order, in one Kyoto Tycoon record.

The record has the Queue's layout (``score<TAB>item`` entries, in rising
order here); the ``schedule_*`` procedures of pyzdb.lua change it.
"""
from __future__ import annotations

from typing import Any

from pyzdb.kt.queue import Queue


class Schedule(Queue):
    """Items due at a score, typically a unix time.

    >>> s = kt.Schedule('jobs'); s.add('later', time.time() + 60); s.read(time.time())   # doctest: +SKIP
    1
    []
    """

    def add(self, item: Any, score: int | float = 0) -> int:
        """Schedule ``item`` at ``score``; return how many items are scheduled."""
        return int(self._call("schedule_add", {"score": int(score)}, [item])[b"num"])

    def _read(self, score: int | float | None, n: int | None, remove: bool) -> list[Any]:
        raw: dict[Any, Any] = {"remove": 1} if remove else {}
        if score is not None:
            raw["score"] = int(score)
        if n is not None:
            raw["n"] = n
        out = self._call("schedule_read", raw)
        return [self.kt.decode_value(out[str(i).encode()]) for i in range(len(out))]

    def read(self, score: int | float | None = None, n: int | None = None) -> list[Any]:
        """Remove and return up to ``n`` items whose score is at most ``score`` (None: any), lowest first."""
        return self._read(score, n, True)

    def items(self, n: int | None = None) -> list[Any]:
        """Up to ``n`` items in score order, without removing them."""
        return self._read(None, n, False)
