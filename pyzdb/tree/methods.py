"""The allow-listed methods of lists, dicts, strings and bytes, each write with its exact inverse.

``call_method`` returns ``(result, inverse)``; ``inverse`` is None for a read.
Every write checks its arguments before it changes anything.
"""
from __future__ import annotations

from typing import Any, Callable

from pyzdb.errors import (
    InvalidValue,
    PathIndexError,
    PathKeyError,
    QueryError,
    ValueTypeError,
)
from pyzdb.transport.wire import pack
from pyzdb.tree import query as q
from pyzdb.tree.values import call_op, clone_items, del_op, holds_containers, insert_op, set_op, type_name

_MISSING = object()


def call_method(node: Any, query: dict, packed: list | None = None) -> tuple[Any, list | None]:
    """Run the allow-listed method ``query['method']`` on ``node``, the value at ``query['path']``.

    Returns the method's result and, for a write, its inverse (None for a read).
    A write's arguments that hold lists or dicts go into the tree as copies;
    given ``packed``, they go in as they are, and the query's msgpack bytes,
    taken before it runs, are appended to ``packed`` (the journal and the undo
    history then use those bytes, never the query's values, which the tree now shares).
    """
    path, method = query["path"], query["method"]
    kind = q.method_kind(node, method, path)
    args, kwargs = query.get("args", []), query.get("kwargs", {})
    if kwargs:
        _check_kwargs(node, method, kwargs, path)
    where = Where(node, method, path)
    if kind == "read":
        return _read(node, method, args, kwargs, where), None
    if q.has_slice(path):
        raise QueryError(f"cannot write through a slice in {q.format_path(path)}")
    table = _LIST if isinstance(node, list) else _DICT
    if packed is None:
        return table[method](node, path, clone_items(args), clone_items(kwargs), where)
    packed.append(pack(query) if holds_containers(args) or holds_containers(kwargs) else None)
    return table[method](node, path, args, kwargs, where)


class Where:
    """How errors name a method call ("list.append() at db['l']"), rendered only when an error needs it."""

    __slots__ = ("node", "method", "path")

    def __init__(self, node: Any, method: str, path: list) -> None:
        self.node, self.method, self.path = node, method, path

    def __str__(self) -> str:
        return f"{type_name(self.node)}.{self.method}() at {q.format_path(self.path)}"


def _check_kwargs(node: Any, method: str, kwargs: dict, path: list) -> None:
    accepted = q.allowed_kwargs(node, method)
    unknown = set() if accepted is None else set(kwargs) - set(accepted)
    if unknown:
        raise QueryError(f"{method}() on {q.format_path(path)} takes no keyword {sorted(unknown)[0]!r}")


def _read(node: Any, method: str, args: list, kwargs: dict, where: Where) -> Any:
    try:
        result = getattr(node, method)(*args, **kwargs)  # method is in the per-type allow-list
    except ValueError as exc:
        raise InvalidValue(f"{where}: {exc}") from None
    except (TypeError, OverflowError) as exc:
        raise ValueTypeError(f"{where}: {exc}") from None
    if isinstance(result, (type({}.keys()), type({}.values()))):
        return list(result)
    if isinstance(result, type({}.items())):
        return [list(pair) for pair in result]
    return result


def _arity(args: list, low: int, high: int, where: Where) -> None:
    if not low <= len(args) <= high:
        wanted = str(low) if low == high else f"{low} to {high}"
        raise ValueTypeError(f"{where} takes {wanted} arguments ({len(args)} given)")


# --- lists ------------------------------------------------------------------------
def _list_append(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 1, 1, where)
    node.append(args[0])
    return None, [del_op(path + [len(node) - 1])]


def _list_extend(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 1, 1, where)
    if not isinstance(args[0], list):
        raise ValueTypeError(f"{where} needs a list, not {type_name(args[0])}")
    start = len(node)
    node.extend(args[0])
    return None, [del_op(path + [[start, len(node), None]])]


def _list_insert(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 2, 2, where)
    index, value = args
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueTypeError(f"{where}: index {index!r} is not an int")
    size = len(node)
    position = min(max(index + size, 0), size) if index < 0 else min(index, size)
    node.insert(position, value)
    return None, [del_op(path + [position])]


def _list_pop(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 0, 1, where)
    index = args[0] if args else -1
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueTypeError(f"{where}: index {index!r} is not an int")
    position = index + len(node) if index < 0 else index
    if not 0 <= position < len(node):
        raise PathIndexError(f"{where}: {'pop from empty list' if not node else f'index {index} out of range'}")
    value = node.pop(position)
    return value, [insert_op(path, position, value)]


def _list_remove(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 1, 1, where)
    try:
        position = node.index(args[0])
    except ValueError:
        raise InvalidValue(f"{where}: {args[0]!r} is not in the list") from None
    value = node.pop(position)
    return None, [insert_op(path, position, value)]


def _list_sort(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 0, 0, where)
    reverse = kwargs.get("reverse", False)
    if not isinstance(reverse, bool):
        raise ValueTypeError(f"{where}: reverse must be a bool")
    old = list(node)
    try:
        node.sort(reverse=reverse)
    except TypeError as exc:
        node[:] = old
        raise ValueTypeError(f"{where}: {exc}") from None
    return None, [set_op(path + [[0, len(node), None]], old)]


def _list_reverse(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 0, 0, where)
    node.reverse()
    return None, [call_op(path, "reverse")]


def _list_clear(node: list, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 0, 0, where)
    old = list(node)
    node.clear()
    return None, [call_op(path, "extend", old)]


# --- dicts ------------------------------------------------------------------------
_KEY_TYPES = frozenset((str, int))


def _check_key(key: Any, where: Where) -> None:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ValueTypeError(f"{where}: dict key {key!r} must be str or int")


def _dict_pop(node: dict, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 1, 2, where)
    key = args[0]
    if isinstance(key, (list, dict)) or key not in node:
        if len(args) == 2:
            return args[1], []
        raise PathKeyError(f"{where}: key {key!r} not found")
    value = node.pop(key)
    return value, [set_op(path + [key], value)]


def _dict_popitem(node: dict, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 0, 0, where)
    if not node:
        raise PathKeyError(f"{where}: dictionary is empty")
    key, value = node.popitem()
    return [key, value], [set_op(path + [key], value)]


def _dict_setdefault(node: dict, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 1, 2, where)
    key = args[0]
    _check_key(key, where)
    if key in node:
        return node[key], []
    node[key] = args[1] if len(args) == 2 else None
    return node[key], [del_op(path + [key])]


def _uninterned(items: dict) -> dict:
    """A copy of ``items`` whose str keys are new strings, not the ones msgpack decoded.

    msgpack interns every str key of a map it decodes; a key kept in the tree
    keeps its entry in the interpreter's table of interned strings too (about
    40 bytes a key: 10^6 keys loaded by ``update`` held 40 MiB more than after
    a restart). The decoded keys, no longer referenced, leave that table.
    """
    try:
        return {key.encode().decode() if type(key) is str else key: value for key, value in items.items()}
    except UnicodeEncodeError:   # a lone surrogate (not from the wire: msgpack decodes strict UTF-8)
        return dict(items)


def _dict_update(node: dict, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 0, 1, where)
    changes = _uninterned(args[0]) if args and isinstance(args[0], dict) else None
    if args and changes is None:
        raise ValueTypeError(f"{where} needs a dict, not {type_name(args[0])}")
    if kwargs:
        changes = {**(changes or {}), **kwargs}
    elif changes is None:
        changes = {}
    if not _KEY_TYPES.issuperset(map(type, changes)):     # bool is not of type int
        for key in changes:
            _check_key(key, where)
    if node.keys().isdisjoint(changes):                   # only new keys (a load): each inverse is a delete
        inverse = [{"op": "del", "path": [*path, k]} for k in changes]
    else:
        inverse = [set_op([*path, k], node[k]) if k in node else del_op([*path, k]) for k in changes]
    node.update(changes)
    return None, inverse


def _dict_clear(node: dict, path: list, args: list, kwargs: dict, where: Where):
    _arity(args, 0, 0, where)
    old = dict(node)
    node.clear()
    return None, [call_op(path, "update", old)]


Writer = Callable[[Any, list, list, dict, Where], tuple[Any, list]]
_LIST: dict[str, Writer] = {
    "append": _list_append, "extend": _list_extend, "insert": _list_insert, "pop": _list_pop,
    "remove": _list_remove, "sort": _list_sort, "reverse": _list_reverse, "clear": _list_clear,
}
_DICT: dict[str, Writer] = {
    "pop": _dict_pop, "popitem": _dict_popitem, "setdefault": _dict_setdefault,
    "update": _dict_update, "clear": _dict_clear,
}
