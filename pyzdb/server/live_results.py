"""Results that are live containers of the tree, kept as they were when their request ran.

A get (or ``iter``, ``dict.get``, ``values()``...) answers the tree's own
list or dict, and ``setdefault`` the stored value itself; the reply is
encoded only after its commit group, and a write's reply is kept for a retry
and journaled with its record. A later write in the group that changed that
container in place would change what the earlier reply says. ``LiveResults``
remembers such results by the path they were read under and copies one only
when a write is about to change a container at or below that path, so the
common case -- nothing later touches it -- copies nothing.
"""
from __future__ import annotations

from typing import Any

from pyzdb.tree import query as q
from pyzdb.tree.values import clone

MAX_KEPT = 1024        # write results kept live for retries: past this many the oldest is copied and let go
BUCKET_DEPTH = 2       # results are found by the first (at most) two dict keys of their path


class _Held:
    """One live result: ``holder[key]`` (a reply's ``ok``, or a batch's result list's item), read under ``path``."""

    __slots__ = ("holder", "key", "entry", "path", "result")

    def __init__(self, holder: Any, key: Any, entry: dict | None, path: list, result: Any) -> None:
        self.holder, self.key, self.entry, self.path, self.result = holder, key, entry, path, result

    def freeze(self, copies: dict[int, Any]) -> None:
        """Put a copy of the result in its place (unless its reply was rewritten since); ``copies`` (by ``id`` of
        the result) are the copies this pass made: results that are one object share one copy."""
        holder, key, result = self.holder, self.key, self.result
        if key in holder if type(holder) is dict else key < len(holder):
            if holder[key] is result:
                copy = copies.get(id(result))
                if copy is None:
                    copy = copies[id(result)] = clone(result)
                holder[key] = copy
                if self.entry is not None and self.entry.get("res") is result:
                    self.entry["res"] = copy


class LiveResults:
    """The unsent (or kept) results that may share a container with the tree, found by their path's first keys.

    >>> live = LiveResults(); value = [1]; reply = {"ok": value}; live.note(reply, None, {"op": "get", "path": ["k"]})
    >>> live.before({"op": "call", "path": ["k"], "method": "append"}); value.append(2); reply["ok"]
    [1]
    """

    def __init__(self) -> None:
        self.buckets: dict[tuple, list[_Held]] = {}
        self.kept = 0       # of them, write results (kept after they are sent)

    def note(self, reply: dict, entry: dict | None, query: dict) -> None:
        """Remember a reply's result if it may be a live container (``entry``: the journal entry of its write)."""
        result = reply.get("ok")
        if type(result) is not list and type(result) is not dict:
            return
        if query["op"] != "batch":
            self._hold(_Held(reply, "ok", entry, query.get("path", []), result))
            return
        for index, (sub, item) in enumerate(zip(query["ops"], result)):
            if type(item) is list or type(item) is dict:
                self._hold(_Held(result, index, entry, sub.get("path", []), item))

    def before(self, query: dict) -> None:
        """A query is about to run: copy the results it may change in place (any container at or below their path)."""
        if not self.buckets:
            return
        for sub in query["ops"] if query["op"] == "batch" else (query,):
            op = sub["op"]
            if op == "call":
                if sub["method"] in q.LIST_WRITE or sub["method"] in q.DICT_WRITE:
                    self._freeze_under(sub.get("path", []))
            elif q.OPS[op][0]:
                path = sub.get("path", [])
                self._freeze_under(path[:-1] if op in ("set", "del", "cas") else path)   # these assign into the parent

    def freeze_all(self) -> None:
        """Copy every result: undo, redo, a rollback or expiry is about to change the tree anywhere."""
        copies: dict[int, Any] = {}
        for held in self.buckets.values():
            for item in held:
                item.freeze(copies)
        self.buckets.clear()
        self.kept = 0

    def sent(self) -> None:
        """The replies made so far are encoded and sent: only write results (kept for retries) stay live."""
        for key in list(self.buckets):
            held = [item for item in self.buckets[key] if item.entry is not None]
            if held:
                self.buckets[key] = held
            else:
                del self.buckets[key]
        self.kept = sum(map(len, self.buckets.values()))

    def _hold(self, item: _Held) -> None:
        self.buckets.setdefault(_leading_keys(item.path), []).append(item)
        if item.entry is not None:
            self.kept += 1
            if self.kept > MAX_KEPT:
                self._let_go_oldest_write()

    def _freeze_under(self, changed: list) -> None:
        """Copy the results whose path is ``changed`` or above it: a container there is about to change in place."""
        keys = _leading_keys(changed)
        copies: dict[int, Any] = {}     # 1000 gets of one big value in a group: one copy, not 1000
        for depth in range(len(keys) + 1):
            held = self.buckets.get(keys[:depth])
            if not held:
                continue
            stay = []
            for item in held:
                if _at_or_above(item.path, changed):
                    item.freeze(copies)
                    self.kept -= item.entry is not None
                else:
                    stay.append(item)
            if stay:
                self.buckets[keys[:depth]] = stay
            else:
                del self.buckets[keys[:depth]]

    def _let_go_oldest_write(self) -> None:
        for key, held in self.buckets.items():
            for index, item in enumerate(held):
                if item.entry is not None:
                    held.pop(index).freeze({})
                    self.kept -= 1
                    if not held:
                        del self.buckets[key]
                    return


def _leading_keys(path: list) -> tuple:
    """The path's first str steps, at most BUCKET_DEPTH of them (an int step may name another item later)."""
    keys = []
    for step in path[:BUCKET_DEPTH]:
        if type(step) is not str:
            break
        keys.append(step)
    return tuple(keys)


def _at_or_above(path: list, changed: list) -> bool:
    """True when ``changed`` may be ``path`` or below it (an int or slice step may name any item)."""
    if len(path) > len(changed):
        return False
    return all(a == b or type(a) is not str or type(b) is not str for a, b in zip(path, changed))
