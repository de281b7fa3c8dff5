"""Budgets checked before a request runs: its estimated work, and a lower bound of its reply's encoded size.

``cost(resolve, query)`` estimates, from the lengths of the values a query
touches and what it does to them, how many work units it needs (one unit is
about one element visited by C code, ~10 ns on the 2-core machine this was
measured on); a batch adds up its operations. ``size_floor(value, limit)``
is a lower bound of msgpack's encoding of ``value``, found by a walk that
stops as soon as the bound passes ``limit``, so a reply that is surely too
large is refused before anything is encoded.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Callable

from pyzdb.errors import Error
from pyzdb.tree.query import has_slice

# 10**7 units: about 100 ms of work on this machine (list.count: 9 ns an item; see SECURITY.md)
DEFAULT_MAX_WORK = 10_000_000

SCAN, TEXT_SCAN, COPY, ENCODE, MAP_ENTRY, PAIR = 1, 1 / 16, 4, 4, 20, 100
# per element of the value a method runs on (str and bytes: per character or byte)
_LIST_METHOD = {"count": SCAN, "index": SCAN, "remove": SCAN, "copy": COPY + ENCODE, "reverse": SCAN,
                "clear": COPY, "insert": TEXT_SCAN, "pop": TEXT_SCAN}
_DICT_METHOD = {"keys": MAP_ENTRY, "values": MAP_ENTRY, "items": PAIR, "copy": PAIR, "clear": COPY,
                "popitem": 0, "get": 0, "pop": 0, "setdefault": 0, "update": 0}
_TEXT_SPLIT = {"split", "rsplit", "splitlines"}


def cost(resolve: Callable[[list], Any], query: dict, limit: float = math.inf) -> int:
    """Estimated work units of a validated query (a batch: the sum of its operations), without running it.

    A batch's sum stops growing once it is over ``limit``.
    """
    if query["op"] == "batch":
        ops = query["ops"]
        last_change = max((i for i, sub in enumerate(ops) if sub.get("op") != "get"), default=-1)
        total = 0
        for index, sub in enumerate(ops):
            total += _one(resolve, sub)
            if index < last_change and sub.get("op") in ("get", "iter"):   # read before a write: its result is cloned
                total += _copy_cost(_value(resolve, sub.get("path", [])), sub, limit - total)
            if total > limit:
                break
        return total
    return _one(resolve, query)


def _value(resolve: Callable[[list], Any], path: list) -> Any:
    try:
        return resolve(path)
    except Error:
        return None        # the query fails on its path at once: no work


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (list, dict, str, bytes)) else 0


def _path_cost(resolve: Callable[[list], Any], path: list) -> int:
    """Slices on the path copy what they cover (a slice written or deleted: the old items)."""
    total = 0
    for depth, step in enumerate(path):
        if type(step) is list:
            total += COPY * _length(_value(resolve, path[:depth]))
    return total


_FLAT = frozenset({"get", "len", "type", "cas", "set", "del"})   # beyond their path, O(1) or bounded by the message


def _one(resolve: Callable[[list], Any], query: dict) -> int:
    op, path = query["op"], query.get("path", [])
    base = 1 + _path_cost(resolve, path) if has_slice(path) else 1
    if op in _FLAT:
        return base
    node = _value(resolve, path)
    size = _length(node)
    if op == "contains":
        return base if isinstance(node, dict) else base + math.ceil(size * (TEXT_SCAN if _is_text(node) else SCAN))
    if op == "iter":
        return base + _iter_cost(node, query)
    if op == "iadd" and _is_text(node):                         # a new str or bytes of the sum
        return base + math.ceil(size * TEXT_SCAN)
    if op == "call":
        return base + _method_cost(node, query)
    if op == "deadlines":                                       # one lookup per key named
        keys = query.get("keys")
        return base + (len(keys) if isinstance(keys, list) else 0)
    if op == "truncate":                                        # the cut part is copied (str, bytes: the rest too)
        length = query.get("length")
        cut = size - length if isinstance(length, int) and 0 <= length <= size else 0
        return base + (math.ceil(size * TEXT_SCAN) if _is_text(node) else COPY * cut)
    return base


def _is_text(node: Any) -> bool:
    return isinstance(node, (str, bytes))


def _iter_cost(node: Any, query: dict) -> int:
    start, limit, size = query.get("start", 0), query.get("limit"), _length(node)
    per = PAIR if query.get("items") is True else MAP_ENTRY
    if "cursor" in query:           # tree/cursors.py: a page of a snapshot, taken (one copy) by the first page
        limit = limit if isinstance(limit, int) and limit >= 0 else 0
        if query["cursor"] is not None:
            return limit * (SCAN + per if isinstance(node, dict) else COPY + ENCODE)
        if size <= limit:
            return size * (per if isinstance(node, dict) else COPY + ENCODE)
        return size * SCAN + limit * (SCAN + per if isinstance(node, dict) else COPY + ENCODE)
    start = start if isinstance(start, int) and start >= 0 else 0
    taken = max(0, size - start) if not isinstance(limit, int) else max(0, min(limit, size - start))
    if isinstance(node, dict):       # islice walks the keys it skips
        return min(start, size) * SCAN + taken * per
    return taken * (COPY + ENCODE)                              # a list's items, or a str's characters as a list


def _method_cost(node: Any, query: dict) -> int:
    method, size = query.get("method"), _length(node)
    args = query.get("args") or []
    if isinstance(node, list):
        if method == "sort":
            return 3 * size * max(1, math.ceil(math.log2(size + 1)))
        return math.ceil(size * _LIST_METHOD.get(method, 0)) + sum(_length(a) for a in args)
    if isinstance(node, dict):
        return size * _DICT_METHOD.get(method, 0) + sum(_length(a) for a in args)
    if _is_text(node):
        return size * (COPY + ENCODE) if method in _TEXT_SPLIT else math.ceil(size * TEXT_SCAN) + 1
    return 0


def _copy_cost(node: Any, query: dict, limit: float) -> int:
    """Units to deep-copy what a get or iter of ``node`` answers: by its size (``_size_walk``), not its length."""
    if not isinstance(node, (list, dict)):
        return 0        # a scalar, or a str's characters (``_iter_cost`` counts the list of them)
    if query["op"] == "get":
        return _size_walk(node, limit, COPY, 16)
    start, limit_items = query.get("start", 0), query.get("limit")
    start = start if isinstance(start, int) and start >= 0 else 0
    stop = start + limit_items if isinstance(limit_items, int) and limit_items >= 0 else None
    taken = len(range(*slice(start, stop).indices(len(node))))
    if isinstance(node, dict) and query.get("items") is not True:
        return COPY * taken                                     # its keys: scalars
    # the page's first items stand for all of it: the walk and the copy are bounded, not O(page)
    sample = list(itertools.islice(node.values() if isinstance(node, dict) else node, start, start + min(taken, 256)))
    if not sample:
        return 0
    return COPY * taken + math.ceil(_size_walk(sample, limit, COPY, 16) * taken / len(sample))


def size_floor(value: Any, limit: int, visits: int = 4096) -> int:
    """A lower bound of ``len(msgpack.packb(value))``, from a walk of at most ``visits`` values.

    Every value encodes to at least one byte, a str or bytes to one more
    per character or byte; the walk stops once the bound is over ``limit``.

    >>> size_floor([b'x' * 100, 'abc'], 10 ** 6) >= 104
    True
    """
    return _size_walk(value, limit, 1, 1, visits)


def _size_walk(value: Any, limit: float, element: int, per_byte: int, visits: int = 4096) -> int:
    """``element`` for each value of a walk of at most ``visits`` values and ``1 / per_byte`` for each character or
    byte of a str or bytes among them (a map's entry: two values); stops once the sum is over ``limit``."""
    total, stack = element, [value]
    while stack and total <= limit and visits > 0:
        item = stack.pop()
        visits -= 1
        kind = type(item)
        if kind is str or kind is bytes:
            total += len(item) // per_byte
        elif kind is list:
            total += element * len(item)
            room = visits - len(stack)      # the stack never holds more than ``visits``
            stack.extend(item if len(item) <= room else item[:max(0, room)])
        elif kind is dict:
            total += 2 * element * len(item)
            room = (visits - len(stack)) // 2
            if len(item) <= room:
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(itertools.islice(item.keys(), max(0, room)))
                stack.extend(itertools.islice(item.values(), max(0, room)))
    return total
