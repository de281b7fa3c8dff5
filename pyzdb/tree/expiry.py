"""Expiry of dict keys, as in Redis: ``db['k'].expire(seconds)``, ``.ttl()``, ``.persist()``, at any depth.

A deadline is an absolute wall-clock time kept per path (every step of the
path a dict key, so no later insert into a list can move it). ``expire``
is a write like any other: the engine turns ``seconds`` into an absolute
``at`` in the forward op, so the journal, replicas, ``watch`` and undo all
see the same deadline, and a restart keeps it. Setting a key (``db[k] = v``,
``cas``, ``update``) or deleting it (``del``, ``pop``, ``popitem``,
``clear``) drops its deadline and those under it, as Redis's SET and DEL
do; the inverse of that write puts them back. ``+=`` keeps the deadline
(as INCRBY does). The read-write server deletes a key whose deadline has
passed as one journaled write (``Database.expire_due``, in steps), and at
once when a request touches it (lazy expiry, as Redis does on access):
``due_touched`` names what to delete first, so the request reads or writes
the key as deleted. ``earliest`` is how long a copy of a value stays true
(the client cache's ``until``); replicas hide due keys (tree/lazy_expiry.py).
"""
from __future__ import annotations

import heapq
import time
from typing import Any, Callable, Iterator

from pyzdb.errors import ValueTypeError
from pyzdb.tree import query as q

# dict methods that remove or replace keys of the dict they run on
_DROPPING_METHODS = frozenset({"pop", "popitem", "clear", "update"})
KEYED_METHODS = frozenset({"get", "pop", "setdefault"})   # dict methods whose first argument names a key


class Expiries:
    """path (a tuple of dict keys) -> deadline (unix seconds), with a heap for the next due one.

    >>> table = Expiries(); table.put(('session',), 10.0); table.due(11.0)
    [('session',)]
    """

    def __init__(self) -> None:
        self.deadlines: dict[tuple, float] = {}
        self._heap: list[tuple[float, tuple]] = []      # may hold stale pairs; checked against deadlines
        self._under: dict[tuple, set[tuple]] = {}       # a key -> the deeper paths under it with a deadline
        self.tops: dict[Any, int] = {}                  # top-level key -> how many deadlines are at or under it

    def __len__(self) -> int:
        return len(self.deadlines)

    def get(self, path: tuple) -> float | None:
        """The deadline of ``path``, or None."""
        return self.deadlines.get(path)

    def put(self, path: tuple, at: float | None) -> None:
        """Set (or with None clear) the deadline of ``path``."""
        if at is None:
            if self.deadlines.pop(path, None) is not None:
                self._index(path, -1)
            return
        if path not in self.deadlines:
            self._index(path, 1)
        self.deadlines[path] = at
        heapq.heappush(self._heap, (at, path))

    def _index(self, path: tuple, change: int) -> None:
        count = self.tops.get(path[0], 0) + change
        if count:
            self.tops[path[0]] = count
        else:
            del self.tops[path[0]]
        for size in range(1, len(path)):
            if change > 0:
                self._under.setdefault(path[:size], set()).add(path)
            else:
                below = self._under[path[:size]]
                below.discard(path)
                if not below:
                    del self._under[path[:size]]

    def drop_under(self, path: tuple) -> list[tuple[tuple, float]]:
        """Clear the deadlines of ``path`` and every path below it; return what they were."""
        if not path:                    # the root: every deadline
            dropped = list(self.deadlines.items())
            self.restore([])
            return dropped
        dropped = []
        at = self.deadlines.get(path)
        if at is not None:
            dropped.append((path, at))
            self.put(path, None)
        for other in list(self._under.get(path, ())):
            dropped.append((other, self.deadlines[other]))
            self.put(other, None)
        return dropped

    def next_due(self) -> float | None:
        """The earliest deadline, or None."""
        while self._heap and self.deadlines.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)       # stale: cleared or moved since it was pushed
        return self._heap[0][0] if self._heap else None

    def due(self, now: float | None = None, limit: int | None = None) -> list[tuple]:
        """Take the paths whose deadline is at or before ``now`` (at most ``limit``), earliest first; the caller
        deletes each key (which clears its deadline) or, if the key is gone already, clears the deadline with
        ``put(path, None)``."""
        now = time.time() if now is None else now
        paths: list[tuple] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(paths) < limit):
            at, path = heapq.heappop(self._heap)
            if self.deadlines.get(path) == at:
                paths.append(path)
        return paths

    def _keys(self, path: list) -> tuple | None:
        """``path`` as a deadline's key if some deadline is at, above or below it, else None (one dict lookup)."""
        try:
            if not path or path[0] not in self.tops:
                return None
        except TypeError:       # a slice step first: no key of it has a deadline
            return None
        for step in path:
            if step.__class__ is not str and step.__class__ is not int:
                return None     # a slice or a list index: deadlines are on dict keys only
        return tuple(path)

    def due_prefix(self, path: list, now: float | None = None) -> tuple | None:
        """The key on or above ``path`` whose deadline has passed (the highest), or None."""
        key = self._keys(path)
        if key is None:
            return None
        now = time.time() if now is None else now
        for size in range(1, len(key) + 1):
            at = self.deadlines.get(key[:size])
            if at is not None and at <= now:
                return key[:size]
        return None

    def due_under(self, path: list, now: float | None = None) -> list[tuple]:
        """The keys on, above or below ``path`` whose deadline has passed (on or above: the highest alone; under
        the root, every due key)."""
        now = time.time() if now is None else now
        if not path:
            return [key for key, at in self.deadlines.items() if at <= now]
        key = self._keys(path)
        if key is None:
            return []
        prefix = self.due_prefix(path, now)
        if prefix is not None:
            return [prefix]
        deadlines = self.deadlines
        return [p for p in self._under.get(key, ()) if deadlines[p] <= now]

    def earliest(self, path: list) -> float | None:
        """The earliest deadline of the key at ``path``, above or below it: until when a copy of its value is
        true. The root's is the next deadline of all."""
        if not path:
            return self.next_due()
        key = self._keys(path)
        if key is None:
            return None
        deadlines = self.deadlines
        until = deadlines.get(key)
        for size in range(1, len(key)):
            at = deadlines.get(key[:size])
            if at is not None and (until is None or at < until):
                until = at
        below = self._under.get(key)
        if below:
            soonest = min(deadlines[p] for p in below)
            until = soonest if until is None or soonest < until else until
        return until

    def state(self) -> list:
        """Checkpoint data: [[path, at], ...]."""
        return [[list(path), at] for path, at in self.deadlines.items()]

    def restore(self, items: Any) -> None:
        """Load ``state()`` data."""
        self.deadlines, self._heap, self._under, self.tops = {}, [], {}, {}
        for path, at in items or []:
            self.put(tuple(path), float(at))


def touched_paths(query: dict) -> Iterator[list]:
    """The paths a validated query reads or writes: its own, a batch's, and the key ``in`` or a keyed dict
    method (``get``, ``pop``, ``setdefault``) names."""
    op = query["op"]
    if op == "batch":
        for sub in query["ops"]:
            yield from touched_paths(sub)
        return
    path = query.get("path")
    if path.__class__ is not list:
        return
    yield path
    if op == "contains":
        key = query["value"]
    elif op == "call" and query["method"] in KEYED_METHODS and query.get("args"):
        key = query["args"][0]
    else:
        return
    if key.__class__ is str or key.__class__ is int:
        yield path + [key]


def due_touched(expiries: Expiries, query: dict, now: float | None = None) -> list[tuple]:
    """The keys whose deadline has passed on or above a path ``query`` reads or writes: to delete before it runs
    (at most one per path: cheap; keys below its path are the active deletion's, ``lazy_expiry.reply_of``)."""
    now = time.time() if now is None else now
    due: list[tuple] = []
    for path in touched_paths(query):
        key = expiries.due_prefix(path, now)
        if key is not None and key not in due:
            due.append(key)
    return due


def expire_op(resolve: Callable[[list], Any], expiries: Expiries, query: dict) -> tuple[list, list]:
    """Run ``{"op": "expire", "path": p, "seconds": s}`` (or ``"at": t``; ``"at": None`` is persist).

    Returns (forward ops, inverse ops); both empty when nothing changes.
    """
    path = query["path"]
    _check_dict_path(resolve, path)
    if "seconds" in query:
        at: float | None = time.time() + query["seconds"]
    else:
        at = query.get("at")
    key = tuple(path)
    old = expiries.get(key)
    if old == at:
        return [], []
    expiries.put(key, at)
    return [{"op": "expire", "path": path, "at": at}], [{"op": "expire", "path": path, "at": old}]


def ttl_op(resolve: Callable[[list], Any], expiries: Expiries, query: dict) -> float | None:
    """Seconds until the key at ``query['path']`` expires (0 if due), or None if it has no deadline."""
    resolve(query["path"])               # PathKeyError for a missing key, as Redis's TTL answers -2
    at = expiries.get(tuple(query["path"]))
    return None if at is None else max(0.0, at - time.time())


def deadlines_op(expiries: Expiries, query: dict) -> dict:
    """``{"op": "deadlines", "path": p, "keys": [k, ...]}``: the server's clock (``now``) and, in ``deadlines``,
    ``[[path, at], ...]`` of every deadline at or under ``p + [k]`` of each key (``pyzdb dump`` reads them)."""
    found: list[list] = []
    base = list(query["path"])
    for key in query["keys"]:
        path = expiries._keys([*base, key]) if type(key) in (str, int) else None
        if path is None:
            continue
        at = expiries.deadlines.get(path)
        if at is not None:
            found.append([list(path), at])
        found.extend([list(below), expiries.deadlines[below]] for below in expiries._under.get(path, ()))
    return {"now": time.time(), "deadlines": found}


def after_write(resolve: Callable[[list], Any], expiries: Expiries, query: dict, result: Any,
                inverse: list) -> None:
    """Drop the deadlines a write replaced or deleted; append to ``inverse`` the ops that put them back."""
    op, path = query["op"], query["path"]
    if op in ("set", "del", "cas"):
        touched: Iterator[list] = iter([path])
    elif op == "call" and query["method"] in _DROPPING_METHODS:
        touched = _method_keys(resolve, query, result)
    else:
        return
    for child in touched:
        for dropped, at in expiries.drop_under(tuple(child)):
            inverse.append({"op": "expire", "path": list(dropped), "at": at})


def _method_keys(resolve: Callable[[list], Any], query: dict, result: Any) -> Iterator[list]:
    """The paths of the keys a dict method removed or replaced."""
    path, method, args = query["path"], query["method"], query.get("args", [])
    try:
        if not isinstance(resolve(path), dict):
            return
    except Exception:       # the container itself is gone: nothing of it was a dict key we track
        return
    if method == "clear":
        yield path              # every key below the dict
    elif method == "pop" and args:
        yield path + [args[0]]
    elif method == "popitem" and isinstance(result, list) and result:
        yield path + [result[0]]
    elif method == "update":
        source = args[0] if args else {}
        keys = list(source) if isinstance(source, dict) else [pair[0] for pair in source if isinstance(pair, list)]
        for key in [*keys, *query.get("kwargs", {})]:
            yield path + [key]


def _check_dict_path(resolve: Callable[[list], Any], path: list) -> None:
    """ValueTypeError unless every container along ``path`` is a dict (and the key exists: PathKeyError)."""
    resolve(path)
    for depth in range(len(path)):
        if not isinstance(resolve(path[:depth]), dict):
            raise ValueTypeError(f"only dict keys expire: {q.format_path(path[:depth + 1])} is a list item")
