"""The change feed's invalidation message: which path prefixes the writes of one commit touched.

The read-write server publishes one per commit on the feed while some
subscriber takes ``inv`` (server/feed.py ``Publisher``), beside its
``seq`` announcement (topic ``inv``, so replicas, which subscribe to
``seq``, never receive it): ``inv`` + msgpack ``[first seq, last seq,
database id, prefixes]``, where each prefix is the first ``PREFIX_STEPS``
steps of a path a write changed, cut before a list index (``[]``:
anything may have changed). A
client's cache (pyzdb/client/cache.py) drops every entry on, above or
below a prefix, and notices a missed message by a gap in the seqs.
"""
from __future__ import annotations

from typing import Any, Iterable

from pyzdb.transport.wire import pack, unpack

TOPIC = b"inv"
PREFIX_STEPS = 2
EVERYTHING: tuple = ()
MAX_PREFIXES = 256   # more in one message: send EVERYTHING instead
MAX_FRAME = 1 << 20  # a longer message: EVERYTHING instead (client caches refuse longer feed frames)


def prefixes_of(entries: Iterable[dict]) -> set[tuple]:
    """The path prefixes the journal entries of one commit changed (their forward or applied ops)."""
    found: set[tuple] = set()
    for entry in entries:
        for op in entry.get("ops") or ():
            path = op.get("path") if type(op) is dict else None
            if type(path) is not list:     # every write op names its one path in "path" (tree/query.py)
                return {EVERYTHING}
            prefix = prefix_of(path)
            if not prefix:
                return {EVERYTHING}
            found.add(prefix)
    return found


def prefix_of(path: list) -> tuple:
    """The first PREFIX_STEPS steps, cut before the first that is not a str (a list index: others move with it)."""
    prefix = []
    for step in path[:PREFIX_STEPS]:
        if type(step) is not str:
            break
        prefix.append(step)
    return tuple(prefix)


def message(first: int, last: int, identity: str | None, prefixes: set[tuple]) -> bytes:
    """One frame: the topic and the msgpack body; EVERYTHING instead of prefixes that would pass MAX_FRAME."""
    frame = TOPIC + pack([first, last, identity or "", [list(p) for p in prefixes]])
    if len(frame) > MAX_FRAME:
        frame = TOPIC + pack([first, last, identity or "", [list(EVERYTHING)]])
    return frame


def parse(frame: bytes) -> tuple[int, int, str | None, list[tuple]] | None:
    """(first seq, last seq, database id or None, prefixes) of an invalidation frame; None if it is not one."""
    if not frame.startswith(TOPIC):
        return None
    try:
        first, last, identity, prefixes = unpack(frame[len(TOPIC):], max_size=None)
        if type(first) is not int or type(last) is not int or not isinstance(identity, (str, type(None))):
            return None
        return first, last, identity or None, _prefixes(prefixes)
    except Exception:   # noqa: BLE001 - a frame that is not ours is not an invalidation
        return None


def _prefixes(items: Any) -> list[tuple]:
    """The prefixes of a message as sent (lists of at most PREFIX_STEPS str); anything else, or more than
    MAX_PREFIXES of them, is taken as EVERYTHING (a cache then drops all it holds)."""
    if type(items) is not list or len(items) > MAX_PREFIXES:
        return [EVERYTHING]
    found = []
    for item in items:
        if type(item) is not list or len(item) > PREFIX_STEPS or any(type(step) is not str for step in item):
            return [EVERYTHING]
        found.append(tuple(item))
    return found


def overlaps(path: tuple, prefix: Any) -> bool:
    """True when a write under ``prefix`` may change the value at ``path`` (one is a prefix of the other)."""
    size = min(len(path), len(prefix))
    return path[:size] == prefix[:size]
