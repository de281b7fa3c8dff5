"""Pages of ``iter``: by position (``start``), or by a cursor that never skips or repeats an entry while others write.

A cursor's first page (``"cursor": None``) answers the whole container when
it fits in ``limit``, and holds nothing. Otherwise it takes a snapshot of
the container's entries (a dict's keys, a list's items; a str or bytes is
kept as it is) in one C-speed copy, and every later page is a slice of that
snapshot: O(page), wherever it is. A dict's page leaves out the snapshot's
keys deleted since and reads the others' values as they are now, so a key
present from the first page to the last is answered exactly once, one
deleted meanwhile at most once, and one added meanwhile not at all. A list
(str, bytes) is iterated as it was at the first page: each of its items
then, once, in order.

The reply is ``{"page": [...], "cursor": next or None}``. A cursor is the
text ``<number>.<position>.<mac>``: the mac (keyed by a secret this
``Cursors`` drew at random) makes a forged or garbled cursor, one from
another server or from before a restart, a ``CursorError``; a cursor idle
past ``idle_seconds`` or evicted (least recently used first) to keep at
most ``max_cursors`` cursors and ``max_held`` entries held is
``CursorExpired``. docs/ITERATION.md has the wire format and the reasons.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import time
from collections import OrderedDict
from typing import Any, Callable

from pyzdb.errors import CursorError, CursorExpired, QueryError, RequestTooCostly, ValueTypeError
from pyzdb.tree.query import format_path
from pyzdb.tree.values import type_name

MAX_CURSORS = 64
MAX_HELD = 20_000_000       # entries held by all snapshots together: 8 bytes each, 160 MB
IDLE_SECONDS = 60.0
MAX_CURSOR_TEXT = 80
_MISSING = object()
_CURSOR_TEXT = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})\.([0-9a-f]{16})")


def positional_page(node: Any, query: dict) -> list:
    """The page ``start`` to ``start + limit`` of the container as it is now (older clients; O(start) on a dict)."""
    start, limit = query.get("start", 0), query.get("limit")
    if type(start) is not int or start < 0 or not (limit is None or (type(limit) is int and limit >= 0)):
        raise QueryError("iter takes a non-negative int 'start' and 'limit'")
    stop = None if limit is None else start + limit
    if isinstance(node, dict):
        if query.get("items") is True:
            return list(map(list, itertools.islice(node.items(), start, stop)))
        return list(itertools.islice(node, start, stop))
    return node[start:stop] if isinstance(node, list) else list(node[start:stop])


def check_iterable(node: Any, path: list) -> None:
    """ValueTypeError unless ``node`` is a dict, list, str or bytes."""
    if not isinstance(node, (dict, list, str, bytes)):
        raise ValueTypeError(f"{format_path(path)} is a {type_name(node)}; it is not iterable")


class _Cursor:
    __slots__ = ("path", "node", "entries", "offset", "used")

    def __init__(self, path: list, node: Any, entries: Any, used: float) -> None:
        self.path, self.node, self.entries, self.used = path, node, entries, used
        self.offset = 0         # the position of entries[0]


class Cursors:
    """The open cursors of one engine, bounded by count, entries held and idle time.

    >>> c = Cursors(); reply = c.page({"a": 1, "b": 2, "c": 3}, {"path": [], "cursor": None, "limit": 2})
    >>> reply["page"], reply["cursor"] is not None
    (['a', 'b'], True)
    """

    def __init__(self, max_cursors: int = MAX_CURSORS, max_held: int = MAX_HELD, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_cursors, self.max_held, self.idle_seconds, self.clock = max_cursors, max_held, idle_seconds, clock
        self.open: OrderedDict[int, _Cursor] = OrderedDict()    # least recently used first
        self.held = 0
        self._numbers = itertools.count(1)
        self._secret = os.urandom(16)

    def page(self, node: Any, query: dict) -> dict:
        """The next page of ``node`` (the container at ``query['path']``) and the cursor of the one after it."""
        path, text, limit, items = query["path"], query["cursor"], query.get("limit"), query.get("items") is True
        if type(limit) is not int or limit < 0:
            raise QueryError("iter with a cursor needs a non-negative int 'limit' (the page size)")
        now = self.clock()
        self._expire(now)
        if text is None:
            if len(node) <= limit:
                return {"page": _entries(node, node if isinstance(node, dict) else list(node), items), "cursor": None}
            number, position = self._open(path, node, now), 0
            cursor = self.open[number]
        else:
            number, position = self._parse(text)
            cursor = self._find(number, position, path, node)
            cursor.used = now
            self.open.move_to_end(number)
        start = position - cursor.offset
        chunk = cursor.entries[start:start + limit]
        if start + limit < len(cursor.entries):
            return {"page": _entries(node, chunk, items), "cursor": self._text(number, position + limit)}
        # the last page: only it is kept (a retry of this request reads it again) until it expires or is evicted
        self.held -= len(cursor.entries) - len(chunk)
        cursor.entries, cursor.offset = chunk, position
        return {"page": _entries(node, chunk, items), "cursor": None}

    def forget(self, reply: Any) -> None:
        """Drop the cursor a reply names (a page that was refused after it was made: too large to send)."""
        text = reply.get("cursor") if type(reply) is dict else None
        if type(text) is str:
            match = _CURSOR_TEXT.fullmatch(text)
            if match:
                self._drop(int(match.group(1)))

    def facts(self) -> dict:
        """For ``status``: how many cursors are open and how many entries their snapshots hold."""
        return {"cursors": len(self.open), "cursor_entries": self.held}

    # --- the table -------------------------------------------------------------------------------
    def _open(self, path: list, node: Any, now: float) -> int:
        size = len(node)
        if size > self.max_held:
            raise RequestTooCostly(f"iterating {format_path(path)} by cursor would hold {size:,} entries, over the "
                                   f"limit of {self.max_held:,}; read it by slices or keys of your own")
        while self.open and (len(self.open) >= self.max_cursors or self.held + size > self.max_held):
            self._drop(next(iter(self.open)))
        entries = list(node) if isinstance(node, (dict, list)) else node    # a str or bytes does not change
        number = next(self._numbers)
        self.open[number] = _Cursor(list(path), node, entries, now)
        self.held += size
        return number

    def _drop(self, number: int) -> None:
        cursor = self.open.pop(number, None)
        if cursor is not None:
            self.held -= len(cursor.entries)

    def _expire(self, now: float) -> None:
        while self.open:
            number, oldest = next(iter(self.open.items()))
            if now - oldest.used <= self.idle_seconds:
                return
            self._drop(number)

    def _find(self, number: int, position: int, path: list, node: Any) -> _Cursor:
        cursor = self.open.get(number)
        if cursor is None:
            raise CursorExpired(f"iteration cursor {number} of {format_path(path)} has expired (idle over "
                                f"{self.idle_seconds:g} s, or evicted by newer cursors); start the iteration again")
        if cursor.path != path or not 0 <= position - cursor.offset <= len(cursor.entries):
            raise CursorError(f"iteration cursor {number} does not belong to {format_path(path)} at position "
                              f"{position}; start the iteration again")
        if cursor.node is not node:
            self._drop(number)
            raise CursorError(f"{format_path(path)} was replaced since its iteration started; start it again")
        return cursor

    # --- the text ---------------------------------------------------------------------------------
    def _mac(self, number: int, position: int) -> str:
        return hmac.new(self._secret, b"%d.%d" % (number, position), hashlib.sha256).hexdigest()[:16]

    def _text(self, number: int, position: int) -> str:
        return f"{number}.{position}.{self._mac(number, position)}"

    def _parse(self, text: Any) -> tuple[int, int]:
        if type(text) is not str or len(text) > MAX_CURSOR_TEXT:
            raise CursorError(f"an iteration cursor is the text a page's reply gave (or None to start), "
                              f"not a {type_name(text)}")
        match = _CURSOR_TEXT.fullmatch(text)
        if match is None:
            raise CursorError(f"iteration cursor {text!r} is garbled; start the iteration again")
        number, position = int(match.group(1)), int(match.group(2))
        if not hmac.compare_digest(match.group(3), self._mac(number, position)):
            raise CursorError(f"iteration cursor {text!r} was not made by this server (forged, or made by another "
                              "server or before this one restarted); start the iteration again")
        return number, position


def _entries(node: Any, chunk: Any, items: bool) -> list:
    """A page's answer: a dict's keys (``items``: ``[key, value]`` pairs) of ``chunk`` still in it; else its items."""
    if not isinstance(node, dict):
        return chunk if type(chunk) is list else list(chunk)
    if items:
        get = node.get
        return [[key, value] for key in chunk if (value := get(key, _MISSING)) is not _MISSING]
    if chunk is node:
        return list(node)
    return [key for key in chunk if key in node]
