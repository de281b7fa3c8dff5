"""The copies a batch makes of its results before a later write may change them in place, bounded by the reply limit.

A batch's reply is encoded after all of its operations ran, so a read (or
``setdefault``'s stored value) answered before a write is copied when it
runs. Those copies are memory the reply limit must bound as it bounds the
reply: ``ReadCopies`` refuses (``MessageTooLarge``) before the copies pass
``limit`` bytes, so a batch of many big reads and one write grows the server
by at most about the limit, not by what it asked for.
"""
from __future__ import annotations

from typing import Any

from pyzdb.errors import MessageTooLarge
from pyzdb.transport.wire import pack, unpack
from pyzdb.tree.budget import size_floor
from pyzdb.tree.values import clone


def too_large(floor: int, limit: int) -> MessageTooLarge:
    """The error of a reply of at least ``floor`` bytes, over the reply limit of ``limit`` bytes."""
    return MessageTooLarge(f"reply of at least {floor:,} bytes is over the limit of {limit:,} bytes;"
                           " read a smaller part (a slice, keys(), or len())")


class ReadCopies:
    """Deep copies of a batch's results, counted in encoded bytes against ``limit`` (None: no limit).

    >>> copies = ReadCopies(10); copies.copy([1, 2]), copies.copied
    ([1, 2], 3)
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.copied = 0     # bytes of the copies made so far

    def copy(self, result: Any) -> Any:
        """A deep copy of ``result``; MessageTooLarge if it takes the copies over the limit (checked before a
        copy that surely does is made, and by its exact size after)."""
        limit = self.limit
        if limit is None:
            return clone(result)
        floor = self.copied + size_floor(result, limit - self.copied)
        if floor > limit:
            raise too_large(floor, limit)
        data = pack(result)
        self.copied += len(data)
        if self.copied > limit:
            raise too_large(self.copied, limit)
        return unpack(data, max_size=None)
