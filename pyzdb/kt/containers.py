"""ukt's Hash, Set and List: a dict, set or list kept in one Kyoto Tycoon record and changed by server procedures.

The record is a ``kt.mapdump`` (Hash, Set: members are the map's keys) or a
``kt.arraydump`` (List), as in ukt; every operation reads and rewrites the
whole record on the server (O(n)), in one script call, so it is atomic.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from pyzdb.errors import PathIndexError


class Container:
    """What the containers share: the record's key and database, and the script call."""

    key_field = "key"

    def __init__(self, kt: Any, key: Any, encode_values: bool = True, decode_values: bool = True,
                 db: int | None = None) -> None:
        self.kt, self.key, self.db = kt, key, db
        self.encode_values, self.decode_values = encode_values, decode_values

    def _db(self) -> int:
        return self.kt.default_db if self.db is None else self.db

    def lua(self, proc: str, data: Mapping[Any, Any] | None = None, decode: bool | None = None,
            raw_data: Mapping[Any, Any] | None = None) -> dict[Any, Any]:
        """Call ``proc`` with the record's key and db, ``raw_data`` as is and ``data`` serialized."""
        args: dict[Any, Any] = {self.key_field: self.key, "db": self._db(), **dict(raw_data or {})}
        encode = self.kt.encode_value if self.encode_values else (lambda v: v)
        args.update((k, encode(v)) for k, v in (data or {}).items())
        decode_values = self.decode_values if decode is None else decode
        decode_keys = self.kt.decode_keys if decode is None else decode
        return self.kt._play(proc, args, False, False, decode_values, decode_keys)

    def _num(self, proc: str, data: Mapping[Any, Any] | None = None,
             raw_data: Mapping[Any, Any] | None = None, field: bytes = b"num") -> int:
        return int(self.lua(proc, data, False, raw_data)[field])

    def clear(self) -> int | None:
        """Remove the record."""
        return self.kt.remove(self.key, self.db)


class Hash(Container):
    """A dict in one record (ukt's ``Hash``).

    >>> h = kt.Hash('h'); h['a'] = 'x'; h.get_all()     # doctest: +SKIP
    {'a': 'x'}
    """

    key_field = "table_key"

    def set_bulk(self, __data: Mapping[Any, Any] | None = None, **kwargs: Any) -> int:
        """Store every pair; return how many were written."""
        return self._num("hmset", {**dict(__data or {}), **kwargs})

    update = set_bulk

    def get_bulk(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The values of the fields that exist."""
        return self.lua("hmget", raw_data={key: "" for key in keys})

    def remove_bulk(self, keys: Iterable[Any]) -> int:
        """Remove fields; return how many existed."""
        return self._num("hmdel", raw_data={key: "" for key in keys})

    def get_all(self) -> dict[Any, Any]:
        """Every field and value."""
        return self.lua("hgetall")

    def set(self, key: Any, value: Any) -> int:
        """Store one field; return 1."""
        return self._num("hset", {"value": value}, {"key": key})

    __setitem__ = set

    def setnx(self, key: Any, value: Any) -> int:
        """Store one field only if it is new: 1 if stored, 0 if it existed."""
        return self._num("hsetnx", {"value": value}, {"key": key})

    def get(self, key: Any) -> Any:
        """The value of a field, or None."""
        out = self.lua("hget", raw_data={"key": key})
        return out.get("value", out.get(b"value")) if out else None

    __getitem__ = get

    def remove(self, key: Any) -> int:
        """Remove a field: 1 if it existed, else 0."""
        return self._num("hdel", raw_data={"key": key})

    __delitem__ = remove

    def length(self) -> int:
        """How many fields."""
        return self._num("hlen")

    __len__ = length

    def contains(self, key: Any) -> bool:
        """True if the field exists."""
        return bool(self._num("hcontains", raw_data={"key": key}))

    __contains__ = contains

    def get_raw(self) -> dict[Any, Any] | None:
        """Every field, read as the record's bytes and decoded here (no script), or None if absent."""
        raw = self.kt.get_bytes(self.key, self.db)
        return None if raw is None else self.kt.deserialize_dict(raw, self.decode_values)

    def set_raw(self, d: Mapping[Any, Any]) -> int | None:
        """Replace every field, written as one record (no script)."""
        return self.kt.set_bytes(self.key, self.kt.serialize_dict(d, self.encode_values), self.db)


class Set(Container):
    """A set in one record (ukt's ``Set``): the members are the keys of a map dump."""

    def add(self, *values: Any) -> int:
        """Add members; return how many were new."""
        return self.add_bulk(values)

    def add_bulk(self, values: Iterable[Any]) -> int:
        """Add members; return how many were new."""
        return self._num("sadd", {str(i): v for i, v in enumerate(values)})

    def count(self) -> int:
        """How many members."""
        return self._num("scard")

    __len__ = count

    def contains(self, value: Any) -> bool:
        """True if ``value`` is a member."""
        return bool(self._num("sismember", {"value": value}))

    __contains__ = contains

    def members(self) -> set[Any]:
        """Every member."""
        return set(self.lua("smembers").values())

    def pop(self) -> Any:
        """Remove and return one member, or None if the set is empty."""
        out = self.lua("spop", decode=False)
        if out.get(b"num") != b"1":
            return None
        return self.kt.decode_value(out[b"value"]) if self.decode_values else out[b"value"]

    def remove(self, *values: Any) -> int:
        """Remove members; return how many existed."""
        return self.remove_bulk(values)

    __delitem__ = remove

    def remove_bulk(self, values: Iterable[Any]) -> int:
        """Remove members; return how many existed."""
        return self._num("srem", {str(i): v for i, v in enumerate(values)})

    def _combine(self, proc: str, other: Any, dest: Any) -> set[Any]:
        raw = {"key2": other.key if isinstance(other, Set) else other}
        if dest is not None:
            raw["dest"] = dest.key if isinstance(dest, Set) else dest
        return set(self.lua(proc, decode=True, raw_data=raw).values())

    def intersection(self, other: Any, dest: Any = None) -> set[Any]:
        """Members of both sets (``other``: a Set or a key); with ``dest``, also stored there."""
        return self._combine("sinter", other, dest)

    def union(self, other: Any, dest: Any = None) -> set[Any]:
        """Members of either set; with ``dest``, also stored there."""
        return self._combine("sunion", other, dest)

    def difference(self, other: Any, dest: Any = None) -> set[Any]:
        """Members of this set only; with ``dest``, also stored there."""
        return self._combine("sdiff", other, dest)

    __and__ = intersection
    __or__ = union
    __sub__ = difference


class List(Container):
    """A list in one record (ukt's ``List``); indexes may be negative, as in Python."""

    def appendleft(self, value: Any) -> int:
        """Put ``value`` first; return the new length."""
        return self._num("llpush", {"value": value}, field=b"length")

    def append(self, value: Any) -> int:
        """Put ``value`` last; return the new length."""
        return self._num("lrpush", {"value": value}, field=b"length")

    appendright = append

    def extend(self, values: Iterable[Any]) -> int:
        """Append every value; return the new length."""
        return self._num("lextend", {str(i): v for i, v in enumerate(values)}, field=b"length")

    def get_range(self, start: int | None = None, stop: int | None = None) -> list[Any]:
        """``list[start:stop]``."""
        raw = {k: v for k, v in (("start", start), ("stop", stop)) if v is not None}
        out = self.lua("lrange", decode=True, raw_data=raw)
        return [out[str(i)] for i in range(len(out))]

    def _at(self, proc: str, index: int, data: Mapping[Any, Any] | None = None, decode: bool = True) -> Any:
        out = self.lua(proc, data, decode, {"index": index})
        if not out:
            raise PathIndexError(f"list index {index} out of range in {proc} of List {self.key!r}")
        return out

    def index(self, index: int) -> Any:
        """The item at ``index`` (IndexError if out of range)."""
        return self._at("lindex", index)["value"]

    def __getitem__(self, item: int | slice) -> Any:
        return self.get_range(item.start, item.stop) if isinstance(item, slice) else self.index(item)

    def insert(self, index: int, value: Any) -> int:
        """Insert before ``index``; return the new length (IndexError if out of range)."""
        return int(self._at("linsert", index, {"value": value}, False)[b"length"])

    def remove(self, index: int) -> Any:
        """Remove and return the item at ``index`` (IndexError if out of range)."""
        return self._at("lrem", index)["value"]

    __delitem__ = remove

    def set(self, index: int, value: Any) -> None:
        """Replace the item at ``index`` (IndexError if out of range)."""
        self._at("lset", index, {"value": value}, False)

    __setitem__ = set

    def popleft(self) -> Any:
        """Remove and return the first item, or None if empty."""
        return self.lua("llpop", decode=True).get("value")

    def popright(self) -> Any:
        """Remove and return the last item, or None if empty."""
        return self.lua("lrpop", decode=True).get("value")

    def pop(self, index: int | None = None) -> Any:
        """Remove and return the item at ``index`` (default: last), or None if there is none."""
        if index is None:
            return self.popright()
        try:
            return self.remove(index)
        except IndexError:
            return None

    def remove_range(self, start: int | None = None, stop: int | None = None) -> int:
        """``del list[start:stop]``; return the new length."""
        raw = {k: v for k, v in (("start", start), ("stop", stop)) if v is not None}
        return self._num("lremrange", raw_data=raw, field=b"length")

    def _poppush(self, proc: str, dest: Any) -> Any:
        target = self.key if dest is None else (dest.key if isinstance(dest, List) else dest)
        out = self.lua(proc, decode=True, raw_data={"dest": target})
        if "value" not in out:
            raise PathIndexError(f"{proc} of an empty List {self.key!r}")
        return out["value"]

    def lpoprpush(self, dest: Any = None) -> Any:
        """Move the first item to the end of ``dest`` (default: this list, a rotation); return it."""
        return self._poppush("llpoprpush", dest)

    def rpoplpush(self, dest: Any = None) -> Any:
        """Move the last item to the front of ``dest`` (default: this list); return it."""
        return self._poppush("lrpoplpush", dest)

    def length(self) -> int:
        """How many items."""
        return self._num("llen")

    __len__ = length

    def find(self, value: Any) -> int | None:
        """The index of the first item equal to ``value``, or None."""
        idx = self._num("lfind", {"value": value}, field=b"index")
        return idx if idx >= 0 else None

    def rfind(self, value: Any) -> int | None:
        """The index of the last item equal to ``value``, or None."""
        idx = self._num("lrfind", {"value": value}, field=b"index")
        return idx if idx >= 0 else None

    def __contains__(self, value: Any) -> bool:
        return self.find(value) is not None

    def get_raw(self) -> list[Any] | None:
        """Every item, read as the record's bytes and decoded here (no script), or None if absent."""
        raw = self.kt.get_bytes(self.key, self.db)
        return None if raw is None else self.kt.deserialize_list(raw, self.decode_values)

    def set_raw(self, items: Iterable[Any]) -> int | None:
        """Replace every item, written as one record (no script)."""
        return self.kt.set_bytes(self.key, self.kt.serialize_list(items, self.encode_values), self.db)
