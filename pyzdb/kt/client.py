"""The Kyoto Tycoon client: ukt's binary-protocol API (bulk get/set/remove, script, replication) and dict access."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from pyzdb.kt import protocol as p
from pyzdb.kt.expiry import wire_xt
from pyzdb.kt.lua import LuaHelpers
from pyzdb.kt.replication import Replication
from pyzdb.kvnet.mapping import DictAccess
from pyzdb.kvnet.pool import DEFAULT_MAX_LENGTH, KvConnection, Pool, batches
from pyzdb.kvnet.serializers import Serializer, decode_key, encode_key, encode_plain, get_serializer

_MAX_BATCH_BYTES = 4 << 20
_MAX_BATCH_COUNT = 10_000


def _record_size(record: p.Record) -> int:
    return len(record.key) + len(record.value) + 18


def _key_size(item: tuple[int, bytes]) -> int:
    return len(item[1]) + 6


class KyotoTycoon(LuaHelpers, DictAccess):
    """A client of one Kyoto Tycoon server, speaking its binary protocol, with ukt's API.

    >>> kt = KyotoTycoon('127.0.0.1', 1978, serializer=KT_MSGPACK)   # doctest: +SKIP
    >>> kt.set('k', {'a': 1}); kt.get('k')                          # doctest: +SKIP
    1
    {'a': 1}
    >>> kt['k', 1] = 'in db 1'; kt['missing']                       # doctest: +SKIP

    Keys are str (encoded UTF-8), bytes or numbers; with ``decode_keys`` keys
    come back as str. ``expire_time`` is taken as ukt takes it (see
    ``pyzdb.kt.expiry.wire_xt``). Every method takes ``db`` (default
    ``default_db``). Large bulk calls are sent as several requests of a few
    MiB each. ``encode_value`` / ``decode_value`` replace the serializer's
    functions, as in ukt.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1978, timeout: float | None = 10.0,
                 default_db: int = 0, decode_keys: bool = True, serializer: str | Serializer | None = None,
                 encode_value: Callable[[Any], bytes] | None = None,
                 decode_value: Callable[[bytes], Any] | None = None, pool_size: int = 4,
                 max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.max_length = max_length    # the most bytes one length header in a reply may ask for
        self.serializer = get_serializer(serializer)
        self.encode_value = encode_value or self.serializer.encode
        self.decode_value = decode_value or self.serializer.decode
        self.default_db = default_db
        self.decode_keys = decode_keys
        self._pool = Pool(self._connect, pool_size)

    def _connect(self) -> KvConnection:
        return KvConnection(self.host, self.port, timeout=self.timeout, name="Kyoto Tycoon",
                            max_length=self.max_length)

    def _db(self, db: int | None) -> int:
        return self.default_db if db is None else db

    def set_database(self, db: int = 0) -> None:
        """Make ``db`` the default database of later calls."""
        self.default_db = db

    def _key(self, key: bytes) -> str | bytes:
        return decode_key(key, self.decode_keys)

    def _decoder(self, decode: bool) -> Callable[[bytes], Any]:
        return self.decode_value if decode else bytes

    def _encoder(self, encode: bool) -> Callable[[Any], bytes]:
        return self.encode_value if encode else encode_plain

    # --- bulk commands: (db, key, value, xt) -------------------------------------------
    def _get_records(self, keys: list[tuple[int, bytes]]) -> list[p.Record]:
        found: list[p.Record] = []
        for part in batches(keys, _key_size, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            payload = p.encode_keys(p.BMGETBULK, part)
            what = f"get_bulk of {len(part)} keys"
            found += self._pool.call(lambda conn: p.read_records(conn, self._send(conn, payload, p.BMGETBULK, what)),
                                     idempotent=True)
        return found

    def get_bulk_details(self, db_key_list: Iterable[tuple[int, Any]], decode_values: bool = True) -> list[p.Record]:
        """The records ``(db, key, value, xt)`` of the ``(db, key)`` pairs that exist, in request order.

        ``xt`` is the absolute unix expire time (``XT_MAX`` for never).
        """
        records = self._get_records([(db, encode_key(key)) for db, key in db_key_list])
        decode = self._decoder(decode_values)
        return [p.Record(db, self._key(key), decode(value), xt) for db, key, value, xt in records]

    def set_bulk_details(self, data: Iterable[tuple[int, Any, Any, Any]], no_reply: bool = False,
                         encode_values: bool = True) -> int | None:
        """Store ``(db, key, value, expire_time)`` tuples; return how many were stored (None with ``no_reply``)."""
        encode = self._encoder(encode_values)
        records = [p.Record(db, encode_key(key), encode(value), wire_xt(xt)) for db, key, value, xt in data]
        stored = 0
        for part in batches(records, _record_size, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            payload = p.encode_set_bulk(part, p.BONOREPLY if no_reply else 0)
            stored += self._call(payload, p.BMSETBULK, f"set_bulk of {len(part)} records", no_reply, True) or 0
        return None if no_reply else stored

    def remove_bulk_details(self, db_key_list: Iterable[tuple[int, Any]], no_reply: bool = False) -> int | None:
        """Remove ``(db, key)`` pairs; return how many existed (None with ``no_reply``)."""
        keys = [(db, encode_key(key)) for db, key in db_key_list]
        removed = 0
        for part in batches(keys, _key_size, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            payload = p.encode_keys(p.BMREMOVEBULK, part, p.BONOREPLY if no_reply else 0)
            removed += self._call(payload, p.BMREMOVEBULK, f"remove_bulk of {len(part)} keys", no_reply, True) or 0
        return None if no_reply else removed

    def _send(self, conn: KvConnection, payload: bytes, magic: int, what: str) -> int:
        conn.send(payload)
        return p.read_count(conn, magic, what)

    def _call(self, payload: bytes, magic: int, what: str, no_reply: bool, idempotent: bool) -> int | None:
        """Send one request and read its count (or nothing, with ``no_reply``)."""
        if no_reply:
            return self._pool.call(lambda conn: conn.send(payload), idempotent=idempotent)
        return self._pool.call(lambda conn: self._send(conn, payload, magic, what), idempotent=idempotent)

    # --- the everyday API -------------------------------------------------------------
    def get_bulk(self, keys: Iterable[Any], db: int | None = None, decode_values: bool = True) -> dict[Any, Any]:
        """The values of the keys that exist (keys decoded as ``decode_keys`` says, like ukt)."""
        db = self._db(db)
        return {r.key: r.value for r in self.get_bulk_details([(db, key) for key in keys], decode_values)}

    def get(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        """The value of ``key``, or None if it does not exist."""
        found = self.get_bulk_details([(self._db(db), key)], decode_value)
        return found[0].value if found else None

    def get_bytes(self, key: Any, db: int | None = None) -> bytes | None:
        """The raw value of ``key``, or None if it does not exist."""
        return self.get(key, db, False)

    get_raw = get_bytes  # kt's name

    def get_bulk_raw(self, keys: Iterable[Any], db: int | None = None) -> dict[Any, bytes]:
        """kt's name for ``get_bulk(keys, db, decode_values=False)``."""
        return self.get_bulk(keys, db, False)

    def set_bulk(self, data: Mapping[Any, Any], db: int | None = None, expire_time: Any = None,
                 no_reply: bool = False, encode_values: bool = True) -> int | None:
        """Store every pair; return how many were stored (None with ``no_reply``)."""
        db = self._db(db)
        return self.set_bulk_details([(db, k, v, expire_time) for k, v in data.items()], no_reply, encode_values)

    def set(self, key: Any, value: Any, db: int | None = None, expire_time: Any = None,
            no_reply: bool = False, encode_value: bool = True) -> int | None:
        """Store one pair; return 1 once stored (None with ``no_reply``)."""
        return self.set_bulk({key: value}, db, expire_time, no_reply, encode_value)

    def set_bytes(self, key: Any, value: Any, db: int | None = None, expire_time: Any = None,
                  no_reply: bool = False) -> int | None:
        """``set`` without serializing the value."""
        return self.set(key, value, db, expire_time, no_reply, False)

    def remove_bulk(self, keys: Iterable[Any], db: int | None = None, no_reply: bool = False) -> int | None:
        """Remove the keys; return how many existed (None with ``no_reply``)."""
        db = self._db(db)
        return self.remove_bulk_details([(db, k) for k in keys], no_reply)

    def remove(self, key: Any, db: int | None = None, no_reply: bool = False) -> int | None:
        """Remove one key; return 1 if it existed, else 0 (None with ``no_reply``)."""
        return self.remove_bulk([key], db, no_reply)

    def exists(self, key: Any, db: int | None = None) -> bool:
        """True if ``key`` exists (and has not expired)."""
        return bool(self._get_records([(self._db(db), encode_key(key))]))

    check = exists

    def length(self, key: Any, db: int | None = None) -> int | None:
        """The size of the raw value in bytes, or None if the key does not exist."""
        raw = self.get_bytes(key, db)
        return None if raw is None else len(raw)

    # --- scripts ---------------------------------------------------------------------
    def script(self, name: Any, data: Mapping[Any, Any] | None = None, no_reply: bool = False,
               encode_values: bool = True, decode_values: bool = True) -> dict[Any, Any] | None:
        """Call the server-side Lua procedure ``name`` with ``data``; return its output pairs.

        A failing script raises ``ProtocolError``. Never retried: a script may not be idempotent.
        """
        return self._play(name, data, no_reply, encode_values, decode_values, self.decode_keys)

    play_script = script

    def raw_script(self, name: Any, data: Mapping[Any, Any] | None = None,
                   no_reply: bool = False) -> dict[bytes, bytes] | None:
        """``script`` with no serialization either way: bytes keys and values back."""
        return self._play(name, data, no_reply, False, False, False)

    def _play(self, name: Any, data: Mapping[Any, Any] | None, no_reply: bool, encode_values: bool,
              decode_values: bool, decode_keys: bool) -> dict[Any, Any] | None:
        encode = self._encoder(encode_values)
        pairs = [(encode_key(k), encode(v)) for k, v in (data or {}).items()]
        payload = p.encode_play_script(encode_key(name), pairs, p.BONOREPLY if no_reply else 0)
        if no_reply:
            return self._pool.call(lambda conn: conn.send(payload), idempotent=False)
        what = f"script {name!r} with {len(pairs)} pairs"
        out = self._pool.call(lambda conn: conn.read_pairs(self._send(conn, payload, p.BMPLAYSCRIPT, what),
                                                           p.DATAMAXSIZ),
                              idempotent=False)
        decode = self._decoder(decode_values)
        return {decode_key(k, decode_keys): decode(v) for k, v in out}

    def replication(self, ts: int = 0, sid: int = 0xFFFF, white_sid: bool = False) -> Replication:
        """Stream the server's update log from after ``ts`` (needs ``-ulog`` and ``-sid`` on the server).

        Entries whose origin is server id ``sid`` are left out, or with
        ``white_sid`` only those are sent.
        """
        return Replication(self._pool.connect(), ts=ts, sid=sid, white_sid=white_sid)

    # --- primitives of DictAccess ---------------------------------------------------
    def _split(self, item: Any) -> tuple[Any, int | None]:
        return item if isinstance(item, tuple) else (item, None)

    def _get_one(self, key: Any, db: int | None) -> Any:
        return self.get(key, db)

    def _put_one(self, key: Any, value: Any, db: int | None) -> Any:
        return self.set(key, value, db)

    def _remove_one(self, key: Any, db: int | None) -> Any:
        return self.remove(key, db)

    def _exists(self, key: Any, db: int | None) -> bool:
        return self.exists(key, db)

    def _put_many(self, data: Mapping[Any, Any]) -> Any:
        return self.set_bulk(data)

    def __repr__(self) -> str:
        return f"KyotoTycoon({self.host!r}, {self.port}, db={self.default_db})"
