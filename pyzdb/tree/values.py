"""Tree values: deep copies, type names, and the primitive operations inverses are made of."""
from __future__ import annotations

from typing import Any

from pyzdb.transport.wire import pack, unpack

_SCALARS = (type(None), bool, int, float, str, bytes)
_SCALAR_SET = frozenset(_SCALARS)


def clone(value: Any) -> Any:
    """A deep copy of a tree value, so that no object is shared between the tree and a log record."""
    if type(value) in _SCALARS:
        return value
    return unpack(pack(value))


def clone_items(items: list | dict) -> list | dict:
    """``clone(items)`` (a method's args or kwargs), or ``items`` itself when every one is a scalar.

    Scalars are immutable, so then nothing can be shared between the tree and a log record.
    """
    return clone(items) if holds_containers(items) else items


def holds_containers(items: list | dict) -> bool:
    """True when a method's args or kwargs hold a value that is not a scalar (one that could be changed in place)."""
    return not _SCALAR_SET.issuperset(map(type, items.values() if isinstance(items, dict) else items))


def type_name(value: Any) -> str:
    """The name users see for a value's type (a File reference is 'File')."""
    return "File" if isinstance(value, tuple) else type(value).__name__


def is_number(value: Any) -> bool:
    """int or float, but not bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def set_op(path: list, value: Any) -> dict:
    """The query that sets ``path`` to ``value``."""
    return {"op": "set", "path": path, "value": value}


def del_op(path: list) -> dict:
    """The query that deletes ``path``."""
    return {"op": "del", "path": path}


def insert_op(path: list, index: int, value: Any) -> dict:
    """The query that inserts ``value`` at ``index`` of the list at ``path``."""
    return {"op": "call", "path": path, "method": "insert", "args": [index, value], "kwargs": {}}


def truncate_op(path: list, length: int) -> dict:
    """The query that cuts the str, bytes or list at ``path`` back to its first ``length`` items.

    The inverse of ``+=`` on a str, bytes or list: it costs O(size of the change), not of the value.
    """
    return {"op": "truncate", "path": path, "length": length}


def call_op(path: list, method: str, *args: Any) -> dict:
    """The query that calls an allow-listed method with positional arguments."""
    return {"op": "call", "path": path, "method": method, "args": list(args), "kwargs": {}}


_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def fits_int64(value: Any) -> bool:
    """False for an int the journal cannot store (msgpack carries -2**63 .. 2**64-1); True for anything else."""
    return type(value) is not int or _INT_MIN <= value <= _INT_MAX


_PLAIN_SCALARS = frozenset((bool, float, str, bytes))   # exact types, stored as they are


def to_storable(value: Any, depth: int = 0) -> Any:
    """Convert a Python value to what the tree stores, or raise ValueTypeError before sending.

    Tuples, ranges, sets and frozensets become lists; bytearray and memoryview
    become bytes; File objects become File references.

    >>> to_storable({'r': range(3), 't': (1, 2)})
    {'r': [0, 1, 2], 't': [1, 2]}
    """
    kind = type(value)
    if value is None or kind in _PLAIN_SCALARS or (kind is int and _INT_MIN <= value <= _INT_MAX):
        return value
    if kind is list and depth < 100:
        return [item if type(item) in _PLAIN_SCALARS or item is None else to_storable(item, depth + 1)
                for item in value]
    if kind is dict and depth < 100:
        out = {}
        for key, item in value.items():
            if type(key) is not str and type(key) is not int:
                break               # the general path below names the bad key
            out[key] = item if type(item) in _PLAIN_SCALARS or item is None else to_storable(item, depth + 1)
        else:
            return out
    from pyzdb.errors import ValueTypeError
    from pyzdb.tree.files import File
    if depth > 100:
        raise ValueTypeError("value is nested deeper than 100 levels")
    if value is None or isinstance(value, (bool, float, str, bytes)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValueTypeError(f"int {value} does not fit in 64 bits")
        return value
    if isinstance(value, (list, tuple, range)):
        return [to_storable(item, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [to_storable(item, depth + 1) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise ValueTypeError(f"dict key {key!r} is a {type(key).__name__}; keys must be str or int")
            out[key] = to_storable(item, depth + 1)
        return out
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, File):
        return value.to_ext()
    if hasattr(type(value), "_pyzdb_value"):   # a client proxy: store the value it names
        return to_storable(value._pyzdb_value(), depth)
    raise ValueTypeError(f"a value of type {type(value).__name__} cannot be stored "
                         "(use None, bool, int, float, str, bytes, list, dict or File)")
