"""ukt's helpers that a server script serves: touch and expire times, count, clear, seize, key matching, containers.

They call the procedures of ``pyzdb/kt/scripts/pyzdb.lua`` (``SCRIPT_PATH``),
which the server must load: ``ktserver -scr .../pyzdb.lua`` on a build
with Lua. The procedure names and arguments are ukt's, so the same calls
also work against a server running ukt's ``kt.lua`` for the names both have.
"""
from __future__ import annotations

import datetime
from importlib import resources
from typing import Any, Callable, Iterable, Iterator, Mapping

from pyzdb.kt.containers import Hash, List, Set
from pyzdb.kt.expiry import wire_xt
from pyzdb.kt.packing import dump_list, dump_map, load_list, load_map
from pyzdb.kt.queue import Queue
from pyzdb.kt.schedule import Schedule
from pyzdb.kvnet.serializers import decode_key, decode_text, encode_key

SCRIPT_PATH = str(resources.files("pyzdb.kt") / "scripts" / "pyzdb.lua")
"""The Lua file to start ktserver with (``-scr``) for these helpers."""

_FAR_FUTURE = 10 ** 11  # an xt past this is "never" (XT_MAX), as in ukt's expires()


class ScriptRunner:
    """``kt.lua.name(data, **kwargs)`` calls ``kt.script('name', ...)``, as in ukt."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def run(__data: Mapping[Any, Any] | None = None, no_reply: bool = False, encode_values: bool = True,
                decode_values: bool = True, **kwargs: Any) -> Any:
            return self._client.script(name, {**dict(__data or {}), **kwargs}, no_reply, encode_values,
                                       decode_values)
        return run


class LuaHelpers:
    """The script-backed methods of ``KyotoTycoon`` (a mixin; see the module docstring)."""

    default_db: int
    decode_keys: bool
    encode_value: Callable[[Any], bytes]
    decode_value: Callable[[bytes], Any]
    script: Callable[..., Any]
    raw_script: Callable[..., Any]

    @property
    def lua(self) -> ScriptRunner:
        """Call any server procedure as an attribute: ``kt.lua.touch_bulk({...})``."""
        return ScriptRunner(self)  # type: ignore[arg-type]

    def _dbarg(self, db: int | None) -> int:
        return self.default_db if db is None else db

    def _named(self, key: Any) -> Any:
        return decode_key(encode_key(key), self.decode_keys)

    # --- expire times ------------------------------------------------------------------
    def touch_bulk(self, keys: Iterable[Any], xt: Any = None, db: int | None = None) -> dict[Any, int]:
        """Give existing keys the expire time ``xt`` (taken as ``set`` takes it); return key -> old expire time."""
        data: dict[Any, Any] = {"db": self._dbarg(db)}
        data.update((key, wire_xt(xt)) for key in keys)
        out = self.script("touch_bulk", data, encode_values=False, decode_values=False)
        return {key: int(value) for key, value in out.items()}

    def touch(self, key: Any, xt: Any = None, db: int | None = None) -> int | None:
        """Give ``key`` the expire time ``xt``; return its old expire time, or None if it does not exist."""
        return self.touch_bulk([key], xt, db).get(self._named(key))

    def touch_bulk_relative(self, keys: Iterable[Any], n: int, db: int | None = None) -> dict[Any, int]:
        """Push the expire time of existing keys ``n`` seconds later; return key -> new expire time."""
        data: dict[Any, Any] = {"db": self._dbarg(db)}
        data.update((key, int(n)) for key in keys)
        out = self.script("touch_bulk_relative", data, encode_values=False, decode_values=False)
        return {key: int(value) for key, value in out.items()}

    def touch_relative(self, key: Any, n: int, db: int | None = None) -> int | None:
        """Push ``key``'s expire time ``n`` seconds later; return the new one, or None if it does not exist."""
        return self.touch_bulk_relative([key], n, db).get(self._named(key))

    def expire_time(self, key: Any, db: int | None = None) -> int | None:
        """The absolute expire time of ``key`` (``XT_MAX`` for never), or None if it does not exist."""
        out = self.raw_script("expire_time", {"db": self._dbarg(db), "key": key})
        return int(out[b"xt"]) if out else None

    def expires(self, key: Any, db: int | None = None) -> datetime.datetime | None:
        """The expire time of ``key`` as a local datetime (``datetime.max`` for never), or None."""
        ts = self.expire_time(key, db)
        if not ts:
            return None
        return datetime.datetime.max if ts > _FAR_FUTURE else datetime.datetime.fromtimestamp(ts)

    # --- whole database and single records ---------------------------------------------
    def count(self, db: int | None = None) -> int:
        """How many records the database holds."""
        return int(self.raw_script("count", {"db": self._dbarg(db)})[b"count"])

    def __len__(self) -> int:
        return self.count()

    def clear(self, db: int | None = None) -> bool:
        """Remove every record of the database; True on success."""
        self.raw_script("clear", {"db": self._dbarg(db)})
        return True

    def seize(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        """Remove ``key`` and return its value in one step, or None if it did not exist."""
        out = self.raw_script("seize", {"db": self._dbarg(db), "key": key})
        if not out:
            return None
        return self.decode_value(out[b"value"]) if decode_value else out[b"value"]

    pop = seize

    # --- conditional writes and counters ---------------------------------------------------
    def _write(self, proc: str, key: Any, db: int | None, expire_time: Any, **values: Any) -> bool:
        data = {"db": self._dbarg(db), "key": key, "xt": wire_xt(expire_time), **values}
        return self.raw_script(proc, data)[b"num"] == b"1"

    def _value(self, value: Any, encode_value: bool) -> bytes:
        return self.encode_value(value) if encode_value else encode_key(value)

    def add(self, key: Any, value: Any, db: int | None = None, expire_time: Any = None,
            encode_value: bool = True) -> bool:
        """Store only if ``key`` does not exist; False if it does."""
        return self._write("add", key, db, expire_time, value=self._value(value, encode_value))

    def replace(self, key: Any, value: Any, db: int | None = None, expire_time: Any = None,
                encode_value: bool = True) -> bool:
        """Store only if ``key`` exists; False if it does not."""
        return self._write("replace", key, db, expire_time, value=self._value(value, encode_value))

    def append(self, key: Any, value: Any, db: int | None = None, expire_time: Any = None,
               encode_value: bool = True) -> bool:
        """Append to the raw value (creating the record if missing); True on success."""
        return self._write("append", key, db, expire_time, value=self._value(value, encode_value))

    def cas(self, key: Any, old_val: Any, new_val: Any, db: int | None = None, expire_time: Any = None,
            encode_value: bool = True) -> bool:
        """Replace ``old_val`` by ``new_val`` in one step (None: no record / remove it); True if it matched."""
        values = {name: self._value(v, encode_value) for name, v in (("old", old_val), ("new", new_val))
                  if v is not None}
        return self._write("cas", key, db, expire_time, **values)

    def increment(self, key: Any, n: int = 1, orig: int | None = None, db: int | None = None,
                  expire_time: Any = None) -> int:
        """Add ``n`` to an 8-byte big-endian counter (``orig``, default 0, if missing); return the sum."""
        data = {"db": self._dbarg(db), "key": key, "num": n, "orig": orig or 0, "xt": wire_xt(expire_time)}
        return int(self.raw_script("increment", data)[b"num"])

    incr = increment

    def increment_double(self, key: Any, n: float = 1.0, orig: float | None = None, db: int | None = None,
                         expire_time: Any = None) -> float:
        """Add ``n`` to Kyoto Cabinet's 16-byte fixed-point counter (``orig`` if missing); return the sum."""
        data = {"db": self._dbarg(db), "key": key, "num": float(n), "orig": float(orig or 0),
                "xt": wire_xt(expire_time)}
        return float(self.raw_script("increment_double", data)[b"num"])

    incr_double = increment_double

    def error(self, db: int | None = None) -> tuple[int, str] | None:
        """The database's last error as ``(code, message)``; ``(0, 'success')`` after a success."""
        out = self.raw_script("get_error", {"db": self._dbarg(db)})
        return (int(out[b"code"]), str(decode_text(out[b"message"]))) if out else None

    def _match(self, proc: str, field: str, pattern: Any, max_keys: int | None, db: int | None) -> list[Any]:
        data = {"db": self._dbarg(db), field: pattern}
        if max_keys is not None:
            data["max"] = max_keys
        return list(self.script(proc, data, encode_values=False, decode_values=False))

    def match_prefix(self, prefix: Any, max_keys: int | None = None, db: int | None = None) -> list[Any]:
        """The sorted keys starting with ``prefix`` (at most ``max_keys``)."""
        return self._match("match_prefix", "prefix", prefix, max_keys, db)

    def match_regex(self, regex: Any, max_keys: int | None = None, db: int | None = None) -> list[Any]:
        """The sorted keys matching the regular expression ``regex`` (at most ``max_keys``)."""
        return self._match("match_regex", "regex", regex, max_keys, db)

    def match_similar(self, origin: Any, distance: int | None = None, max_keys: int | None = None,
                      db: int | None = None) -> list[Any]:
        """The keys within Levenshtein ``distance`` (default 1) of ``origin`` (UTF-8 characters), sorted by key."""
        data = {"db": self._dbarg(db), "origin": origin, "utf": "true", "range": 1 if distance is None else distance}
        if max_keys is not None:
            data["max"] = max_keys
        return list(self.script("match_similar", data, encode_values=False, decode_values=False))

    def keys_nonlazy(self, db: int | None = None) -> list[Any]:
        """Every key of the database, sorted."""
        return self.match_prefix("", db=db)

    def keys(self, db: int | None = None) -> Iterator[Any]:
        """Every key of the database, sorted (read in one call, not with a cursor)."""
        return iter(self.keys_nonlazy(db))

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def items(self, db: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Every (key, value) pair of the database."""
        return iter(self.get_bulk(self.keys_nonlazy(db), db).items())  # type: ignore[attr-defined]

    def values(self, db: int | None = None) -> Iterator[Any]:
        """Every value of the database."""
        return (value for _, value in self.items(db))

    # --- container records -------------------------------------------------------------
    def serialize_dict(self, d: Mapping[Any, Any], encode_values: bool = True) -> bytes:
        """``d`` as a ``kt.mapdump`` record (the layout of a Hash)."""
        encode = self.encode_value if encode_values else encode_key
        return dump_map({encode_key(k): encode(v) for k, v in d.items()})

    def deserialize_dict(self, data: bytes, decode_values: bool = True) -> dict[Any, Any]:
        """A ``kt.mapdump`` record as a dict (str keys where they are UTF-8 and ``decode_keys``)."""
        decode = self.decode_value if decode_values else bytes
        return {decode_key(k, self.decode_keys): decode(v) for k, v in load_map(data).items()}

    def serialize_list(self, items: Iterable[Any], encode_values: bool = True) -> bytes:
        """``items`` as a ``kt.arraydump`` record (the layout of a List)."""
        encode = self.encode_value if encode_values else encode_key
        return dump_list(encode(item) for item in items)

    def deserialize_list(self, data: bytes, decode_values: bool = True) -> list[Any]:
        """A ``kt.arraydump`` record as a list."""
        decode = self.decode_value if decode_values else bytes
        return [decode(item) for item in load_list(data)]

    def Hash(self, key: Any, encode_values: bool = True, decode_values: bool = True,  # noqa: N802 - ukt's name
             db: int | None = None) -> Hash:
        """A dict stored in the one record ``key``."""
        return Hash(self, key, encode_values, decode_values, db)

    def List(self, key: Any, encode_values: bool = True, decode_values: bool = True,  # noqa: N802 - ukt's name
             db: int | None = None) -> List:
        """A list stored in the one record ``key``."""
        return List(self, key, encode_values, decode_values, db)

    def Set(self, key: Any, encode_values: bool = True, decode_values: bool = True,  # noqa: N802 - ukt's name
            db: int | None = None) -> Set:
        """A set stored in the one record ``key``."""
        return Set(self, key, encode_values, decode_values, db)

    def Queue(self, key: Any, db: int | None = None) -> Queue:  # noqa: N802 - ukt's name
        """A priority queue stored in the one record ``key``."""
        return Queue(self, key, db)

    def Schedule(self, key: Any, db: int | None = None) -> Schedule:  # noqa: N802 - ukt's name
        """A schedule (items read in rising score order) stored in the one record ``key``."""
        return Schedule(self, key, db)
