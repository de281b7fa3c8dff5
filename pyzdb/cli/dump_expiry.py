"""Expiry deadlines in a dump file: due keys left out, the others' deadlines carried in the record and set again.

A record of a key that has deadlines at or under it is ``[key, value,
[[subpath, at], ...]]`` (``subpath`` below the key, ``[]`` for the key
itself; ``at`` the absolute wall-clock deadline in unix seconds, as the
journal keeps it), a record without any stays ``[key, value]``. Absolute,
not a remaining time: a file loaded an hour after the dump must not give
its keys an hour more (Redis's RDB keeps absolute times as well), at the
price of trusting the two machines' clocks to agree.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

from pyzdb.tree.query import MAX_BATCH


def with_deadlines(page: list, deadlines: list, now: float) -> list:
    """The dump records of ``[key, value]`` pairs given their deadlines (``[[path, at], ...]`` from the root).

    A key whose own deadline is at or before ``now`` is left out; a key below
    one whose deadline has passed is removed from its value; the rest are
    carried in the record.
    """
    if not deadlines:
        return page
    by_key: dict[Any, list] = {}
    for path, at in deadlines:
        by_key.setdefault(path[0], []).append([path[1:], at])
    records = []
    for pair in page:
        held = by_key.get(pair[0])
        if held is None:
            records.append(pair)
            continue
        if any(not sub and at <= now for sub, at in held):
            continue
        kept = []
        for sub, at in sorted(held, key=lambda item: len(item[0])):
            if at <= now:
                _remove(pair[1], sub)
            elif _holds(pair[1], sub):
                kept.append([sub, at])
        records.append([pair[0], pair[1], kept] if kept else pair)
    return records


def _holds(value: Any, sub: list) -> bool:
    for step in sub:
        if type(value) is not dict or step not in value:
            return False
        value = value[step]
    return True


def _remove(value: Any, sub: list) -> None:
    if _holds(value, sub[:-1]):
        for step in sub[:-1]:
            value = value[step]
        if type(value) is dict:
            value.pop(sub[-1], None)


def is_deadline_list(item: Any) -> bool:
    """True for a record's third item: ``[[subpath, at], ...]`` with finite numbers as times."""
    return type(item) is list and all(
        type(entry) is list and len(entry) == 2 and type(entry[0]) is list
        and all(type(step) in (str, int) for step in entry[0])
        and type(entry[1]) in (int, float) and math.isfinite(entry[1]) for entry in item)


def expire_queries(records: list, now: float) -> tuple[list, list]:
    """(the records to set, the ``expire`` queries that give them their deadlines back) of a page of records.

    A key whose own deadline passed before ``now`` (the file waited too long) is not set.
    """
    latest: dict[Any, list] = {}
    for record in records:
        latest[record[0]] = record[2] if len(record) == 3 else []
    due = {key for key, held in latest.items() if any(not sub and at <= now for sub, at in held)}
    kept = [record for record in records if record[0] not in due] if due else records
    queries = [{"op": "expire", "path": [key, *sub], "at": at}
               for key, held in latest.items() if key not in due for sub, at in held]
    return kept, queries


def write_batches(update: dict, queries: list) -> Iterator[dict]:
    """The write queries that set ``update`` on the root and then the deadlines (batches within ``MAX_BATCH``)."""
    first = {"op": "call", "path": [], "method": "update", "args": [update], "kwargs": {}}
    if not queries:
        yield first
        return
    step = MAX_BATCH - 1
    yield {"op": "batch", "ops": [first, *queries[:step]]}
    for start in range(step, len(queries), MAX_BATCH):
        yield {"op": "batch", "ops": queries[start:start + MAX_BATCH]}
