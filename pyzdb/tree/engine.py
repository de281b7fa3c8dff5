"""Applying validated queries to the in-memory tree, and the inverse of every write.

``Engine.execute(query)`` returns an ``Outcome``: the result, and for a write
the forward queries (to log and to redo) and the inverse operations (to undo).
A write that fails leaves the tree exactly as it was.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from pyzdb.errors import (
    Error,
    InvalidValue,
    PathIndexError,
    PathKeyError,
    QueryError,
    RequestTooCostly,
    ValueTypeError,
)
from pyzdb.tree import budget, cursors, expiry
from pyzdb.tree import query as q
from pyzdb.tree.copies import ReadCopies, too_large
from pyzdb.tree.methods import call_method
from pyzdb.tree.values import clone, del_op, fits_int64, insert_op, is_number, set_op, truncate_op, type_name


@dataclass
class Outcome:
    """What one query did: its result, and for a write the queries that redo and undo it."""

    result: Any
    forward: list = field(default_factory=list)
    inverse: list = field(default_factory=list)
    packed: list | None = None   # per forward query: its msgpack bytes taken before it ran, or None (Engine.run)

    @property
    def is_write(self) -> bool:
        """True when the query changed the tree."""
        return bool(self.forward)


class Engine:
    """The tree and the fixed set of operations allowed on it.

    >>> e = Engine(); e.execute({"op": "set", "path": ["l"], "value": [1]}).inverse
    [{'op': 'del', 'path': ['l']}]
    """

    def __init__(self, tree: dict | None = None) -> None:
        self.tree: dict = {} if tree is None else tree
        self.expiries = expiry.Expiries()
        self.cursors = cursors.Cursors()
        self._packing = False   # inside run(..., packed=True)
        self._max_reply: int | None = None   # inside run(): a batch's copies of its results stop at this many bytes
        self._owner: Any = None     # inside run(): the client whose iter opens a cursor (tree/cursors.py)

    # --- entry points ----------------------------------------------------------
    def execute(self, query: dict) -> Outcome:
        """Apply one validated query; a batch applies all of its operations or none."""
        if query["op"] == "batch":
            ops = query["ops"]
            if all(sub["op"] == "get" for sub in ops):
                return self._get_many(ops)
            return self._batch(ops)
        outcome = getattr(self, "_op_" + query["op"])(query)
        if self.expiries.deadlines and outcome.forward:      # keys that expire: a set or delete drops theirs
            expiry.after_write(self.resolve, self.expiries, query, outcome.result, outcome.inverse)
        return outcome

    def run(self, query: dict, max_work: int | None = None, max_reply: int | None = None, *,
            packed: bool = False, owner: Any = None) -> Outcome:
        """``execute`` a client's query within budgets: refused before it runs if its estimated work is over
        ``max_work``, and undone if its result surely encodes to more than ``max_reply`` bytes.

        With ``packed`` a method call's list and dict arguments go into the tree
        uncopied, and ``outcome.packed`` holds the bytes of such calls, taken
        before they ran: the caller must encode the forward queries from those
        bytes (``wire.Packed``) before any later query runs, as a later write
        may change those values in place. ``owner`` (the client id) owns the cursors an ``iter`` opens."""
        if max_work is not None:
            units = budget.cost(self.resolve, query, max_work)
            if units > max_work:
                what = f"a batch of {len(query['ops'])} operations" if query["op"] == "batch" else q.describe(query)
                raise RequestTooCostly(f"{what} needs over {max_work:,} work units (--max-work; estimated {units:,} "
                                       "from the sizes of the values it touches); ask for smaller parts "
                                       "(a slice, a page, len())")
        self._packing, self._max_reply, self._owner = packed, max_reply, owner
        try:
            outcome = self.execute(query)
        finally:
            self._packing, self._max_reply, self._owner = False, None, None
        if max_reply is not None and type(outcome.result) in (list, dict, str, bytes):   # others: a few bytes
            floor = budget.size_floor(outcome.result, max_reply)
            if floor > max_reply:
                if outcome.is_write:
                    self.apply(outcome.inverse)
                if query["op"] == "iter" and query.get("cursor", "") is None:
                    self.cursors.forget(outcome.result)     # the cursor this first page made: never sent
                raise too_large(floor, max_reply)
        return outcome

    def apply(self, ops: list) -> list:
        """Apply operations in order (all or none) and return the operations that undo them."""
        return self._batch(ops).inverse

    def is_write(self, query: dict) -> bool:
        """Whether a query would change the tree (without running it)."""
        op = query["op"]
        if op == "batch":
            return any(self.is_write(sub) for sub in query["ops"] if sub["op"] != "get")
        if op == "call":
            try:
                container = self.resolve(query["path"])
            except Error:
                return query["method"] in q.LIST_WRITE or query["method"] in q.DICT_WRITE
            return q.method_kind(container, query["method"], query["path"]) == "write"
        return bool(q.OPS[op][0])

    def may_write(self, query: dict) -> bool:
        """``is_write``, or True for a query that will fail on its path or method (it raises when it runs)."""
        try:
            return self.is_write(query)
        except Error:
            return True

    def _batch(self, ops: list) -> Outcome:
        done: list[Outcome] = []
        results, copies = [], ReadCopies(self._max_reply)
        # a result is the value as it was when its operation ran: copied if a later write may change it in place
        last_change = max((i for i, sub in enumerate(ops) if sub.get("op") != "get" and self.may_write(sub)), default=-1)
        for index, sub in enumerate(ops):
            try:
                done.append(self.execute(sub))
                result = done[-1].result    # a read's, or setdefault's stored value: both may be live containers
                results.append(copies.copy(result) if index < last_change and isinstance(result, (list, dict)) else result)
            except Error as exc:
                for outcome in reversed(done):
                    self._batch_silent(outcome.inverse)
                raise type(exc)(f"batch operation {index}: {exc}") from None
        inverse = list(itertools.chain.from_iterable(o.inverse for o in reversed(done)))
        forward = [sub for sub, o in zip(ops, done) if o.is_write]
        parts = [o.packed[0] if o.packed else None for o in done if o.is_write]
        return Outcome(results, forward, inverse, parts if any(part is not None for part in parts) else None)

    def _get_many(self, ops: list) -> Outcome:
        """A batch of plain reads: no inverses to track, no Outcome per read."""
        results, resolve = [], self.resolve
        for index, sub in enumerate(ops):
            try:
                results.append(resolve(sub["path"]))
            except Error as exc:
                raise type(exc)(f"batch operation {index}: {exc}") from None
        return Outcome(results)

    def _batch_silent(self, ops: list) -> None:
        for sub in ops:
            self.execute(sub)

    # --- paths -----------------------------------------------------------------
    def resolve(self, path: list) -> Any:
        """The value a path names (slices produce copies, as in Python)."""
        node: Any = self.tree
        for depth, step in enumerate(path):
            if type(node) is dict:
                try:
                    node = node[step]
                    continue
                except (KeyError, TypeError):   # missing, or a slice: _step says which, with the path
                    pass
            node = self._step(node, step, path[:depth + 1])
        return node

    @staticmethod
    def _step(node: Any, step: Any, where: list) -> Any:
        if q.is_slice(step):
            if not isinstance(node, (list, str, bytes)):
                raise ValueTypeError(f"{q.format_path(where[:-1])} is a {type_name(node)}; it cannot be sliced")
            return node[slice(*step)]
        if isinstance(node, dict):
            try:
                return node[step]
            except KeyError:
                raise PathKeyError(f"{q.format_path(where)}: key {step!r} not found") from None
        if isinstance(node, (list, str, bytes)):
            if not isinstance(step, int):
                raise ValueTypeError(f"{q.format_path(where[:-1])} is a {type_name(node)}; index {step!r} is not an int")
            try:
                return node[step]
            except IndexError:
                raise PathIndexError(f"{q.format_path(where)}: index {step} out of range (length {len(node)})") from None
        raise ValueTypeError(f"{q.format_path(where[:-1])} is a {type_name(node)}; it has no item {step!r}")

    def _parent(self, path: list) -> tuple[Any, Any]:
        if q.has_slice(path[:-1]):
            raise QueryError(f"cannot write through a slice in {q.format_path(path)}")
        parent = self.resolve(path[:-1])
        if not isinstance(parent, (dict, list)):
            raise ValueTypeError(f"{q.format_path(path[:-1])} is a {type_name(parent)}; it cannot be changed in place")
        return parent, path[-1]

    def _container(self, path: list, kind: type) -> Any:
        if q.has_slice(path):
            raise QueryError(f"cannot write through a slice in {q.format_path(path)}")
        node = self.resolve(path)
        if not isinstance(node, kind):
            raise ValueTypeError(f"{q.format_path(path)} is a {type_name(node)}, not a {kind.__name__}")
        return node

    @staticmethod
    def _index(parent: list, key: Any, path: list, *, insert: bool = False) -> int:
        if not isinstance(key, int):
            raise ValueTypeError(f"{q.format_path(path[:-1])} is a list; index {key!r} is not an int")
        size = len(parent)
        index = key + size if key < 0 else key
        if not 0 <= index < size:
            raise PathIndexError(f"{q.format_path(path)}: index {key} out of range (length {size})")
        return index

    # --- reads -------------------------------------------------------------------
    def _op_get(self, query: dict) -> Outcome:
        return Outcome(self.resolve(query["path"]))

    def _op_len(self, query: dict) -> Outcome:
        node = self.resolve(query["path"])
        if not isinstance(node, (list, dict, str, bytes)):
            raise ValueTypeError(f"{q.format_path(query['path'])} is a {type_name(node)}; it has no len()")
        return Outcome(len(node))

    def _op_contains(self, query: dict) -> Outcome:
        node, value = self.resolve(query["path"]), query["value"]
        try:
            if isinstance(node, dict):
                return Outcome(not isinstance(value, (list, dict)) and value in node)
            if isinstance(node, (list, str, bytes)):
                return Outcome(value in node)
        except TypeError as exc:
            raise ValueTypeError(f"'in' on {q.format_path(query['path'])}: {exc}") from None
        raise ValueTypeError(f"{q.format_path(query['path'])} is a {type_name(node)}; 'in' needs a dict, list, str or bytes")

    def _op_iter(self, query: dict) -> Outcome:
        """A page of a dict's keys (with ``"items": true``, its ``[key, value]`` pairs) or a list's items:
        by ``start`` and ``limit``, or by ``cursor`` (tree/cursors.py: never a key skipped or repeated)."""
        node = self.resolve(query["path"])
        cursors.check_iterable(node, query["path"])
        if "cursor" in query:
            return Outcome(self.cursors.page(node, query, self._owner))
        return Outcome(cursors.positional_page(node, query))

    def _op_ttl(self, query: dict) -> Outcome:
        return Outcome(expiry.ttl_op(self.resolve, self.expiries, query))

    def _op_deadlines(self, query: dict) -> Outcome:
        return Outcome(expiry.deadlines_op(self.expiries, query))

    def _op_expire(self, query: dict) -> Outcome:
        forward, inverse = expiry.expire_op(self.resolve, self.expiries, query)
        return Outcome(True, forward, inverse)

    def _op_type(self, query: dict) -> Outcome:
        return Outcome(type_name(self.resolve(query["path"])))

    # --- writes ------------------------------------------------------------------
    def _op_set(self, query: dict) -> Outcome:
        path, value = query["path"], clone(query["value"])
        parent, key = self._parent(path)
        if q.is_slice(key):
            return Outcome(None, [query], self._set_slice(parent, key, value, path))
        if isinstance(parent, dict):
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise ValueTypeError(f"dict key {key!r} must be str or int")
            inverse = [set_op(path, parent[key]) if key in parent
                       else del_op(path)]
            parent[key] = value
            return Outcome(None, [query], inverse)
        index = self._index(parent, key, path)
        inverse = [set_op(path[:-1] + [index], parent[index])]
        parent[index] = value
        return Outcome(None, [query], inverse)

    def _set_slice(self, parent: Any, key: list, value: Any, path: list) -> list:
        if not isinstance(parent, list):
            raise ValueTypeError(f"{q.format_path(path[:-1])} is a {type_name(parent)}; only lists take slice assignment")
        if not isinstance(value, list):
            raise ValueTypeError(f"slice assignment to {q.format_path(path)} needs a list, not {type_name(value)}")
        start, stop, stride = slice(*key).indices(len(parent))
        base = path[:-1]
        if stride == 1:
            stop = max(stop, start)
            old = parent[start:stop]
            parent[start:stop] = value
            return [set_op(base + [[start, start + len(value), None]], old)]
        positions = range(start, stop, stride)
        if len(positions) != len(value):
            raise InvalidValue(f"cannot assign {len(value)} items to the extended slice {q.format_path(path)} of {len(positions)}")
        ascending = sorted(positions)
        old = [parent[i] for i in ascending]
        parent[slice(*key)] = value
        if not ascending:
            return []
        return [set_op(base + [[ascending[0], ascending[-1] + 1, abs(stride)]], old)]

    def _op_del(self, query: dict) -> Outcome:
        path = query["path"]
        parent, key = self._parent(path)
        if q.is_slice(key):
            if not isinstance(parent, list):
                raise ValueTypeError(f"{q.format_path(path[:-1])} is a {type_name(parent)}; only lists take slice deletion")
            start, stop, stride = slice(*key).indices(len(parent))
            positions = sorted(range(start, stop, stride))
            old = [parent[i] for i in positions]
            del parent[slice(*key)]
            if stride == 1:
                inverse = [set_op(path[:-1] + [[start, start, None]], old)]
            else:
                inverse = [insert_op(path[:-1], i, v) for i, v in zip(positions, old)]
            return Outcome(None, [query], inverse)
        if isinstance(parent, dict):
            if key not in parent:
                raise PathKeyError(f"{q.format_path(path)}: key {key!r} not found")
            old = parent.pop(key)
            return Outcome(None, [query], [set_op(path, old)])
        index = self._index(parent, key, path)
        old = parent.pop(index)
        return Outcome(None, [query], [insert_op(path[:-1], index, old)])

    def _op_iadd(self, query: dict) -> Outcome:
        path, amount = query["path"], clone(query["value"])
        parent, key = self._parent(path)
        if q.is_slice(key):     # as in Python: l[a:b] += x is l[a:b] = l[a:b] + x
            old = self.resolve(path)
            if not isinstance(amount, list):
                raise ValueTypeError(f"+= on {q.format_path(path)}: cannot add {type_name(amount)} to a list slice")
            new = old + amount
            return Outcome(len(new), [query], self._set_slice(parent, key, new, path))
        missing = isinstance(parent, dict) and key not in parent
        if missing and not query.get("create"):
            raise PathKeyError(f"{q.format_path(path)}: key {key!r} not found")
        if missing:
            old = 0
        elif isinstance(parent, dict):
            old = parent[key]
        else:
            old = self.resolve(path)    # a list: a bad index is named as a get would name it
        if isinstance(old, list) and isinstance(amount, list):
            size = len(old)
            old.extend(amount)
            return Outcome(len(old), [query], [truncate_op(path, size)])
        same_text = type(old) is type(amount) and isinstance(old, (str, bytes))
        if not same_text and not (is_number(old) and is_number(amount)):
            raise ValueTypeError(f"+= on {q.format_path(path)}: cannot add {type_name(amount)} to {type_name(old)}")
        new = old + amount
        if not fits_int64(new):
            raise InvalidValue(f"+= on {q.format_path(path)}: {old} + {amount} = {new} is outside the int range "
                               "a value can have (-2**63 to 2**64-1); nothing was changed")
        if missing:
            inverse = [del_op(path)]
        else:   # a str or bytes is cut back, not kept whole: the inverse is O(len(amount))
            inverse = [truncate_op(path, len(old)) if same_text else set_op(path, old)]
        parent[key if isinstance(parent, dict) else self._index(parent, key, path)] = new
        # a str or bytes answers its new length, as a list does: the reply and its log record stay O(change)
        return Outcome(len(new) if same_text else new, [query], inverse)

    def _op_truncate(self, query: dict) -> Outcome:
        """Cut a str, bytes or list back to ``length`` items; the inverse appends what was cut."""
        path, length = query["path"], query["length"]
        parent, key = self._parent(path)
        if q.is_slice(key):
            raise QueryError(f"truncate cannot take a slice: {q.format_path(path)}")
        node = self.resolve(path)
        if not isinstance(node, (str, bytes, list)):
            raise ValueTypeError(f"truncate on {q.format_path(path)}: a {type_name(node)} has no length to cut")
        if length > len(node):
            raise InvalidValue(f"truncate on {q.format_path(path)}: length {length} is over its length {len(node)}")
        cut = node[length:]
        if isinstance(node, list):
            del node[length:]
        else:
            parent[key if isinstance(parent, dict) else self._index(parent, key, path)] = node[:length]
        return Outcome(None, [query], [{"op": "iadd", "path": path, "value": cut}])

    def _op_cas(self, query: dict) -> Outcome:
        path = query["path"]
        current = self.resolve(path)
        if type(current) is not type(query["expected"]) or current != query["expected"]:
            return Outcome(False)
        outcome = self._op_set(set_op(path, query["value"]))
        return Outcome(True, [query], outcome.inverse)

    def _op_call(self, query: dict) -> Outcome:
        parts: list | None = [] if self._packing else None
        result, inverse = call_method(self.resolve(query["path"]), query, parts)
        if inverse is None:
            return Outcome(result)
        return Outcome(result, [query], inverse, parts if parts and parts[0] is not None else None)
