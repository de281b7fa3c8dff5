"""Reads on a read-only server of keys whose deadline has passed before the record of their delete arrived.

A replica cannot delete (only the read-write server writes the journal), so
``read`` answers as if the key were deleted: a read of the key or of anything
below it raises the PathKeyError a read after the delete would raise,
``in`` on its dict answers False, ``d.get(key, default)`` the default, and a
get of a dict above it answers a copy without it. Other reads of a
container above a due key (``len``, ``keys()``, iteration and dump pages)
count it until the delete's record arrives; so does ``watch``, which names
the due keys on, above or below its path whose delete is not in the log yet
(``expired_under``), and ``file_read`` of a due File reads as deleted
(``resolve``). Deadlines are compared with
this server's own clock. The read-write server deletes a due key a request
touches before it runs (``Database._execute``) and uses ``reply_of`` for
the keys below a get's path, as a replica does.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from pyzdb.errors import Error, PathKeyError
from pyzdb.tree import query as q
from pyzdb.tree.expiry import Expiries, due_touched, touched_paths

_NUMBERED = re.compile(r"batch operation ([0-9]+): ")


def read(expiries: Expiries, query: dict, run: Callable[[dict], Any], now: float | None = None) -> Any:
    """``run(query)``'s result for a validated read, with the keys whose deadline has passed read as deleted."""
    if not expiries.deadlines:
        return run(query)
    now = time.time() if now is None else now
    if query["op"] == "batch":
        return run(query) if not due_touched(expiries, query, now) else _read_batch(expiries, query["ops"], run, now)
    paths = list(touched_paths(query))
    if paths:
        _refuse_due(expiries, paths[0], now)
    if len(paths) > 1 and expiries.due_prefix(paths[1], now) is not None:   # the key ``in`` or ``get`` names
        if query["op"] == "contains":
            return False
        if query["method"] == "get":
            args = query.get("args") or []
            return args[1] if len(args) > 1 else None
    return run(query)


def _refuse_due(expiries: Expiries, path: list, now: float) -> None:
    """PathKeyError, as after its delete, when a key on or above ``path`` is due."""
    prefix = expiries.due_prefix(path, now)
    if prefix is not None:
        raise PathKeyError(f"{q.format_path(list(prefix))}: key {prefix[-1]!r} not found")


def resolve(engine: Any, path: list) -> Any:
    """``engine.resolve(path)`` (``file_read``'s value), or PathKeyError when a key on or above it is due."""
    if engine.expiries.deadlines:
        _refuse_due(engine.expiries, path, time.time())
    return engine.resolve(path)


def expired_under(expiries: Expiries, path: list, limit: int) -> list[list]:
    """For ``watch``: the due keys on, above (the highest) or below ``path``, at most ``limit``; each reads
    as deleted although the record of its delete may not be in the log yet."""
    now = time.time()
    if (soonest := expiries.next_due()) is None or soonest > now:   # none due at all: one look at the heap
        return []
    return [list(key) for key in expiries.due_under(path, now)[:limit]]


def _read_batch(expiries: Expiries, ops: list, run: Callable[[dict], Any], now: float) -> list:
    """A batch of reads touching due keys: those answered as after their delete, all the others run as one batch,
    so its budgets (work, reply size) count them together, as without the due keys (one by one, 300 gets of
    512 KiB under a 1 MiB limit were each admitted and a 150 MB reply was encoded before it was refused)."""
    results: list = []
    rest: list = []          # (index, sub) of the reads that touch no due key
    for index, sub in enumerate(ops):   # reads only: one by one is the same as all at once
        if not due_touched(expiries, sub, now):
            results.append(None)
            rest.append((index, sub))
            continue
        try:
            results.append(read(expiries, sub, run, now))
        except Error as exc:
            raise type(exc)(f"batch operation {index}: {exc}") from None
    if rest:
        try:
            answers = run({"op": "batch", "ops": [sub for _, sub in rest]})
        except Error as exc:
            numbered = _NUMBERED.match(str(exc))
            if numbered is None:
                raise
            raise type(exc)(f"batch operation {rest[int(numbered.group(1))][0]}: {str(exc)[numbered.end():]}") from None
        for (index, _), answer in zip(rest, answers):
            results[index] = answer
    return results


def reply_of(expiries: Expiries, query: dict, reply: dict) -> dict:
    """A read's reply map, for a get: without the keys below its path whose deadline has passed (a copy), and
    with ``until``, the earliest deadline on, above or below the path, past which the client cache drops it."""
    if not expiries.deadlines or query["op"] != "get":
        return reply
    path, now = query["path"], time.time()
    if reply["ok"].__class__ is dict:       # the root's get costs O(the tree) already: so may its look
        below = expiries.due_under(path, now)
        if below:
            reply["ok"] = _without(reply["ok"], len(path), below)
    until = expiries.earliest(path)
    if until is not None:
        reply["until"] = until
    return reply


def _without(value: dict, depth: int, keys: list[tuple]) -> dict:
    """A copy of ``value`` (the dict at a path of ``depth`` steps) without ``keys``, copying only what it changes."""
    top = dict(value)
    copied = {id(top)}
    for key in keys:
        node = top
        for step in key[depth:-1]:
            child = node.get(step)
            if child.__class__ is not dict:
                break
            if id(child) not in copied:
                child = node[step] = dict(child)
                copied.add(id(child))
            node = child
        else:
            node.pop(key[-1], None)
    return top
