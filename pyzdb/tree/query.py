"""The query model: path steps, operations, the method allow-list, and validation of untrusted queries.

A query is plain data, e.g. ``{"op": "call", "path": ["l", 4], "method":
"append", "args": ["d"]}``. A path step is a str or int key, or a slice
written as a 3-item list ``[start, stop, step]`` (items int or None).
Nothing here touches the tree: ``validate`` only checks shapes, limits and
method names, so the engine can trust what it is handed.
"""
from __future__ import annotations

import math
from typing import Any

from pyzdb.errors import MethodNotAllowed, QueryError, ValueTypeError
from pyzdb.transport import wire
from pyzdb.tree.files import FILE_EXT_CODE

MAX_PATH_DEPTH = 64
MAX_BATCH = 10_000
MAX_KEY_LENGTH = 64 * 1024
MAX_VALUE_DEPTH = 100
MAX_DEADLINE_KEYS = 100_000

# op name -> (writes the tree?, required fields beyond "op" and "path")
OPS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "get": (False, ()),
    "len": (False, ()),
    "contains": (False, ("value",)),
    "iter": (False, ()),
    "type": (False, ()),
    "set": (True, ("value",)),
    "del": (True, ()),
    "iadd": (True, ("value",)),
    "cas": (True, ("expected", "value")),
    "truncate": (True, ("length",)),  # the inverse of += on a str, bytes or list
    "expire": (True, ()),             # "seconds" from now, or "at" a unix time (None: persist)
    "ttl": (False, ()),
    "deadlines": (False, ("keys",)),  # the deadlines at or under path + [key] of each key (dump reads them)
    "call": (None, ("method",)),  # read or write depends on the method
    "batch": (None, ("ops",)),
}
# ops that address the service rather than the tree
CONTROL_OPS = frozenset({"undo", "redo", "lock", "unlock", "abort", "renew", "ping", "status", "file_read", "sync"})

LIST_WRITE = {"append": (), "extend": (), "insert": (), "pop": (), "remove": (), "sort": ("reverse",),
              "reverse": (), "clear": ()}
LIST_READ = {"index": (), "count": (), "copy": ()}
DICT_WRITE = {"pop": (), "popitem": (), "setdefault": (), "update": None, "clear": ()}
DICT_READ = {"get": (), "keys": (), "values": (), "items": (), "copy": ()}
STR_READ = {name: () for name in (
    "count", "endswith", "find", "index", "isalnum", "isalpha", "isdigit", "islower", "isspace",
    "isupper", "lower", "lstrip", "rfind", "rindex", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "title", "upper")}
BYTES_READ = {name: () for name in (
    "count", "endswith", "find", "hex", "index", "rfind", "rindex", "rsplit", "rstrip", "lstrip",
    "split", "startswith", "strip")}
ALL_METHODS = frozenset(LIST_WRITE) | set(LIST_READ) | set(DICT_WRITE) | set(DICT_READ) | set(STR_READ) | set(BYTES_READ)
WRITE_METHODS = {list: LIST_WRITE, dict: DICT_WRITE}
READ_METHODS = {list: LIST_READ, dict: DICT_READ, str: STR_READ, bytes: BYTES_READ}


def format_path(path: list) -> str:
    """Render a path in Python syntax.

    >>> format_path(['l', 4, [1, None, None]])
    "db['l'][4][1:]"
    """
    parts = ["db"]
    for step in path:
        if isinstance(step, list):
            start, stop, stride = step
            text = f"{'' if start is None else start}:{'' if stop is None else stop}"
            parts.append(f"[{text}{'' if stride is None else ':' + str(stride)}]")
        else:
            parts.append(f"[{step!r}]")
    return "".join(parts)


def describe(query: dict) -> str:
    """A query as users wrote it, for error messages: ``list.count() on db['l']`` style."""
    where = format_path(query.get("path", []))
    return f"{query.get('method')}() on {where}" if query["op"] == "call" else f"{query['op']} of {where}"


def is_slice(step: Any) -> bool:
    """True for a slice step ``[start, stop, step]``."""
    return isinstance(step, list)


def has_slice(path: list) -> bool:
    """True when a step of the path is a slice (writes cannot go through one)."""
    for step in path:
        if isinstance(step, list):
            return True
    return False


def check_path(path: Any) -> list:
    """Validate a path from the network and return it."""
    if not isinstance(path, list):
        raise QueryError(f"path must be a list of keys, not {type(path).__name__}")
    if len(path) > MAX_PATH_DEPTH:
        raise QueryError(f"path of {len(path)} steps is deeper than the limit of {MAX_PATH_DEPTH}")
    for step in path:
        if type(step) is int or (type(step) is str and len(step) <= MAX_KEY_LENGTH):
            continue    # the common case; bool is not of type int
        if isinstance(step, bool):
            raise QueryError(f"path step {step!r} is a bool; keys are str or int")
        if isinstance(step, str):
            if len(step) > MAX_KEY_LENGTH:
                raise QueryError(f"key of {len(step)} characters is over the limit of {MAX_KEY_LENGTH}")
        elif isinstance(step, list):
            if len(step) != 3 or not all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in step):
                raise QueryError(f"slice step must be [start, stop, step] of ints or None, not {step!r}")
            if step[2] == 0:
                raise QueryError(f"slice step cannot be zero in {format_path(path)}")
        elif not isinstance(step, int):
            raise QueryError(f"path step {step!r} is a {type(step).__name__}; keys are str or int")
    return path


_SCALARS = frozenset((type(None), bool, int, float, str, bytes))   # exact types, as msgpack decodes them
_KEY_TYPES = frozenset((str, int))


def check_value(value: Any, depth: int = 0) -> Any:
    """Check that a decoded value is one the tree may hold; return it."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth < MAX_VALUE_DEPTH:     # the common shapes, one call per container: exact types, checked in C
        if kind is dict and _KEY_TYPES.issuperset(map(type, value)):
            flat = depth + 1 < MAX_VALUE_DEPTH
            for item in value.values():
                if type(item) in _SCALARS:
                    continue
                # a dict of scalars (a loaded page's values): checked here, without a call per value
                if not (flat and type(item) is dict and _KEY_TYPES.issuperset(map(type, item))
                        and _SCALARS.issuperset(map(type, item.values()))):
                    check_value(item, depth + 1)
            return value
        if kind is list:
            for item in value:
                if type(item) not in _SCALARS:
                    check_value(item, depth + 1)
            return value
    return _check_value_slowly(value, depth)


def _check_value_slowly(value: Any, depth: int) -> Any:
    """``check_value`` for the rest: subclasses, File references, bad keys, values too deep (named in the error)."""
    if depth > MAX_VALUE_DEPTH:
        raise ValueTypeError(f"value is nested deeper than {MAX_VALUE_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, list):
        for item in value:
            _check_value_slowly(item, depth + 1)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise ValueTypeError(f"dict key {key!r} is a {type(key).__name__}; keys must be str or int")
            _check_value_slowly(item, depth + 1)
        return value
    if isinstance(value, wire.ExtType) and value.code == FILE_EXT_CODE:
        return value
    raise ValueTypeError(f"a value of type {type(value).__name__} cannot be stored")


def validate(query: Any, depth: int = 0) -> dict:
    """Check a query's shape, limits and method name; return the same dict, with defaults filled in.

    A missing ``path`` becomes ``[]``; a ``call`` without ``args``/``kwargs`` gets
    ``[]``/``{}`` (in the caller's dict itself, so the engine reads them plainly).

    >>> validate({"op": "call", "path": ["l"], "method": "append", "args": [1]})["method"]
    'append'
    """
    if not isinstance(query, dict):
        raise QueryError(f"query must be a map, not {type(query).__name__}")
    op = query.get("op")
    if not isinstance(op, str):
        raise QueryError(f"a query's 'op' must be a str, not {type(op).__name__}")
    if op in CONTROL_OPS:
        return query
    if op not in OPS:
        raise QueryError(f"unknown operation {op!r}")
    landing = len(check_path(query.setdefault("path", [])))   # values nest from here: depth adds up
    for field in OPS[op][1]:
        if field not in query:
            raise QueryError(f"operation {op!r} needs the field {field!r}")
    for field in ("value", "expected"):
        if field in query:
            check_value(query[field], landing)
    if op == "call":
        _check_call(query)
    elif op == "batch":
        _check_batch(query, depth)
    elif op in ("set", "del", "iadd", "cas", "truncate") and not query.get("path"):
        raise QueryError(f"{op} needs a key: the root of the tree itself cannot be replaced or deleted")
    if op == "expire":
        _check_expire(query)
    if op == "deadlines" and not (isinstance(query["keys"], list) and len(query["keys"]) <= MAX_DEADLINE_KEYS):
        raise QueryError(f"deadlines takes a list 'keys' of at most {MAX_DEADLINE_KEYS} keys")
    if op == "truncate" and (type(query["length"]) is not int or query["length"] < 0):
        raise QueryError(f"truncate needs a non-negative int 'length', not {query['length']!r}")
    return query


def _check_call(query: dict) -> None:
    method = query["method"]
    if not isinstance(method, str) or method not in ALL_METHODS:
        raise MethodNotAllowed(f"method {method!r} is not allowed on {format_path(query['path'])}")
    args, kwargs = query.setdefault("args", []), query.setdefault("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict) or len(args) > 8:
        raise QueryError(f"{method}() takes a list 'args' (at most 8) and a map 'kwargs'")
    for item in args:
        check_value(item, len(query["path"]) + 1)
    for key, item in kwargs.items():
        if not isinstance(key, str):
            raise QueryError(f"{method}() keyword names must be strings")
        check_value(item, len(query["path"]) + 1)


def _check_expire(query: dict) -> None:
    """Validate an ``expire`` query's fields (``seconds`` >= 0, or ``at`` a finite number or None)."""
    if not query.get("path"):
        raise QueryError("expire needs a key: the root of the tree cannot expire")
    if "seconds" in query:
        seconds = query["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise QueryError(f"expire takes a number of seconds >= 0, not {seconds!r}")
    elif "at" in query:
        at = query["at"]
        if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at)):
            raise QueryError(f"expire's 'at' is a unix time or None, not {at!r}")
    else:
        raise QueryError("expire needs 'seconds' (or 'at': a unix time, None to persist)")


def _check_batch(query: dict, depth: int) -> None:
    ops = query["ops"]
    if depth > 0:
        raise QueryError("a batch cannot contain another batch")
    if not isinstance(ops, list) or not ops:
        raise QueryError("batch needs a non-empty list 'ops'")
    if len(ops) > MAX_BATCH:
        raise QueryError(f"batch of {len(ops)} operations is over the limit of {MAX_BATCH}")
    for index, sub in enumerate(ops):
        if type(sub) is dict and len(sub) == 2 and sub.get("op") == "get" and "path" in sub:
            check_path(sub["path"])     # a plain read: its path is all there is to check
            continue
        if isinstance(sub, dict) and sub.get("op") in CONTROL_OPS:
            raise QueryError(f"batch operation {index}: {sub.get('op')!r} cannot run inside a batch")
        validate(sub, depth + 1)


def method_kind(container: Any, method: str, path: list) -> str:
    """'read' or 'write' for a method on this container; MethodNotAllowed if not allowed on its type."""
    kind = type(container)
    if method in WRITE_METHODS.get(kind, {}):
        return "write"
    if method in READ_METHODS.get(kind, {}):
        return "read"
    raise MethodNotAllowed(f"{kind.__name__} at {format_path(path)} has no allowed method {method!r} "
                           f"(allowed: {', '.join(methods_of(kind.__name__)) or 'none'})")


def methods_of(type_name: str) -> list[str]:
    """The allow-listed method names of a stored type, by its name ('list', 'dict', 'str', 'bytes', ...)."""
    names: set[str] = set()
    for kind in (list, dict, str, bytes):
        if kind.__name__ == type_name:
            names.update(WRITE_METHODS.get(kind, {}), READ_METHODS.get(kind, {}))
    return sorted(names)


def allowed_kwargs(container: Any, method: str) -> tuple[str, ...] | None:
    """The keyword names a method takes (None: any str keys, as dict.update)."""
    table = WRITE_METHODS.get(type(container), {})
    if method in table:
        return table[method]
    return READ_METHODS.get(type(container), {}).get(method, ())
