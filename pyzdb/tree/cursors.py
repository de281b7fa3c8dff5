"""Pages of ``iter``: by position (``start``), or by a cursor that never skips or repeats an entry while others write.

A cursor's first page (``"cursor": None``) answers the whole container when
it fits in ``limit``, and holds nothing. Otherwise it takes a snapshot of
the container's entries (a dict's keys, a list's items; a str or bytes is
kept as it is) in one C-speed copy, in chunks that are let go as the walk
passes them, and every later page is a slice of that snapshot: O(page),
wherever it is. A dict's page leaves out the snapshot's
keys deleted since and reads the others' values as they are now, so a key
present from the first page to the last is answered exactly once, one
deleted meanwhile at most once, and one added meanwhile not at all. A list
(str, bytes) is iterated as it was at the first page: each of its items
then, once, in order.

The reply is ``{"page": [...], "cursor": next or None}``. A cursor is the
text ``<number>.<position>.<mac>``: the mac (keyed by a secret this
``Cursors`` drew at random) makes a forged or garbled cursor, one from
another server or from before a restart, a ``CursorError``; a cursor idle
past ``idle_seconds`` or evicted (the least recently used of the owner
holding the most first) to keep at most ``max_cursors`` cursors and
``max_held`` entries held is
``CursorExpired``. Reading one position again (a retry) answers the same
page; after the last page the cursor stays until it expires. docs/ITERATION.md has the wire format and the reasons.
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
CHUNK = 1 << 16             # entries per piece of a snapshot: freeing one drops 65,536 references, about 0.5 ms
FREE_PER_CALL = 4           # pieces of dropped cursors freed per page
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


class _Snapshot:
    """A container's entries at one instant, in chunks of ``CHUNK`` freed as the walk passes them.

    Freeing a snapshot is O(entries) too (a reference dropped per key), so it
    is spread over the pages: a chunk is let go once the walk is past it.
    A str or bytes is one chunk, itself (it never changes).
    """

    __slots__ = ("chunks", "size", "step", "first")

    def __init__(self, node: Any) -> None:
        self.size = size = len(node)
        if isinstance(node, dict):
            keys = iter(node)
            self.chunks: list = [list(itertools.islice(keys, CHUNK)) for _ in range(0, size, CHUNK)]
        elif isinstance(node, list):
            self.chunks = [node[i:i + CHUNK] for i in range(0, size, CHUNK)]
        else:
            self.chunks = [node]
        self.step = CHUNK if isinstance(node, (dict, list)) else max(1, size)
        self.first = 0          # chunks before this one are let go

    @property
    def held(self) -> int:
        """Entries still held."""
        return max(0, self.size - self.first * self.step)

    def reaches(self, position: int) -> bool:
        """Whether a page can start at ``position`` (not in a chunk already let go, not past the end)."""
        return self.first * self.step <= position <= self.size

    def slice(self, start: int, stop: int) -> Any:
        """Entries ``start`` to ``stop`` (a list; of a str or bytes, a str or bytes)."""
        stop = min(stop, self.size)
        if start >= stop:
            return []
        first, offset = divmod(start, self.step)
        last = (stop - 1) // self.step
        if first == last:
            return self.chunks[first][offset:offset + stop - start]
        out = self.chunks[first][offset:]
        for index in range(first + 1, last):
            out += self.chunks[index]
        return out + self.chunks[last][:stop - last * self.step]

    def let_go(self, position: int | None = None) -> list:
        """The chunks wholly before ``position`` (None: all), no longer held here."""
        upto = len(self.chunks) if position is None else min(position // self.step, len(self.chunks))
        gone = self.chunks[self.first:upto]
        self.chunks[self.first:upto] = [None] * len(gone)
        self.first = max(self.first, upto)
        return gone


class _Cursor:
    __slots__ = ("path", "node", "snapshot", "used", "owner")

    def __init__(self, path: list, node: Any, used: float, owner: Any) -> None:
        self.path, self.node, self.used, self.owner = path, node, used, owner
        self.snapshot = _Snapshot(node)


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
        self.held = 0           # entries held by the open cursors' snapshots
        self._dropped: list = []    # chunks of dropped cursors, freed a few per call (freeing is O(entries))
        self._dropped_held = 0
        self._numbers = itertools.count(1)
        self._secret = os.urandom(16)

    def page(self, node: Any, query: dict, owner: Any = None) -> dict:
        """The next page of ``node`` (the container at ``query['path']``) and the cursor of the one after it.

        ``owner`` (the client id) opens a new cursor: at a bound, the owner holding the most gives one up."""
        path, text, limit, items = query["path"], query["cursor"], query.get("limit"), query.get("items") is True
        if type(limit) is not int or limit < 0:
            raise QueryError("iter with a cursor needs a non-negative int 'limit' (the page size)")
        now = self.clock()
        self._expire(now)
        if text is None:
            if len(node) <= limit:
                return {"page": _entries(node, node if isinstance(node, dict) else list(node), items), "cursor": None}
            number, position = self._open(path, node, now, owner), 0
            cursor = self.open[number]
        else:
            number, position = self._parse(text)
            cursor = self._find(number, position, path, node)
            cursor.used = now
            self.open.move_to_end(number)
        self._free(FREE_PER_CALL)
        snapshot = cursor.snapshot
        before = snapshot.held
        snapshot.let_go(position)       # a walk never goes back: the chunks before this page are done with
        self.held -= before - snapshot.held
        page = _entries(node, snapshot.slice(position, position + limit), items)
        # after the last page the cursor stays (a retry reads that page again) until it expires or is evicted
        return {"page": page, "cursor": self._text(number, position + limit) if position + limit < snapshot.size
                else None}

    def forget(self, reply: Any) -> None:
        """Drop the cursor a reply names (a page that was refused after it was made: too large to send)."""
        text = reply.get("cursor") if type(reply) is dict else None
        if type(text) is str:
            match = _CURSOR_TEXT.fullmatch(text)
            if match:
                self._drop(int(match.group(1)))

    def facts(self) -> dict:
        """For ``status``: how many cursors are open and how many entries their snapshots hold."""
        return {"cursors": len(self.open), "cursor_entries": self.held + self._dropped_held}

    # --- the table -------------------------------------------------------------------------------
    def _open(self, path: list, node: Any, now: float, owner: Any) -> int:
        size = len(node)
        if size > self.max_held:
            raise RequestTooCostly(f"iterating {format_path(path)} by cursor would hold {size:,} entries, over the "
                                   f"limit of {self.max_held:,}; read it by slices or keys of your own")
        while self.open and (len(self.open) >= self.max_cursors or self.held + size > self.max_held):
            self._drop(self._victim(owner, size, by_count=len(self.open) >= self.max_cursors))
        number = next(self._numbers)
        self.open[number] = _Cursor(list(path), node, now, owner)
        self.held += size
        return number

    def _victim(self, owner: Any, size: int, by_count: bool) -> int:
        """The cursor to drop for ``owner``'s new one of ``size`` entries: the least recently used of the owner
        that holds the most cursors (``by_count``) or entries, the new one counted, so that a client opening
        cursors in a loop evicts its own and not another client's walk in progress."""
        shares: dict[Any, int] = {}
        for cursor in self.open.values():
            shares[cursor.owner] = shares.get(cursor.owner, 0) + (1 if by_count else cursor.snapshot.held)
        if owner in shares:
            shares[owner] += 1 if by_count else size
        most = max(shares.values())
        return next(number for number, cursor in self.open.items() if shares[cursor.owner] == most)

    def _drop(self, number: int) -> None:
        cursor = self.open.pop(number, None)
        if cursor is None:
            return
        held = cursor.snapshot.held
        self.held -= held
        self._dropped += [chunk for chunk in cursor.snapshot.let_go() if chunk is not None]
        self._dropped_held += held
        while self._dropped_held > self.max_held:   # dropped faster than they are freed: free the excess now
            self._free(1)

    def _free(self, chunks: int) -> None:
        for _ in range(min(chunks, len(self._dropped))):
            self._dropped_held -= len(self._dropped.pop())

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
        if cursor.path != path or not cursor.snapshot.reaches(position):
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
        values = list(map(node.get, chunk, itertools.repeat(_MISSING)))
        pairs = list(map(list, zip(chunk, values)))
        return [pair for pair in pairs if pair[1] is not _MISSING] if _MISSING in values else pairs
    if chunk is node:
        return list(node)
    return list(filter(node.__contains__, chunk))
